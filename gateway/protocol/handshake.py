"""The connect handshake (protocol.md §2, auth-and-pairing.md §1-4): params, protocol
negotiation, role, shared-secret auth with the rate limiter, device identity, the pairing
gate and device tokens. `authenticate` either returns who the client is or raises
HandshakeRefused carrying the error and the close code."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from pydantic import Field, StringConstraints

from .errors import GatewayError
from .events import now_ms
from .netaddr import ClientAddress, host_name
from .ratelimit import DEVICE_TOKEN, SHARED_SECRET, AuthRateLimiter
from .registry import Params
from .secrets import safe_equal
from .validation import validate

log = logging.getLogger("gateway.handshake")

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
SKEW_MS = 10 * 60 * 1000
CLIENT_ID_ALIASES = {"control-ui": "anima-control-ui"}
CLIENT_MODE_ALIASES = {"web": "ui"}
BROWSER_CLIENT_IDS = {"anima-control-ui", "webchat-ui"}


class ClientInfo(Params):
    id: NonEmpty
    version: NonEmpty
    platform: NonEmpty
    mode: NonEmpty
    display_name: NonEmpty | None = None
    device_family: NonEmpty | None = None
    model_identifier: NonEmpty | None = None
    instance_id: NonEmpty | None = None


class DeviceIdentity(Params):
    id: NonEmpty
    public_key: NonEmpty
    signature: NonEmpty
    signed_at: Annotated[int, Field(ge=0)]
    nonce: str | None = None


class ConnectAuth(Params):
    token: str | None = None
    password: str | None = None


class ConnectParams(Params):
    min_protocol: Annotated[int, Field(ge=1)]
    max_protocol: Annotated[int, Field(ge=1)]
    client: ClientInfo
    caps: list[str] = []
    commands: list[str] | None = None
    permissions: dict[str, bool] | None = None
    path_env: str | None = None
    role: str | None = None
    scopes: list[str] | None = None
    device: DeviceIdentity | None = None
    auth: ConnectAuth | None = None
    locale: str | None = None
    user_agent: str | None = None


class HandshakeRefused(Exception):
    def __init__(self, error: GatewayError, close_code: int = 1008, close_reason: str | None = None):
        super().__init__(error.message)
        self.error = error
        self.close_code = close_code
        self.close_reason = close_reason or error.message


@dataclass
class Admitted:
    protocol: int
    role: str
    scopes: list[str]
    client: dict[str, Any]
    device_id: str | None = None
    auth_method: str = "none"
    hello_auth: dict[str, Any] | None = None
    caps: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    permissions: dict[str, bool] = field(default_factory=dict)
    path_env: str | None = None


def parse_connect(params: Any) -> ConnectParams:
    try:
        return validate(ConnectParams, params, "connect params")
    except GatewayError as err:
        raise HandshakeRefused(err) from None


def negotiate(params: ConnectParams, dialect: str) -> int:
    """Seed path: any range overlapping 1..3, answering min(max, 3). v3 path: exactly 3."""
    lo, hi = (3, 3) if dialect == "v3" else (1, 3)
    if max(params.min_protocol, lo) > min(params.max_protocol, hi):
        details: dict[str, Any] = {"expectedProtocol": 3}
        if dialect != "v3":
            details["supported"] = [1, 3]
        raise HandshakeRefused(GatewayError("PROTOCOL_MISMATCH", "protocol mismatch", details=details),
                               close_code=1002)
    return min(params.max_protocol, hi)


def auth_setting(name: str) -> str:
    """gateway.auth.<name> from the config document, else the environment (README Clarifications:
    the environment gives values until the config sets them)."""
    from gateway.config import config_value

    value = config_value(f"gateway.auth.{name}", "")
    return value if isinstance(value, str) else ""


def auth_mode() -> str:
    mode = auth_setting("mode")
    if mode in ("token", "password", "none"):
        return mode
    return "password" if auth_setting("password") else "token" if auth_setting("token") else "none"


def _hint(mode: str, client_mode: str, client_id: str) -> str:
    if client_mode == "cli":
        variable = "ANIMA_GATEWAY_TOKEN" if mode == "token" else "ANIMA_GATEWAY_PASSWORD"
        return f"pass the gateway's {mode} (--{mode}; the gateway takes it from {variable} or gateway.auth.{mode})"
    if client_id in BROWSER_CLIENT_IDS or client_mode == "webchat":
        return ("open the dashboard URL and paste the token in Control UI settings" if mode == "token"
                else "enter the password in Control UI settings")
    return f"provide gateway auth {mode}"


def check_shared_secret(auth: ConnectAuth | None) -> tuple[bool, str | None, str]:
    """(ok, failure reason, message) for the configured mode; mode none admits everyone
    (allowed only on a loopback bind, checked at start-up)."""
    mode = auth_mode()
    if mode == "none":
        return True, None, ""
    given = getattr(auth, mode, None) if auth else None
    secret = auth_setting(mode)
    if not secret:
        return False, f"{mode.upper()}_MISSING", f"gateway {mode} not configured on gateway (set gateway.auth.{mode})"
    if not given:
        return False, f"{mode.upper()}_MISSING", f"gateway {mode} missing"
    if not safe_equal(given, secret):
        return False, f"{mode.upper()}_MISMATCH", f"gateway {mode} mismatch"
    return True, None, ""


def unauthorized(reason: str, why: str, params: ConnectParams) -> HandshakeRefused:
    mode = auth_mode()
    hint = _hint(mode if mode != "none" else "token", params.client.mode, params.client.id)
    return HandshakeRefused(GatewayError(reason, f"unauthorized: {why} ({hint})"))


def rate_limited(retry_after_ms: int) -> HandshakeRefused:
    return HandshakeRefused(GatewayError(
        "RATE_LIMITED", "unauthorized: too many failed authentication attempts (retry later)",
        retryable=True, retry_after_ms=retry_after_ms))


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """§1.7: the browser's Origin is an allowed origin, the gateway's own host, or both are loopback."""
    if not origin or origin == "null":
        return False
    parsed = urlsplit(origin.strip())
    if not parsed.scheme or not parsed.hostname:
        return False
    from gateway.config import config_value

    allowed = {str(o).strip().lower().rstrip("/") for o in config_value("gateway.controlUi.allowedOrigins", []) or []}
    if origin.strip().lower().rstrip("/") in allowed:
        return True
    host = (host or "").strip().lower()
    if parsed.netloc.lower() == host:
        return True
    return is_loopback_host(parsed.hostname) and is_loopback_host(host_name(host))


def is_loopback_host(name: str) -> bool:
    """`localhost` or a loopback IP literal (not a DNS name that merely starts with 127.)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_device(params: ConnectParams, role: str, scopes: list[str], nonce: str, local: bool) -> str:
    """§1.9 step 9: the device proves its key; returns the normalised public key."""
    from pairing.crypto import b64url_encode, device_id_for, raw_public_key, signed_payload, verify

    device = params.device
    assert device is not None
    raw = raw_public_key(device.public_key)
    if raw is None:
        raise HandshakeRefused(GatewayError("DEVICE_PUBLIC_KEY_INVALID", "device public key invalid"))
    if device_id_for(raw) != device.id:
        raise HandshakeRefused(GatewayError("DEVICE_IDENTITY_MISMATCH", "device identity mismatch"))
    if abs(now_ms() - device.signed_at) > SKEW_MS:
        raise HandshakeRefused(GatewayError("SIGNATURE_EXPIRED", "device signature expired"))
    given_nonce = (device.nonce or "").strip()
    if not given_nonce and not local:
        raise HandshakeRefused(GatewayError("DEVICE_NONCE_REQUIRED", "device nonce required"))
    if given_nonce and given_nonce != nonce:
        raise HandshakeRefused(GatewayError("DEVICE_NONCE_MISMATCH", "device nonce mismatch"))
    message = signed_payload(device_id=device.id, client_id=params.client.id, client_mode=params.client.mode,
                             role=role, scopes=scopes, signed_at=device.signed_at,
                             token=params.auth.token if params.auth else None, nonce=given_nonce or None)
    if not verify(raw, device.signature, message):
        raise HandshakeRefused(GatewayError("DEVICE_SIGNATURE_INVALID", "device signature invalid"))
    return b64url_encode(raw)


