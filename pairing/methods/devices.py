"""Device pairing and device-token methods (auth-and-pairing.md §3.4, §4.4). Thin: each calls
the service that the admin and the management commands call too (README D10)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from gateway.protocol.context import CallContext
from gateway.protocol.registry import PAIRING, Params, method

from .. import queries, services
from .common import NonEmpty, actor


class RequestIdParams(Params):
    request_id: NonEmpty


class RotateParams(Params):
    device_id: NonEmpty
    role: NonEmpty
    scopes: list[str] | None = None


class RevokeParams(Params):
    device_id: NonEmpty
    role: NonEmpty


@method("device.pair.list", scope=PAIRING)
async def pair_list(ctx: CallContext, params: Params) -> dict[str, Any]:
    return await sync_to_async(queries.pairing_listing)()


@method("device.pair.approve", scope=PAIRING, params=RequestIdParams)
async def pair_approve(ctx: CallContext, params: RequestIdParams) -> dict[str, Any]:
    def approve() -> dict[str, Any]:
        device = services.approve_pairing(params.request_id, approver_scopes=ctx.conn.granting_scopes,
                                          resolved_by=actor(ctx))
        return {"requestId": params.request_id, "device": queries.device_payload(device)}

    return await sync_to_async(approve)()


@method("device.pair.reject", scope=PAIRING, params=RequestIdParams)
async def pair_reject(ctx: CallContext, params: RequestIdParams) -> dict[str, Any]:
    request = await sync_to_async(services.reject_pairing)(params.request_id, resolved_by=actor(ctx))
    return {"requestId": str(request.request_id), "deviceId": request.device_id}


@method("device.token.rotate", scope=PAIRING, params=RotateParams)
async def token_rotate(ctx: CallContext, params: RotateParams) -> dict[str, Any]:
    token, row = await sync_to_async(services.rotate_device_token)(params.device_id, params.role, params.scopes)
    return {"deviceId": params.device_id, "role": row.role, "token": token, "scopes": list(row.scopes),
            "rotatedAtMs": row.rotated_at_ms or row.created_at_ms}


@method("device.token.revoke", scope=PAIRING, params=RevokeParams)
async def token_revoke(ctx: CallContext, params: RevokeParams) -> dict[str, Any]:
    row = await sync_to_async(services.revoke_device_token)(params.device_id, params.role)
    return {"deviceId": params.device_id, "role": row.role, "revokedAtMs": row.revoked_at_ms}
