"""The outbound byte budget (protocol.md §4.6): a client that stops reading loses droppable
events (a seq gap) and is closed 1008 "slow consumer" on the first non-droppable one, while
other clients are unaffected."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.client import GatewayClient
from tests.support import ADMIN


async def test_slow_consumer_loses_droppable_events_then_is_closed(gateway_server_factory):
    server = gateway_server_factory(ANIMA_MAX_BUFFERED_BYTES="65536")
    # max_queue=1: the client library stops reading from the socket as soon as one message waits,
    # so the gateway's send buffer fills up like a stalled phone's.
    slow = await connect(server.url + "/", max_size=None, max_queue=1, compression=None, ping_interval=None)
    await slow.recv()  # challenge
    await slow.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
        "minProtocol": 1, "maxProtocol": 3, "role": "operator", "scopes": ["operator.read"],
        "client": {"id": "slow", "version": "1", "platform": "linux", "mode": "test"},
        "auth": {"token": server.token}}}))
    hello = json.loads(await slow.recv())
    assert hello["ok"] is True
    admin = await GatewayClient.connect(server.url, token=server.token, scopes=ADMIN)
    bystander = await GatewayClient.connect(server.url, token=server.token, scopes=["operator.read"])
    try:
        # Presence text is bounded (2,000 chars an entry), but every presence.changed carries the
        # whole listing: 150 distinct entries make ~24 MB of droppable events, far beyond
        # loopback socket buffers.
        text = "x" * 2_000
        for i in range(150):
            await admin.call("system-event", {"text": f"{i} {text}", "deviceId": f"slow-consumer-{i}"})
        await admin.call("health", {"probe": True})  # health.changed is not droppable

        frames, close_code, close_reason = [], None, None
        try:
            async with asyncio.timeout(30):
                async for raw in slow:
                    frames.append(json.loads(raw))
        except ConnectionClosed:
            pass
        close_code, close_reason = slow.close_code, slow.close_reason
        assert close_code == 1008 and close_reason == "slow consumer", (close_code, close_reason)
        seqs = [f["seq"] for f in frames if "seq" in f]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert seqs and seqs[-1] > len(seqs), "dropped events leave a gap in seq"
        # the healthy reader is still connected and served
        assert (await bystander.call("health"))["ok"] is True  # (the presence listing is now over the 64 KiB budget)
    finally:
        await admin.close()
        await bystander.close()
        await slow.close()