def pairing_gate(params: ConnectParams, role: str, scopes: list[str], public_key: str,
                 address: ClientAddress) -> dict[str, Any]:
    """§3.2 and §4.2 (sync, one thread hop): pair or refuse; then the device token for hello-ok."""
    from pairing import services
    from pairing.queries import find_device

    assert params.device is not None
    ident = services.PairingIdentity(
        device_id=params.device.id, public_key=public_key, role=role, scopes=scopes,
        display_name=params.client.display_name or "", platform=params.client.platform,
        client_id=params.client.id, client_mode=params.client.mode, remote_ip=address.reported_ip or "")
    why = services.pairing_needed(find_device(ident.device_id), ident)
    if why is not None:
        request, _created = services.request_pairing(ident, silent=address.local_direct)
        if not request.silent:
            raise HandshakeRefused(GatewayError("NOT_PAIRED", "pairing required",
                                                details={"requestId": str(request.request_id), "pairing": why}))
        services.approve_pairing(str(request.request_id), resolved_by="auto (local device)")
    else:
        services.record_connect(ident)
    token, row = services.ensure_device_token(ident.device_id, role, scopes)
    hello_auth: dict[str, Any] = {"role": role, "scopes": list(row.scopes),
                                  "issuedAtMs": row.rotated_at_ms or row.created_at_ms}
    if token is not None:
        hello_auth["deviceToken"] = token
    return hello_auth


