"""Writes for devices, pairing requests and device tokens. RPC handlers, the Django admin and
the management commands all call these, so every actor emits the same events (README D10)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction

from gateway.protocol.errors import GatewayError, conflict, not_found
from gateway.protocol.events import PAIRING, close_after_commit, emit_after_commit, now_ms, to_devices
from gateway.protocol.registry import SCOPE_ADMIN
from gateway.protocol.secrets import hash_token, new_token, token_matches

from .models import Device, DeviceToken, Node, NodePairingRequest, PairingRequest
from .queries import PENDING_TTL_MS, node_request_payload, request_payload

ROLE_OPERATOR, ROLE_NODE = "operator", "node"


def normalize_scopes(scopes: list[str] | None) -> list[str]:
    return sorted({s.strip() for s in scopes or [] if isinstance(s, str) and s.strip()})


@dataclass
class PairingIdentity:
    """What a connecting device declared (stored on its request and its record)."""

    device_id: str
    public_key: str
    role: str
    scopes: list[str]
    display_name: str = ""
    platform: str = ""
    client_id: str = ""
    client_mode: str = ""
    remote_ip: str = ""


def pairing_needed(device: Device | None, ident: PairingIdentity) -> str | None:
    """§3.2: why this device must (re-)pair before connecting, or None."""
    if device is None or device.public_key != ident.public_key:
        return "not-paired"
    roles = device.roles or ([device.role] if device.role else [])
    if ident.role not in roles:
        return "role-upgrade"
    if ident.scopes and (not device.scopes or not set(ident.scopes) <= set(device.scopes)):
        return "scope-upgrade"
    return None


@transaction.atomic
def request_pairing(ident: PairingIdentity, *, silent: bool) -> tuple[PairingRequest, bool]:
    """Open a pairing request, or return the live one for this device unchanged (created=False)."""
    existing = (PairingRequest.objects.select_for_update()
                .filter(device_id=ident.device_id, status=PairingRequest.Status.PENDING,
                        ts__gte=now_ms() - PENDING_TTL_MS).order_by("-ts").first())
    if existing is not None:
        return existing, False
    request = PairingRequest.objects.create(
        device_id=ident.device_id, public_key=ident.public_key, display_name=ident.display_name,
        platform=ident.platform, client_id=ident.client_id, client_mode=ident.client_mode, role=ident.role,
        scopes=list(ident.scopes), remote_ip=ident.remote_ip or "", silent=silent,
        is_repair=Device.objects.filter(device_id=ident.device_id).exists(), ts=now_ms())
    if not silent:
        emit_after_commit("device.pair.requested", request_payload(request), PAIRING)
    return request, True


def _pending(request_id: str) -> PairingRequest:
    try:
        request = PairingRequest.objects.select_for_update().get(request_id=uuid.UUID(request_id))
    except (ValueError, PairingRequest.DoesNotExist):
        raise not_found("unknown requestId", details={"requestId": request_id}) from None
    if request.status != PairingRequest.Status.PENDING:
        raise conflict(f"pairing request already {request.status}", details={"requestId": request_id})
    if request.ts < now_ms() - PENDING_TTL_MS:
        raise conflict("pairing request expired", details={"requestId": request_id})
    return request


@transaction.atomic
def approve_pairing(request_id: str, *, approver_scopes: frozenset[str] | None = None,
                    resolved_by: str = "") -> Device:
    """Approve a pending request. `approver_scopes` (None: an owner-level actor such as the
    admin site) bounds what may be granted: nobody grants scopes they do not hold (D5)."""
    request = _pending(str(request_id))
    if approver_scopes is not None and SCOPE_ADMIN not in approver_scopes:
        beyond = sorted(set(request.scopes) - set(approver_scopes))
        if beyond:
            raise GatewayError("FORBIDDEN", f"cannot grant scopes you do not hold: {', '.join(beyond)}",
                               details={"scopes": beyond})
    now = now_ms()
    device = Device.objects.select_for_update().filter(device_id=request.device_id).first()
    if device is None:
        device = Device(device_id=request.device_id, created_at_ms=now, roles=[], scopes=[])
    device.public_key = request.public_key
    device.display_name = request.display_name
    device.platform = request.platform
    device.client_id = request.client_id
    device.client_mode = request.client_mode
    device.role = request.role
    device.roles = sorted(set(device.roles or []) | {request.role})
    device.scopes = sorted(set(device.scopes or []) | set(request.scopes))
    device.remote_ip = request.remote_ip
    device.approved_at_ms = now
    device.save()
    _resolve(request, PairingRequest.Status.APPROVED, resolved_by, now)
    return device


@transaction.atomic
def reject_pairing(request_id: str, *, resolved_by: str = "") -> PairingRequest:
    request = _pending(str(request_id))
    _resolve(request, PairingRequest.Status.REJECTED, resolved_by, now_ms())
    return request


def _resolve(request: PairingRequest, status: str, resolved_by: str, now: int) -> None:
    """Close a request (kept for the audit trail) and announce the decision after commit."""
    request.status = status
    request.resolved_at_ms = now
    request.resolved_by = resolved_by
    request.save(update_fields=["status", "resolved_at_ms", "resolved_by"])
    emit_after_commit("device.pair.resolved", {"requestId": str(request.request_id), "deviceId": request.device_id,
                                               "decision": status, "ts": now}, PAIRING)


@transaction.atomic
def record_connect(ident: PairingIdentity) -> None:
    """A paired device connected again: refresh its metadata (§3.2 step 4)."""
    Device.objects.filter(device_id=ident.device_id).update(
        display_name=ident.display_name, platform=ident.platform, client_id=ident.client_id,
        client_mode=ident.client_mode, role=ident.role, remote_ip=ident.remote_ip or "")


def _mint(device: Device, role: str, scopes: list[str], existing: DeviceToken | None) -> tuple[str, DeviceToken]:
    token, now = new_token(), now_ms()
    if existing is None:
        row = DeviceToken.objects.create(device=device, role=role, token_hash=hash_token(token), scopes=scopes,
                                         created_at_ms=now)
    else:
        existing.token_hash = hash_token(token)
        existing.scopes = scopes
        existing.rotated_at_ms = now
        existing.revoked_at_ms = None
        existing.save()
        row = existing
    return token, row


@transaction.atomic
def ensure_device_token(device_id: str, role: str, scopes: list[str]) -> tuple[str | None, DeviceToken]:
    """§4.2: keep a live token that covers `scopes`, else mint one. The token string is returned
    only when minted; stored tokens are hashes and are never shown again (D5)."""
    device = Device.objects.get(device_id=device_id)
    row = DeviceToken.objects.select_for_update().filter(device=device, role=role).first()
    wanted = normalize_scopes(scopes)
    if row is not None and row.revoked_at_ms is None and set(wanted) <= set(row.scopes):
        return None, row
    return _mint(device, role, wanted, row)


@transaction.atomic
def verify_device_token(device_id: str, token: str, role: str, scopes: list[str]) -> str | None:
    """§4.3: None when the token is valid for this device, role and scopes; else why not."""
    row = DeviceToken.objects.select_for_update().filter(device_id=device_id, role=role).first()
    if row is None:
        return "DEVICE_TOKEN_MISMATCH"
    if not token_matches(token, row.token_hash):
        return "DEVICE_TOKEN_MISMATCH"
    if row.revoked_at_ms is not None:
        return "DEVICE_TOKEN_REVOKED"
    if not set(normalize_scopes(scopes)) <= set(row.scopes):
        return "DEVICE_TOKEN_MISMATCH"
    row.last_used_at_ms = now_ms()
    row.save(update_fields=["last_used_at_ms"])
    return None


@transaction.atomic
def rotate_device_token(device_id: str, role: str, scopes: list[str] | None = None) -> tuple[str, DeviceToken]:
    """A new token for (device, role). Scopes never widen beyond what the device was approved for (D5)."""
    device = Device.objects.select_for_update().filter(device_id=device_id).first()
    role = (role or "").strip()
    if device is None or not role:
        raise not_found("unknown deviceId/role", details={"deviceId": device_id, "role": role})
    row = DeviceToken.objects.select_for_update().filter(device=device, role=role).first()
    wanted = normalize_scopes(scopes if scopes is not None else (row.scopes if row else device.scopes))
    beyond = sorted(set(wanted) - set(device.scopes or []))
    if beyond:
        raise GatewayError("FORBIDDEN", f"scopes beyond the device's approval: {', '.join(beyond)}",
                           details={"scopes": beyond})
    token, row = _mint(device, role, wanted, row)
    return token, row


@transaction.atomic
def revoke_device_token(device_id: str, role: str) -> DeviceToken:
    """Revoke (device, role)'s token and close that device's live connections on every process (D5)."""
    row = DeviceToken.objects.select_for_update().filter(device_id=device_id, role=(role or "").strip()).first()
    if row is None:
        raise not_found("unknown deviceId/role", details={"deviceId": device_id, "role": role})
    row.revoked_at_ms = now_ms()
    row.save(update_fields=["revoked_at_ms"])
    close_after_commit(to_devices(device_id, role=row.role), 1008, "device token revoked")
    return row


# --- nodes -------------------------------------------------------------------------------------

NODE_FIELDS = ("display_name", "platform", "version", "core_version", "ui_version", "device_family",
               "model_identifier", "caps", "commands", "permissions", "remote_ip")


@transaction.atomic
def record_node_connect(info: dict) -> None:
    """A node-role connection: remember the node (so a later invoke can tell "not connected"
    from "unknown") and when it last connected."""
    now = now_ms()
    node, created = Node.objects.select_for_update().get_or_create(
        node_id=info["nodeId"], defaults={"created_at_ms": now})
    for name, key in (("platform", "platform"), ("version", "version"), ("device_family", "deviceFamily"),
                      ("model_identifier", "modelIdentifier"), ("remote_ip", "remoteIp")):
        if info.get(key):
            setattr(node, name, info[key])
    if created or not node.display_name:
        node.display_name = info.get("displayName") or ""
    node.caps = list(info.get("caps") or [])
    node.commands = list(info.get("commands") or [])
    node.permissions = dict(info.get("permissions") or {})
    node.last_connected_at_ms = now
    node.save()


@transaction.atomic
def request_node_pairing(fields: dict) -> tuple[NodePairingRequest, bool]:
    """node.pair.request: idempotent per nodeId while a request is pending; never a token."""
    existing = (NodePairingRequest.objects.select_for_update()
                .filter(node_id=fields["node_id"], status=NodePairingRequest.Status.PENDING,
                        ts__gte=now_ms() - PENDING_TTL_MS).first())
    if existing is not None:
        return existing, False
    request = NodePairingRequest.objects.create(
        ts=now_ms(), is_repair=Node.objects.filter(node_id=fields["node_id"], approved_at_ms__isnull=False).exists(),
        **fields)
    emit_after_commit("node.pair.requested", node_request_payload(request), PAIRING)
    return request, True


def _pending_node_request(request_id: str) -> NodePairingRequest:
    try:
        request = NodePairingRequest.objects.select_for_update().get(request_id=uuid.UUID(request_id))
    except (ValueError, NodePairingRequest.DoesNotExist):
        raise not_found("unknown requestId", details={"requestId": request_id}) from None
    if request.status != NodePairingRequest.Status.PENDING:
        raise conflict(f"pairing request already {request.status}", details={"requestId": request_id})
    if request.ts < now_ms() - PENDING_TTL_MS:
        raise conflict("pairing request expired", details={"requestId": request_id})
    return request


def _resolve_node_request(request: NodePairingRequest, status: str, resolved_by: str, now: int) -> None:
    request.status = status
    request.resolved_at_ms = now
    request.resolved_by = resolved_by
    request.save(update_fields=["status", "resolved_at_ms", "resolved_by"])
    emit_after_commit("node.pair.resolved", {"requestId": str(request.request_id), "nodeId": request.node_id,
                                             "decision": status, "ts": now}, PAIRING)


@transaction.atomic
def approve_node_pairing(request_id: str, *, resolved_by: str = "") -> tuple[Node, str]:
    """Approve: the node record takes the request's fields and a fresh token, shown only here."""
    request = _pending_node_request(str(request_id))
    now = now_ms()
    node = Node.objects.select_for_update().filter(node_id=request.node_id).first() or Node(
        node_id=request.node_id, created_at_ms=now)
    for name in NODE_FIELDS:
        setattr(node, name, getattr(request, name))
    token = new_token()
    node.token_hash = hash_token(token)
    node.approved_at_ms = now
    node.save()
    _resolve_node_request(request, NodePairingRequest.Status.APPROVED, resolved_by, now)
    return node, token


@transaction.atomic
def reject_node_pairing(request_id: str, *, resolved_by: str = "") -> NodePairingRequest:
    request = _pending_node_request(str(request_id))
    _resolve_node_request(request, NodePairingRequest.Status.REJECTED, resolved_by, now_ms())
    return request


def verify_node_token(node_id: str, token: str) -> Node | None:
    node = Node.objects.filter(node_id=node_id, approved_at_ms__isnull=False).first()
    if node is None or not node.token_hash or not token_matches(token, node.token_hash):
        return None
    return node


@transaction.atomic
def rename_node(node_id: str, display_name: str) -> Node:
    name = (display_name or "").strip()
    if not name:
        raise GatewayError("INVALID_REQUEST", "displayName required")
    node = Node.objects.select_for_update().filter(node_id=node_id).first()
    if node is None:
        raise not_found("unknown nodeId", details={"nodeId": node_id})
    node.display_name = name
    node.save(update_fields=["display_name"])
    return node
