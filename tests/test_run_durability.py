"""A run survives its gateway being killed (README D14; chat-sessions-cron.md §2, §7): the
single-process gateway is SIGKILLed mid-run and started again on the same state directory and
database. The killed run is failed (not left "running" for ever), a message queued behind it
still runs, and the session takes new messages.

The single-process gateway fails the runs of its previous life as it starts, before it accepts
any connection, so no client can be connected to see that `chat.run.failed`; what a client
coming back sees is the outcome: agent.wait answers `error`, chat.history keeps the messages.
(A connected client receiving `chat.run.failed` for a run whose process died is checked in
tests/test_multiprocess.py, where the surviving process fails it.)"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from gateway.client import GatewayClient
from tests.support import GatewayServer, launch_gateway

READ, WRITE = "operator.read", "operator.write"
RECOVERY_BOUND_S = 40  # single process: at start; several processes: a 30 s lease checked every 10 s
AT_START_S = 10  # the single-process gateway fails its previous life's runs as it starts, not a lease later

pytestmark = pytest.mark.slow


def restart_on_same_state(server: GatewayServer) -> GatewayServer:
    """A new gateway process with `server`'s environment (state dir, database, token) on a new port."""
    return launch_gateway(server.state_dir, server.token, server.env)


@pytest.fixture
def restarts() -> Iterator[list[GatewayServer]]:
    """Gateways a test started itself; stopped afterwards."""
    started: list[GatewayServer] = []
    yield started
    for server in started:
        server.stop()


def is_run_event(frame: dict[str, Any], run_id: str, *events: str) -> bool:
    return frame.get("event") in events and (frame.get("payload") or {}).get("runId") == run_id


