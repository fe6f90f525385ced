"""What the gateway sends is bounded by the gateway: big answers are delivered or refused with a
clear error, never a silent stall (daphne/autobahn would otherwise refuse to send a message over
the inbound limit and leave the socket hanging)."""

from __future__ import annotations

from gateway.client import GatewayClient, RpcError
from tests.support import ADMIN


async def test_large_history_is_delivered_and_cut_to_six_mib(gateway_server_factory) -> None:
    server = gateway_server_factory(ANIMA_MAX_PAYLOAD_BYTES="1000000")  # a small inbound limit
    admin = await GatewayClient.connect(server.url, token=server.token, scopes=ADMIN)
    try:
        assert admin.hello["policy"]["maxPayload"] == 1000000
        key = "agent:main:outbound-limits"
        for _ in range(4):  # 4 × ~0.9 MB: more than the inbound limit, more than... nothing else
            await admin.call("chat.inject", {"sessionKey": key, "message": "x" * 900_000})
        history = await admin.call("chat.history", {"sessionKey": key}, timeout=30)
        assert len(history["messages"]) == 4  # 3.6 MB: over maxPayload, still delivered
        for _ in range(4):  # now 8 × 0.9 MB = 7.2 MB of transcript: cut to 6 MiB, oldest dropped
            await admin.call("chat.inject", {"sessionKey": key, "message": "y" * 900_000})
        history = await admin.call("chat.history", {"sessionKey": key}, timeout=30)
        assert 0 < len(history["messages"]) < 8
        assert history["messages"][-1]["content"][0]["text"].startswith("y")
        assert isinstance(await admin.call("health"), dict), "the connection keeps working"
    finally:
        await admin.close()


async def test_presence_text_is_bounded(gateway_server) -> None:
    admin = await GatewayClient.connect(gateway_server.url, token=gateway_server.token, scopes=ADMIN)
    try:
        await admin.call("system-event", {"text": "z" * 2_000_000, "deviceId": "outbound-limits-test"})
        listing = await admin.call("system-presence")
        entry = next(e for e in listing if e.get("deviceId") == "outbound-limits-test")
        assert len(entry["text"]) <= 2000
        again = await GatewayClient.connect(gateway_server.url, token=gateway_server.token, scopes=["operator.read"])
        assert again.hello["type"] == "hello-ok", "new clients still get hello-ok"
        await again.close()
    finally:
        await admin.close()


async def test_system_run_invoke_is_checked_not_a_500(client) -> None:
    conn = await client(["operator.write"])
    try:
        await conn.call("node.invoke", {"nodeId": "nobody-here", "command": "system.run",
                                        "params": {"command": ["ls"], "approved": True}, "idempotencyKey": "k1"})
    except RpcError as err:
        assert err.code == 400 and err.error["details"]["code"] == "MISSING_RUN_ID", err.error
    else:
        raise AssertionError("an approved system.run without runId must be refused")
