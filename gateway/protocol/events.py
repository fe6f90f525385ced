"""Emitting events. Every event goes once through the channel layer to each gateway process
(group GROUP, one channel per process); each process then filters by audience and writes it to
its own connections (see hub.py). Services emit after commit (README D10, STYLE 6)."""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

GROUP = "anima.gateway"

# Audiences (protocol.md §4.3, tightened as decided there)
ALL = {"kind": "all"}
READERS = {"kind": "readers"}
READERS_AND_NODES = {"kind": "readers+nodes"}
PAIRING = {"kind": "pairing"}
APPROVALS = {"kind": "approvals"}


def to_connections(*conn_ids: str) -> dict:
    return {"kind": "conn", "ids": list(conn_ids)}


def to_devices(*device_ids: str, role: str | None = None) -> dict:
    return {"kind": "device", "ids": list(device_ids), "role": role}


# Events dropped (not fatal) for a slow consumer (protocol.md §4.1 "drop")
DROPPABLE = {"tick", "presence.changed", "heartbeat", "chat.delta", "cron", "talk.mode", "voicewake.changed",
             "device.pair.requested", "device.pair.resolved", "node.pair.requested", "node.pair.resolved",
             "exec.approval.requested", "exec.approval.resolved"}


def now_ms() -> int:
    return int(time.time() * 1000)


def event_message(event: str, payload: Any, audience: dict, *, state_version: dict | None = None,
                  droppable: bool | None = None) -> dict:
    return {"type": "gateway.event", "event": event, "payload": payload, "audience": audience,
            "stateVersion": state_version, "droppable": event in DROPPABLE if droppable is None else droppable}


async def emit(event: str, payload: Any, audience: dict = READERS, **kw: Any) -> None:
    """Send an event to every process; each delivers it to the entitled connections."""
    await get_channel_layer().group_send(GROUP, event_message(event, payload, audience, **kw))


def emit_after_commit(event: str, payload: Any, audience: dict = READERS, **kw: Any) -> None:
    """From sync service code inside (or outside) a transaction: emit once it commits."""
    publish_after_commit(event_message(event, payload, audience, **kw))


def publish_after_commit(message: dict) -> None:
    """Send a message to every process once the current transaction commits."""
    transaction.on_commit(lambda: async_to_sync(get_channel_layer().group_send)(GROUP, message))


def close_after_commit(audience: dict, code: int, reason: str) -> None:
    """Close the matching live connections on every process once the transaction commits."""
    publish_after_commit({"type": "gateway.close", "audience": audience, "code": code, "reason": reason})
