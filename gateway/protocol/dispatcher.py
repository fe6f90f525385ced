"""One dispatcher for every method: lookup -> authorization -> params -> handler -> error
mapping (README Clarifications, order of checks)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import INTERNAL_MESSAGE, GatewayError
from .registry import ADMIN, APPROVALS, NODE, PAIRING, READ, REGISTRY, SCOPE_ADMIN, SCOPE_APPROVALS, \
    SCOPE_PAIRING, SCOPE_READ, SCOPE_WRITE, WRITE, MethodSpec
from .validation import validate

if TYPE_CHECKING:
    from .context import CallContext

log = logging.getLogger("gateway.dispatch")


def authorize(spec: MethodSpec, role: str, scopes: frozenset[str]) -> None:
    """protocol.md §3.3: raise 403 unless this role and these scopes may call the method."""
    if spec.scope == NODE:
        if role != "node":
            raise GatewayError("FORBIDDEN", f"unauthorized role: {role}", details={"role": role})
        return
    if role != "operator":
        raise GatewayError("FORBIDDEN", f"unauthorized role: {role}", details={"role": role})
    if SCOPE_ADMIN in scopes:
        return
    allowed = {
        READ: SCOPE_READ in scopes or SCOPE_WRITE in scopes,
        WRITE: SCOPE_WRITE in scopes,
        APPROVALS: SCOPE_APPROVALS in scopes,
        PAIRING: SCOPE_PAIRING in scopes,
        ADMIN: False,
    }[spec.scope]
    if not allowed:
        required = f"operator.{spec.scope}"
        raise GatewayError("MISSING_SCOPE", f"missing scope: {required}",
                           details={"requiredScope": required, "role": role})


async def dispatch(ctx: CallContext, method: str, params: Any) -> Any:
    """Run one request; returns the payload or raises GatewayError (never anything else)."""
    spec = REGISTRY.get(method)
    if spec is None:
        raise GatewayError("NOT_FOUND", f"unknown method: {method}")
    authorize(spec, ctx.conn.role, ctx.conn.scopes)
    parsed = validate(spec.params, params, f"{method} params")
    try:
        return await spec.handler(ctx, parsed)
    except GatewayError:
        raise
    except Exception:
        log.exception("method %s failed", method)
        raise GatewayError("INTERNAL", INTERNAL_MESSAGE) from None