async def next_frame(client: GatewayClient, what: str, match: Callable[[dict[str, Any]], bool],
                     timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            frame = await asyncio.wait_for(client.events.get(), remaining)
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s; saw {seen}") from None
        if match(frame):
            return frame
        seen.append((frame.get("event"), (frame.get("payload") or {}).get("runId")))


def text_of(message: dict[str, Any] | None) -> str:
    content = (message or {}).get("content")
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def long_text(tag: str, chars: int) -> str:
    """The echo backend streams 16 characters every 20 ms: 8000 characters take about 10 s."""
    return (f"{tag} " + " ".join(f"w{i:04d}" for i in range(chars // 6)))[:chars].rstrip()


async def test_killed_gateway_fails_its_run_and_keeps_the_queue(gateway_server_factory: Any,
                                                                restarts: list[GatewayServer]) -> None:
    server: GatewayServer = gateway_server_factory()
    restarted: GatewayServer | None = None
    session = f"agent:main:durable-{secrets.token_hex(5)}"
    doomed, queued, fresh = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    text1, text2 = long_text("killed mid-run", 8000), long_text("queued behind it", 200)
    try:
        writer = await GatewayClient.connect(server.url, token=server.token, scopes=[READ, WRITE])
        try:
            ack = await writer.call("chat.send", {"sessionKey": session, "message": text1, "idempotencyKey": doomed})
            assert ack == {"runId": doomed, "status": "started"}, ack
            await next_frame(writer, f"a chat.delta of {doomed}", lambda f: is_run_event(f, doomed, "chat.delta"))
            ack = await writer.call("chat.send", {"sessionKey": session, "message": text2, "idempotencyKey": queued})
            assert ack == {"runId": queued, "status": "started"}, ack  # persisted as a queued run
            running = await writer.call("chat.history", {"sessionKey": session})
            assert [(m["role"], text_of(m)) for m in running["messages"]] == [("user", text1)], running
        finally:
            await writer.close()

        os.killpg(server.process.pid, signal.SIGKILL)  # mid-run, no chance to clean up
        server.process.wait(10)

        restarted = await asyncio.to_thread(restart_on_same_state, server)
        restarts.append(restarted)
        started = time.monotonic()
        client = await GatewayClient.connect(restarted.url, token=restarted.token, scopes=[READ, WRITE])
        try:
            waited = await client.call("agent.wait", {"runId": doomed, "timeoutMs": RECOVERY_BOUND_S * 1000},
                                       timeout=RECOVERY_BOUND_S + 10)
            assert waited["runId"] == doomed and waited["status"] == "error", waited
            assert waited.get("error"), waited
            assert time.monotonic() - started <= AT_START_S, "the killed run was failed a lease later, not at start"

            # the message queued behind the killed run is not lost: it runs after the restart
            done = await client.call("agent.wait", {"runId": queued, "timeoutMs": RECOVERY_BOUND_S * 1000},
                                     timeout=RECOVERY_BOUND_S + 10)
            assert done["runId"] == queued and done["status"] == "ok", done
            assert time.monotonic() - started <= RECOVERY_BOUND_S, "the queued run ran too late"
            history = await client.call("chat.history", {"sessionKey": session})
            assert [(m["role"], text_of(m)) for m in history["messages"]] == [
                ("user", text1), ("user", text2), ("assistant", text2)], history

            # a retry of the killed run's key gets its recorded failure, not a new run
            retry = await client.request("chat.send", {"sessionKey": session, "message": text1,
                                                       "idempotencyKey": doomed})
            assert not retry["ok"], retry
            assert (retry.get("payload") or {}).get("status") == "error", retry

            # the session takes new messages
            ack = await client.call("chat.send", {"sessionKey": session, "message": "after the restart",
                                                  "idempotencyKey": fresh})
            assert ack == {"runId": fresh, "status": "started"}, ack
            completed = await next_frame(client, f"the final event of {fresh}",
                                         lambda f: is_run_event(f, fresh, "chat.run.completed", "chat.run.failed"))
            assert completed["event"] == "chat.run.completed", completed
            assert text_of(completed["payload"]["message"]) == "after the restart", completed
            history = await client.call("chat.history", {"sessionKey": session})
            assert [(m["role"], text_of(m)) for m in history["messages"]][-2:] == [
                ("user", "after the restart"), ("assistant", "after the restart")], history
        finally:
            await client.close()
    except BaseException:
        print(f"\n===== first gateway output =====\n{server.output()[-4000:]}")
        if restarted is not None:
            print(f"\n===== restarted gateway output =====\n{restarted.output()[-4000:]}")
        raise


async def test_an_abort_racing_the_end_of_a_run_never_loses_it(gateway_server: GatewayServer) -> None:
    """chat.abort landing while the run records its end (after the backend finished) must not
    cancel that recording: every run gets its final event and leaves the running state, and the
    session takes the next message. Each round moves the abort a little later across the end of
    a one-chunk echo run."""
    client = await GatewayClient.connect(gateway_server.url, token=gateway_server.token, scopes=[READ, WRITE])
    try:
        session = f"agent:main:abort-race-{secrets.token_hex(5)}"
        for round_no in range(60):
            key = str(uuid.uuid4())
            ack = await client.call("chat.send", {"sessionKey": session, "message": f"round {round_no} " + "x" * 30,
                                                  "idempotencyKey": key})
            assert ack == {"runId": key, "status": "started"}, (round_no, ack)
            await asyncio.sleep((round_no % 12) * 0.006)  # spreads the abort over the run's end
            aborted = await client.call("chat.abort", {"sessionKey": session, "runId": key})
            final = await next_frame(client, f"the final event of round {round_no} (abort said {aborted})",
                                     lambda f, key=key: is_run_event(f, key, "chat.run.completed", "chat.run.failed"),
                                     timeout=5)
            if final["event"] == "chat.run.failed":
                assert aborted["aborted"] is True, (round_no, aborted, final)
                assert final["payload"]["state"] == "aborted", final
            waited = await client.call("agent.wait", {"runId": key, "timeoutMs": 5000})
            expected = "ok" if final["event"] == "chat.run.completed" else "timeout"  # aborted: `timeout` (§3.2)
            assert waited["status"] == expected, (round_no, final["event"], waited)
        history = await client.call("chat.history", {"sessionKey": session, "limit": 1000})
        users = [text_of(m) for m in history["messages"] if m["role"] == "user"]
        assert len(users) == 60, len(users)
    finally:
        await client.close()
