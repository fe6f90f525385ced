"""channels.status (operations.md §8): one summary and account snapshots per channel adapter."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async

from gateway.models import ChannelAccount
from gateway.protocol.events import now_ms

from .adapters import ADAPTERS, ChannelAdapter


def _accounts() -> dict[tuple[str, str], ChannelAccount]:
    return {(a.channel, a.account_id): a for a in ChannelAccount.objects.all()}


def account_snapshot(adapter: ChannelAdapter, account_id: str, state: ChannelAccount | None) -> dict[str, Any]:
    enabled = adapter.enabled(account_id)
    configured = adapter.configured(account_id)
    snap: dict[str, Any] = {"accountId": account_id, "enabled": enabled, "configured": configured,
                            "linked": configured and not (state and state.logged_out),
                            "running": enabled and configured, "connected": enabled and configured,
                            "mode": adapter.id}
    if state is not None:
        snap["lastOutboundAt"] = state.last_outbound_at_ms
        snap["lastStopAt"] = state.last_stop_at_ms
        snap["lastError"] = state.last_error or None
    why = adapter.why_unusable(account_id)
    if why:
        snap["lastError"] = snap.get("lastError") or why
    return snap


async def status(probe: bool, timeout_ms: int) -> dict[str, Any]:
    states = await sync_to_async(_accounts)()
    out: dict[str, Any] = {"ts": now_ms(), "channelOrder": list(ADAPTERS), "channelLabels": {},
                           "channelDetailLabels": {}, "channelMeta": [], "channels": {}, "channelAccounts": {},
                           "channelDefaultAccountId": {}}
    for channel_id, adapter in ADAPTERS.items():
        snaps = [account_snapshot(adapter, acc, states.get((channel_id, acc))) for acc in adapter.account_ids()]
        if probe:
            targets = [s for s in snaps if s["enabled"] and s["configured"]]
            results = await asyncio.gather(*(adapter.probe(s["accountId"], timeout_ms) for s in targets))
            for snap, result in zip(targets, results):
                snap["probe"] = result
                snap["lastProbeAt"] = now_ms()
        out["channelLabels"][channel_id] = adapter.label
        out["channelDetailLabels"][channel_id] = adapter.detail_label
        out["channelMeta"].append({"id": channel_id, "label": adapter.label, "detailLabel": adapter.detail_label})
        out["channelAccounts"][channel_id] = snaps
        out["channelDefaultAccountId"][channel_id] = snaps[0]["accountId"]
        default = snaps[0]
        out["channels"][channel_id] = {"configured": default["configured"], "enabled": default["enabled"],
                                       "linked": default["linked"], "running": default["running"]}
    return out
