"""Reads and wire shapes for devices and pairing requests (auth-and-pairing.md §3.4)."""

from __future__ import annotations

from typing import Any

from gateway.protocol.events import now_ms

from .models import Device, DeviceToken, Node, NodePairingRequest, PairingRequest

PENDING_TTL_MS = 5 * 60 * 1000


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def request_payload(r: PairingRequest) -> dict[str, Any]:
    out = _compact({"requestId": str(r.request_id), "deviceId": r.device_id, "publicKey": r.public_key,
                    "displayName": r.display_name, "platform": r.platform, "clientId": r.client_id,
                    "clientMode": r.client_mode, "role": r.role, "remoteIp": r.remote_ip, "ts": r.ts})
    out.update({"roles": [r.role], "scopes": list(r.scopes), "silent": r.silent, "isRepair": r.is_repair})
    return out


def token_summary(t: DeviceToken) -> dict[str, Any]:
    return _compact({"role": t.role, "scopes": list(t.scopes), "createdAtMs": t.created_at_ms,
                     "rotatedAtMs": t.rotated_at_ms, "revokedAtMs": t.revoked_at_ms,
                     "lastUsedAtMs": t.last_used_at_ms})


def device_payload(d: Device) -> dict[str, Any]:
    """A paired device with its tokens summarised: never a token string (D5)."""
    out = _compact({"deviceId": d.device_id, "publicKey": d.public_key, "displayName": d.display_name,
                    "platform": d.platform, "clientId": d.client_id, "clientMode": d.client_mode, "role": d.role,
                    "remoteIp": d.remote_ip, "createdAtMs": d.created_at_ms, "approvedAtMs": d.approved_at_ms})
    out["roles"] = list(d.roles or [])
    out["scopes"] = list(d.scopes or [])
    out["tokens"] = [token_summary(t) for t in sorted(d.tokens.all(), key=lambda t: t.role)]
    return out


def pending_requests() -> list[PairingRequest]:
    return list(PairingRequest.objects.filter(status=PairingRequest.Status.PENDING,
                                              ts__gte=now_ms() - PENDING_TTL_MS).order_by("-ts"))


def pairing_listing() -> dict[str, Any]:
    paired = Device.objects.prefetch_related("tokens").order_by("-approved_at_ms")
    return {"pending": [request_payload(r) for r in pending_requests()], "paired": [device_payload(d) for d in paired]}


def find_device(device_id: str) -> Device | None:
    return Device.objects.filter(device_id=device_id).first()


# --- nodes -------------------------------------------------------------------------------------

def node_request_payload(r: NodePairingRequest) -> dict[str, Any]:
    out = _compact({"requestId": str(r.request_id), "nodeId": r.node_id, "displayName": r.display_name,
                    "platform": r.platform, "version": r.version, "coreVersion": r.core_version,
                    "uiVersion": r.ui_version, "deviceFamily": r.device_family,
                    "modelIdentifier": r.model_identifier, "remoteIp": r.remote_ip, "ts": r.ts})
    out.update({"caps": list(r.caps), "commands": list(r.commands), "permissions": dict(r.permissions or {}),
                "silent": r.silent, "isRepair": r.is_repair})
    return out


def paired_node_payload(n: Node) -> dict[str, Any]:
    """A node of the gateway-owned store; its token is never listed (D5)."""
    out = _compact({"nodeId": n.node_id, "displayName": n.display_name, "platform": n.platform,
                    "version": n.version, "coreVersion": n.core_version, "uiVersion": n.ui_version,
                    "deviceFamily": n.device_family, "modelIdentifier": n.model_identifier,
                    "remoteIp": n.remote_ip, "createdAtMs": n.created_at_ms, "approvedAtMs": n.approved_at_ms,
                    "lastConnectedAtMs": n.last_connected_at_ms})
    out.update({"caps": list(n.caps), "commands": list(n.commands), "bins": list(n.bins or []),
                "permissions": dict(n.permissions or {})})
    return out


def node_pairing_listing() -> dict[str, Any]:
    pending = NodePairingRequest.objects.filter(status=NodePairingRequest.Status.PENDING,
                                                ts__gte=now_ms() - PENDING_TTL_MS).order_by("-ts")
    paired = Node.objects.filter(approved_at_ms__isnull=False).order_by("-approved_at_ms")
    return {"pending": [node_request_payload(r) for r in pending], "paired": [paired_node_payload(n) for n in paired]}


def paired_nodes() -> dict[str, dict[str, Any]]:
    """Paired nodes (devices approved for role node, and node.pair approvals) -> their fields."""
    out: dict[str, dict[str, Any]] = {}
    for d in Device.objects.all():
        if "node" in (d.roles or []) or d.role == "node":
            out[d.device_id] = _compact({"nodeId": d.device_id, "displayName": d.display_name,
                                         "platform": d.platform, "remoteIp": d.remote_ip})
    for n in Node.objects.all():
        if n.approved_at_ms is None and n.node_id not in out:
            continue  # only ever seen connecting with the shared secret
        entry = out.setdefault(n.node_id, {"nodeId": n.node_id})
        entry.update({k: v for k, v in paired_node_payload(n).items() if v not in (None, [], {})})
    return out


def node_is_known(node_id: str) -> bool:
    return Node.objects.filter(node_id=node_id).exists() or Device.objects.filter(device_id=node_id).exists()