async def authenticate(params: ConnectParams, *, dialect: str, nonce: str, address: ClientAddress,
                       limiter: AuthRateLimiter, origin: str | None = None, host: str | None = None) -> Admitted:
    protocol = negotiate(params, dialect)
    role = (params.role or "operator").strip() or "operator"
    if role not in ("operator", "node"):
        raise HandshakeRefused(GatewayError("INVALID_REQUEST", "invalid role", details={"role": role}))
    client_id = CLIENT_ID_ALIASES.get(params.client.id.lower(), params.client.id.lower())
    client_mode = CLIENT_MODE_ALIASES.get(params.client.mode.lower(), params.client.mode.lower())
    if (client_id in BROWSER_CLIENT_IDS or client_mode == "webchat") and not origin_allowed(origin, host):
        raise HandshakeRefused(GatewayError(
            "FORBIDDEN", "origin not allowed (open the Control UI from the gateway host or allow it in "
            "gateway.controlUi.allowedOrigins)", details={"origin": origin}))
    scopes = list(params.scopes or [])
    auth = params.auth
    device = params.device

    # Shared secret. With a device and a token, a wrong shared token may be a device token, so
    # it is not counted against the shared-secret bucket (§1.8).
    shared_ok, reason, why = check_shared_secret(auth)
    counts_shared = not (device is not None and auth is not None and auth.token)
    locked = limiter.retry_after_ms(address.ip, SHARED_SECRET)
    if shared_ok and auth_mode() != "none" and locked is not None:
        raise rate_limited(locked)
    if not shared_ok and counts_shared:
        if locked is not None:
            raise rate_limited(locked)
        limiter.record_failure(address.ip, SHARED_SECRET)
    if shared_ok and auth_mode() != "none":
        limiter.reset(address.ip, SHARED_SECRET)

    public_key = None
    if device is not None:
        public_key = check_device(params, role, scopes, nonce, address.local_direct)

    method = auth_mode() if shared_ok else "none"
    if not shared_ok:
        if device is not None and auth is not None and auth.token:
            from pairing.services import verify_device_token

            locked = limiter.retry_after_ms(address.ip, DEVICE_TOKEN)
            if locked is not None:
                raise rate_limited(locked)
            failure = await sync_to_async(verify_device_token)(device.id, auth.token, role, scopes)
            if failure is not None:
                limiter.record_failure(address.ip, DEVICE_TOKEN)
                raise HandshakeRefused(GatewayError(
                    failure, "unauthorized: device token mismatch (rotate/reissue device token)"))
            limiter.reset(address.ip, DEVICE_TOKEN)
            method = "device-token"
        else:
            raise unauthorized(reason or "UNAUTHORIZED", why or "unauthorized", params)

    client = {
        "id": client_id,
        "mode": client_mode,
        "version": params.client.version, "platform": params.client.platform,
        "displayName": params.client.display_name, "deviceFamily": params.client.device_family,
        "modelIdentifier": params.client.model_identifier, "instanceId": params.client.instance_id,
    }
    admitted = Admitted(protocol=protocol, role=role, scopes=scopes, client=client, auth_method=method,
                        caps=list(params.caps or []), permissions=dict(params.permissions or {}),
                        path_env=params.path_env)
    if role == "node":
        from pairing.node_policy import filter_declared, platform_id

        # §5.5: undeclared or disallowed commands are dropped before hello-ok
        admitted.commands = filter_declared(params.commands or [],
                                            platform_id(params.client.platform, params.client.device_family))
    if device is not None and public_key is not None:
        admitted.device_id = device.id
        admitted.hello_auth = await sync_to_async(pairing_gate)(params, role, scopes, public_key, address)
    return admitted
