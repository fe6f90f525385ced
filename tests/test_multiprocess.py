"""Two gateway processes on one PostgreSQL database and one Redis (README D7, D8): events,
pairing, presence and token revocation work across processes, and an idle process keeps
receiving the fan-out. A node connected to one process is invoked from the other (result,
timeout, disconnect), and exec approvals and node pairing requested on one process are
decided on the other (auth-and-pairing.md §5-§6). Chat and agent runs started on one process
stream to, are aborted from, deduplicated against, queued behind and waited for on the other,
and a run whose process is killed is failed by the survivor, which then runs the session's
queue (README D8, D14; chat-sessions-cron.md §2, §3).

Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379. Without them the tests are
skipped, except in CI (CI=true), where both services exist and a skip would hide a failure."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

from gateway.client import GatewayClient, RpcError
from tests.multiproc_util import (Cluster, Device, DeviceConnect, GatewayProcess, close_code_of, device_connect,
                                  running_cluster)

pytestmark = pytest.mark.multiprocess

READ, WRITE, PAIRING, ADMIN = "operator.read", "operator.write", "operator.pairing", "operator.admin"
APPROVALS = "operator.approvals"
DEVICE_SCOPES = [READ]
# Longer than one blocking channel-layer read (channels-redis waits 5 s per BZPOPMIN).
IDLE_SECONDS = 7


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Fresh database + Redis prefix, migrated once, gateways A and B running; all removed after."""
    yield from running_cluster(request)


@pytest.fixture
def own_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster for one test that kills one of its gateways (the shared one must stay whole)."""
    yield from running_cluster(request)


class Sockets:
    """Opens operator clients and device sockets for one test and closes them all afterwards."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.clients: list[GatewayClient] = []
        self.devices: list[DeviceConnect] = []

    async def client(self, gw: GatewayProcess, scopes: list[str], **kw: Any) -> GatewayClient:
        client = await GatewayClient.connect(gw.url, token=self.cluster.token, scopes=scopes, **kw)
        self.clients.append(client)
        return client

    async def device(self, gw: GatewayProcess, device: Device, *, token: str, **kw: Any) -> DeviceConnect:
        outcome = await device_connect(gw.url, device, token=token, scopes=DEVICE_SCOPES, **kw)
        self.devices.append(outcome)
        return outcome

    async def node(self, gw: GatewayProcess, device: Device, *, commands: list[str],
                   caps: list[str]) -> GatewayClient:
        """A node-role connection of a local device (auto-paired for role node), driven through
        the same client as the operators: node.invoke.request arrives as an event."""
        outcome = await device_connect(gw.url, device, token=self.cluster.token, scopes=[], role="node",
                                       forwarded_for=None, client_id="node-host", client_mode="node",
                                       platform="linux", display_name=f"mp-node-{device.id[:8]}",
                                       extra={"commands": commands, "caps": caps})
        self.devices.append(outcome)
        assert outcome.ok, outcome.error
        assert outcome.hello["auth"]["role"] == "node", outcome.hello
        client = GatewayClient(outcome.ws, outcome.hello, outcome.challenge)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for outcome in self.devices:
            await outcome.ws.close()


@pytest.fixture
async def sockets(cluster: Cluster) -> AsyncIterator[Sockets]:
    opened = Sockets(cluster)
    yield opened
    await opened.close()


async def next_matching(client: GatewayClient, event: str, match: Any, timeout: float = 10) -> dict[str, Any]:
    """The first `event` whose payload satisfies `match`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching {event} within {timeout}s; saw {seen!r}")
        try:
            frame = await client.next_event(event, timeout=remaining)
        except TimeoutError:
            raise AssertionError(f"no matching {event} within {timeout}s; saw {seen!r}") from None
        if match(frame.get("payload")):
            return frame
        seen.append(frame.get("payload"))


async def rpc_error(call: Any) -> RpcError:
    """The error a call (an awaitable) fails with; AssertionError if it succeeds."""
    try:
        result = await call
    except RpcError as exc:
        return exc
    raise AssertionError(f"expected an error, got {result!r}")


class Responses:
    """Every `res` frame for one request id. A twoPhase request is answered twice with the same id,
    and GatewayClient forgets an id after its first answer; this stands in for its future and puts
    itself back synchronously from the client's reader, so no second answer can be missed."""

    def __init__(self, client: GatewayClient, method: str, params: Any):
        self.client = client
        self.rid = f"tp-{secrets.token_hex(6)}"
        self.method, self.params = method, params
        self.frames: asyncio.Queue[Any] = asyncio.Queue()

    async def send(self) -> None:
        self.client._waiting[self.rid] = self  # type: ignore[assignment]
        await self.client.ws.send(json.dumps({"type": "req", "id": self.rid, "method": self.method,
                                              "params": self.params}))

    # the part of asyncio.Future that GatewayClient._read uses
    def done(self) -> bool:
        return False

    def set_result(self, frame: dict[str, Any]) -> None:
        self.frames.put_nowait(frame)
        self.client._waiting[self.rid] = self  # type: ignore[assignment]

    def set_exception(self, exc: BaseException) -> None:
        self.frames.put_nowait(exc)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        try:
            item = await asyncio.wait_for(self.frames.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no response to {self.method} ({self.rid}) within {timeout}s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def forget(self) -> None:
        self.client._waiting.pop(self.rid, None)


async def request_pairing_on(gw: GatewayProcess, sockets: Sockets, device: Device) -> str:
    """A remote device's first connect is refused with NOT_PAIRED; the pairing request's id."""
    refused = await sockets.device(gw, device, token=sockets.cluster.token, display_name="mp-device")
    assert not refused.ok, refused.hello
    assert refused.error.get("code") == 403, refused.error
    assert refused.error.get("reason") == "NOT_PAIRED", refused.error
    request_id = (refused.error.get("details") or {}).get("requestId")
    assert request_id, refused.error
    assert await close_code_of(refused.ws) == 1008
    return request_id


async def paired_device_token(cluster: Cluster, sockets: Sockets, device: Device) -> str:
    """Pair `device` through A, approve it on B, and return the device token B issues."""
    a, b = cluster.gateways
    approver = await sockets.client(b, [PAIRING])
    request_id = await request_pairing_on(a, sockets, device)
    await approver.call("device.pair.approve", {"requestId": request_id})
    admitted = await sockets.device(b, device, token=cluster.token)
    assert admitted.ok, admitted.error
    return admitted.hello["auth"]["deviceToken"]


async def test_system_event_on_a_reaches_client_on_b(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    reader = await sockets.client(b, [READ])
    admin = await sockets.client(a, [ADMIN])
    text = f"mp beacon {secrets.token_hex(6)}"

    await admin.call("system-event", {"text": text})

    frame = await next_matching(reader, "presence.changed",
                                lambda p: any(e.get("text") == text for e in (p or {}).get("presence", [])))
    assert frame["type"] == "evt"


async def test_device_paired_through_a_is_known_to_b(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    pairing_b = await sockets.client(b, [PAIRING])
    pairing_a = await sockets.client(a, [PAIRING])
    device = Device()

    request_id = await request_pairing_on(a, sockets, device)

    await next_matching(pairing_b, "device.pair.requested", lambda p: p.get("requestId") == request_id)
    listing = await pairing_b.call("device.pair.list")
    pending = [r for r in listing["pending"] if r["requestId"] == request_id]
    assert pending, listing
    assert pending[0]["deviceId"] == device.id
    assert pending[0]["publicKey"] == device.public_key

    approved = await pairing_b.call("device.pair.approve", {"requestId": request_id})
    assert approved["device"]["deviceId"] == device.id

    resolved = await next_matching(pairing_a, "device.pair.resolved", lambda p: p.get("requestId") == request_id)
    assert resolved["payload"]["deviceId"] == device.id
    assert resolved["payload"]["decision"] == "approved"

    on_b = await sockets.device(b, device, token=cluster.token)
    assert on_b.ok, on_b.error
    device_token = on_b.hello["auth"]["deviceToken"]
    assert device_token and device_token != cluster.token
    await on_b.ws.close()

    on_a = await sockets.device(a, device, token=device_token)
    assert on_a.ok, on_a.error
    assert on_a.hello["type"] == "hello-ok"
    assert on_a.hello["auth"]["role"] == "operator"


async def test_presence_is_shared(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    name = f"mp-presence-{secrets.token_hex(4)}"
    await sockets.client(a, [READ], client_id="mp-ui", mode="ui", display_name=name)
    reader = await sockets.client(b, [READ])

    listing = await reader.call("system-presence")

    hosts = [entry.get("host") for entry in listing]
    assert name in hosts, hosts


async def test_revoke_on_b_closes_device_on_a(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    device = Device()
    device_token = await paired_device_token(cluster, sockets, device)
    live = await sockets.device(a, device, token=device_token)
    assert live.ok, live.error
    pairing_b = await sockets.client(b, [PAIRING])

    revoked = await pairing_b.call("device.token.revoke", {"deviceId": device.id, "role": "operator"})
    assert revoked["deviceId"] == device.id

    assert await close_code_of(live.ws, timeout=10) == 1008


async def test_idle_gateways_keep_receiving_fan_out(cluster: Cluster, sockets: Sockets) -> None:
    """An idle process's blocking channel-layer read must not time out on the Redis client side
    (that raced with the server handing over a message, and backed event delivery off)."""
    a, b = cluster.gateways
    reader = await sockets.client(b, [READ])
    admin = await sockets.client(a, [ADMIN])
    log_offsets = {gw.name: len(gw.log_text()) for gw in cluster.gateways}

    await asyncio.sleep(IDLE_SECONDS)

    for gw in cluster.gateways:
        errors = [line for line in gw.log_text()[log_offsets[gw.name]:].splitlines() if " ERROR " in line]
        assert not errors, f"gateway {gw.name} logged errors while idle: {errors}"
    text = f"mp after idle {secrets.token_hex(6)}"
    started = time.monotonic()
    await admin.call("system-event", {"text": text})
    await next_matching(reader, "presence.changed",
                        lambda p: any(e.get("text") == text for e in (p or {}).get("presence", [])), timeout=2)
    assert time.monotonic() - started < 2


# --- nodes and exec approvals across processes (auth-and-pairing.md §5-§6) -------------------------

async def node_on_a_invoked_from_b(cluster: Cluster, sockets: Sockets, *, timeout_ms: int, params: Any
                                   ) -> tuple[GatewayClient, Device, asyncio.Task, dict[str, Any], float]:
    """A node on A, an operator on B invoking system.which on it; returns once A's node holds
    the node.invoke.request (the node, its device, B's pending call, the request, the start time)."""
    a, b = cluster.gateways
    device = Device()
    node = await sockets.node(a, device, commands=["system.which"], caps=["system"])
    operator = await sockets.client(b, [WRITE])
    key = str(uuid.uuid4())
    started = time.monotonic()
    call = asyncio.create_task(operator.call("node.invoke", {
        "nodeId": device.id, "command": "system.which", "params": params, "timeoutMs": timeout_ms,
        "idempotencyKey": key}, timeout=timeout_ms / 1000 + 20))
    try:
        payload = (await node.next_event("node.invoke.request", timeout=10))["payload"]
        assert payload["nodeId"] == device.id, payload
        assert payload["command"] == "system.which", payload
        assert payload["idempotencyKey"] == key, payload
        assert payload["timeoutMs"] == timeout_ms, payload
        assert (None if payload["paramsJSON"] is None else json.loads(payload["paramsJSON"])) == params, payload
        assert payload["id"], payload
    except BaseException:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        raise
    return node, device, call, payload, started


async def test_invoke_from_b_reaches_node_on_a(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    params = {"bins": ["git", "python3"]}
    node, device, call, request, _ = await node_on_a_invoked_from_b(cluster, sockets, timeout_ms=8000,
                                                                    params=params)
    reader = await sockets.client(b, [READ])
    listing = await reader.call("node.list")
    rows = [n for n in listing["nodes"] if n["nodeId"] == device.id]
    assert rows, listing
    assert rows[0]["connected"] is True, rows[0]
    assert rows[0]["commands"] == ["system.which"], rows[0]
    assert rows[0]["caps"] == ["system"], rows[0]
    assert rows[0]["platform"] == "linux", rows[0]
    assert rows[0]["displayName"] == f"mp-node-{device.id[:8]}", rows[0]

    answer = {"bins": {"git": "/usr/bin/git", "python3": "/usr/bin/python3"}}
    accepted = await node.call("node.invoke.result", {"id": request["id"], "nodeId": device.id, "ok": True,
                                                      "payloadJSON": json.dumps(answer)})
    assert accepted == {"ok": True}, accepted

    result = await asyncio.wait_for(call, 10)
    assert result["ok"] is True, result
    assert result["payload"] == answer, result
    assert result["nodeId"] == device.id and result["command"] == "system.which", result
    assert json.loads(result["payloadJSON"]) == answer, result

    # the invoke is settled: the same result again is ignored
    again = await node.call("node.invoke.result", {"id": request["id"], "nodeId": device.id, "ok": True,
                                                   "payloadJSON": json.dumps(answer)})
    assert again == {"ok": True, "ignored": True}, again


async def test_invoke_timeout_across_processes(cluster: Cluster, sockets: Sockets) -> None:
    node, device, call, request, started = await node_on_a_invoked_from_b(cluster, sockets, timeout_ms=500,
                                                                          params={"bins": ["sh"]})

    error = await rpc_error(asyncio.wait_for(call, 10))
    elapsed = time.monotonic() - started
    assert error.code == 504, error.error
    assert error.reason == "TIMEOUT", error.error
    assert 0.45 <= elapsed < 5, elapsed

    late = await node.call("node.invoke.result", {"id": request["id"], "nodeId": device.id, "ok": True,
                                                  "payloadJSON": json.dumps({"bins": {}})})
    assert late == {"ok": True, "ignored": True}, late


async def test_node_disconnect_fails_pending_invoke(cluster: Cluster, sockets: Sockets) -> None:
    timeout_ms = 20_000
    node, device, call, request, started = await node_on_a_invoked_from_b(cluster, sockets,
                                                                          timeout_ms=timeout_ms, params=None)
    closed_at = time.monotonic()
    await node.close()

    error = await rpc_error(asyncio.wait_for(call, 10))
    assert error.code == 503, error.error
    assert error.reason == "UNAVAILABLE", error.error
    assert (error.error.get("details") or {}).get("code") == "NOT_CONNECTED", error.error
    assert time.monotonic() - closed_at < 5, "B's invoke was not failed promptly on disconnect"

    b = cluster.gateways[1]
    reader = await sockets.client(b, [READ])
    rows = [n for n in (await reader.call("node.list"))["nodes"] if n["nodeId"] == device.id]
    assert all(not r["connected"] for r in rows), rows


async def test_exec_approval_requested_on_a_resolved_on_b(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    resolver = await sockets.client(b, [APPROVALS], client_id="mp-approver", mode="ui",
                                    display_name="mp approver")
    waiter = await sockets.client(b, [APPROVALS])
    requester = await sockets.client(a, [APPROVALS])
    command = f"echo mp-{secrets.token_hex(4)}"

    responses = Responses(requester, "exec.approval.request",
                          {"command": command, "cwd": "/tmp", "host": "node", "twoPhase": True, "timeoutMs": 15000})
    await responses.send()
    try:
        first = await responses.next(timeout=10)
        assert first["ok"], first
        accepted = first["payload"]
        assert accepted["status"] == "accepted", accepted
        approval_id = accepted["id"]
        assert accepted["expiresAtMs"] - accepted["createdAtMs"] == 15000, accepted

        requested = await next_matching(resolver, "exec.approval.requested", lambda p: p.get("id") == approval_id)
        assert requested["payload"]["request"]["command"] == command, requested
        assert requested["payload"]["request"]["cwd"] == "/tmp", requested

        waiting = asyncio.create_task(waiter.call("exec.approval.waitDecision", {"id": approval_id}, timeout=20))
        resolved = await resolver.call("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
        assert resolved == {"ok": True}, resolved

        second = await responses.next(timeout=10)
        assert second["ok"], second
        assert second["payload"]["id"] == approval_id, second
        assert second["payload"]["decision"] == "allow-once", second
        assert second["payload"]["expiresAtMs"] == accepted["expiresAtMs"], second

        waited = await asyncio.wait_for(waiting, 10)
        assert waited["id"] == approval_id and waited["decision"] == "allow-once", waited

        event = await next_matching(requester, "exec.approval.resolved", lambda p: p.get("id") == approval_id)
        assert event["payload"]["decision"] == "allow-once", event
        assert event["payload"]["resolvedBy"] == "mp approver", event
    finally:
        responses.forget()


async def test_exec_approval_expires_across_processes(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    requester = await sockets.client(a, [APPROVALS])
    resolver = await sockets.client(b, [APPROVALS])

    responses = Responses(requester, "exec.approval.request",
                          {"command": "true", "twoPhase": True, "timeoutMs": 600})
    await responses.send()
    try:
        first = await responses.next(timeout=10)
        assert first["ok"] and first["payload"]["status"] == "accepted", first
        approval_id = first["payload"]["id"]
        started = time.monotonic()

        second = await responses.next(timeout=10)
        assert second["ok"], second
        assert second["payload"]["id"] == approval_id, second
        assert second["payload"]["decision"] is None, second
        assert time.monotonic() - started < 5, "the expiry came far too late"
    finally:
        responses.forget()

    error = await rpc_error(resolver.call("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"}))
    assert error.code == 409, error.error
    assert error.reason == "CONFLICT", error.error
    # the expired decision stays null on every process
    waited = await resolver.call("exec.approval.waitDecision", {"id": approval_id}, timeout=10)
    assert waited["decision"] is None, waited


async def test_node_pairing_approved_on_b(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    pairing_a = await sockets.client(a, [PAIRING])
    pairing_b = await sockets.client(b, [PAIRING])
    node_id = f"mp-node-{secrets.token_hex(4)}"

    asked = await pairing_a.call("node.pair.request", {"nodeId": node_id, "displayName": "mp pairing node",
                                                       "platform": "linux", "commands": ["system.which"]})
    assert asked["status"] == "pending" and asked["created"] is True, asked
    request_id = asked["request"]["requestId"]

    requested = await next_matching(pairing_b, "node.pair.requested", lambda p: p.get("requestId") == request_id)
    assert requested["payload"]["nodeId"] == node_id, requested
    assert requested["payload"]["displayName"] == "mp pairing node", requested

    approved = await pairing_b.call("node.pair.approve", {"requestId": request_id})
    assert approved["node"]["nodeId"] == node_id, approved
    token = approved["node"]["token"]
    assert token, approved

    resolved = await next_matching(pairing_a, "node.pair.resolved", lambda p: p.get("requestId") == request_id)
    assert resolved["payload"]["nodeId"] == node_id, resolved
    assert resolved["payload"]["decision"] == "approved", resolved

    verified = await pairing_a.call("node.pair.verify", {"nodeId": node_id, "token": token})
    assert verified["ok"] is True, verified


# --- chat and agent runs across processes (README D8, D14; chat-sessions-cron.md §2, §3, §7) -------

CHAT_EVENTS = ("chat.run.started", "chat.delta", "chat.run.completed", "chat.run.failed")
FINAL_EVENTS = ("chat.run.completed", "chat.run.failed")


class EventLog:
    """Every event one client receives, kept in arrival order. (next_event drops what it skips,
    and the events of runs on different processes may interleave.)"""

    def __init__(self, client: GatewayClient):
        self.client = client
        self.frames: list[dict[str, Any]] = []

    async def wait_for(self, what: str, match: Callable[[dict[str, Any]], bool], timeout: float = 10
                       ) -> dict[str, Any]:
        """The first frame (already received or arriving within `timeout` s) that `match`es."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for frame in self.frames[checked:]:
                if match(frame):
                    return frame
            checked = len(self.frames)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout}s; saw {self.summary()}")
            try:
                self.frames.append(await asyncio.wait_for(self.client.events.get(), remaining))
            except TimeoutError:
                raise AssertionError(f"no {what} within {timeout}s; saw {self.summary()}") from None

    def summary(self) -> list[tuple[Any, ...]]:
        return [(f.get("event"), (f.get("payload") or {}).get("runId"), (f.get("payload") or {}).get("state"))
                for f in self.frames if f.get("event") != "tick"]

    def of_run(self, run_id: str, frames: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The chat events of one run, in arrival order."""
        return [f for f in (self.frames if frames is None else frames) if is_run_event(f, run_id, *CHAT_EVENTS)]

    async def first(self, run_id: str, *events: str, timeout: float = 10) -> dict[str, Any]:
        return await self.wait_for(f"{'/'.join(events)} of run {run_id}",
                                   lambda f: is_run_event(f, run_id, *events), timeout)

    async def final(self, run_id: str, timeout: float = 20) -> dict[str, Any]:
        return await self.first(run_id, *FINAL_EVENTS, timeout=timeout)

    async def flush(self, *through: GatewayClient) -> None:
        """Bounded wait until an event sent by each given client's process after everything seen
        so far has arrived here: whatever those processes emitted earlier is in `frames` now."""
        for admin in through:
            text = f"mp marker {secrets.token_hex(6)}"
            await admin.call("system-event", {"text": text})
            await self.wait_for(f"presence.changed with marker {text!r}",
                                lambda f, text=text: f.get("event") == "presence.changed" and any(
                                    e.get("text") == text for e in (f.get("payload") or {}).get("presence", [])))


def is_run_event(frame: dict[str, Any], run_id: str, *events: str) -> bool:
    return frame.get("event") in events and (frame.get("payload") or {}).get("runId") == run_id


def text_of(message: dict[str, Any] | None) -> str:
    content = (message or {}).get("content")
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def transcript(history: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.get("role"), text_of(m)) for m in history["messages"]]


def echo_text(tag: str, chars: int) -> str:
    """A message of about `chars` characters; the echo backend streams 16 of them every 20 ms,
    so 3000 characters keep a run going for about 4 s."""
    words = f"{tag} " + " ".join(f"w{i:04d}" for i in range(chars // 6))
    return words[:chars].rstrip()


def new_session() -> str:
    return f"agent:main:mp-chat-{secrets.token_hex(5)}"


def assert_streamed(log: EventLog, run_id: str, session: str, text: str) -> None:
    """started, then deltas whose cumulative text grows by exactly their `delta`, then completed
    with the whole echo; seq increases throughout."""
    events = log.of_run(run_id)
    names = [f["event"] for f in events]
    assert names[0] == "chat.run.started", names
    assert names[-1] == "chat.run.completed", names
    assert names.count("chat.run.started") == 1 and names.count("chat.run.completed") == 1, names
    assert set(names[1:-1]) == {"chat.delta"}, names
    assert all(f["payload"]["sessionKey"] == session for f in events), events[0]
    seqs = [f["payload"]["seq"] for f in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    sent = ""
    for frame in events[1:-1]:
        payload = frame["payload"]
        cumulative = text_of(payload["message"])
        assert payload["state"] == "delta", payload
        assert cumulative == sent + payload["delta"], (sent, payload)
        assert len(cumulative) > len(sent), payload
        assert text.startswith(cumulative), cumulative
        sent = cumulative
    final = events[-1]["payload"]
    assert final["state"] == "final", final
    assert text_of(final["message"]) == text, final
    assert final["stopReason"] == "stop", final


async def test_chat_send_on_a_streams_to_client_on_b(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    reader = await sockets.client(b, [READ])
    writer = await sockets.client(a, [READ, WRITE])
    log = EventLog(reader)
    session, key = new_session(), str(uuid.uuid4())
    text = echo_text("streamed from A", 400)

    ack = await writer.call("chat.send", {"sessionKey": session, "message": text, "idempotencyKey": key})
    assert ack == {"runId": key, "status": "started"}, ack

    await log.final(key)
    assert_streamed(log, key, session, text)
    assert len(log.of_run(key)) >= 4, log.summary()  # several deltas, not one lump

    history = await reader.call("chat.history", {"sessionKey": session})
    assert transcript(history) == [("user", text), ("assistant", text)], history
    assert history["messages"][1]["stopReason"] == "stop", history["messages"][1]


async def test_chat_abort_on_b_stops_run_on_a(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    writer = await sockets.client(a, [READ, WRITE])
    admin_a = await sockets.client(a, [ADMIN])
    log_a = EventLog(await sockets.client(a, [READ]))
    log_b = EventLog(await sockets.client(b, [READ]))
    aborter = await sockets.client(b, [READ, WRITE])
    session, key = new_session(), str(uuid.uuid4())
    text = echo_text("aborted from B", 15000)  # ~20 s: the abort lands mid-run even on a loaded machine

    ack = await writer.call("chat.send", {"sessionKey": session, "message": text, "idempotencyKey": key})
    assert ack == {"runId": key, "status": "started"}, ack
    await log_b.first(key, "chat.delta")  # streaming on A, seen on B

    aborted = await aborter.call("chat.abort", {"sessionKey": session, "runId": key})
    assert aborted == {"ok": True, "aborted": True, "runIds": [key]}, aborted

    partials = []
    for log in (log_a, log_b):
        failed = await log.final(key, timeout=10)
        payload = failed["payload"]
        assert failed["event"] == "chat.run.failed", log.summary()
        assert payload["state"] == "aborted", payload
        assert payload["stopReason"] == "rpc", payload
        partial = text_of(payload.get("message"))
        assert 0 < len(partial) < len(text) and text.startswith(partial), len(partial)
        partials.append(partial)
        await log.flush(admin_a)  # A owned the run: anything it emitted after the failure is here now
        after = log.frames[log.frames.index(failed) + 1:]
        assert not log.of_run(key, after), f"events after the abort: {log.of_run(key, after)}"
        assert [f["event"] for f in log.of_run(key)].count("chat.run.failed") == 1, log.summary()
    assert partials[0] == partials[1], partials

    history = await aborter.call("chat.history", {"sessionKey": session})
    assert transcript(history) == [("user", text), ("assistant", partials[0])], transcript(history)
    assert history["messages"][1]["stopReason"] == "aborted", history["messages"][1]

    again = await aborter.call("chat.abort", {"sessionKey": session, "runId": key})
    assert again == {"ok": True, "aborted": False, "runIds": []}, again


async def test_same_idempotency_key_on_a_and_b_starts_one_run(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    writer_a = await sockets.client(a, [READ, WRITE])
    writer_b = await sockets.client(b, [READ, WRITE])
    admin_a, admin_b = await sockets.client(a, [ADMIN]), await sockets.client(b, [ADMIN])
    log = EventLog(await sockets.client(b, [READ]))
    session, key = new_session(), str(uuid.uuid4())  # a brand-new session: both sends race to create it
    text = echo_text("sent twice", 300)
    params = {"sessionKey": session, "message": text, "idempotencyKey": key}

    acks = await asyncio.gather(writer_a.call("chat.send", params), writer_b.call("chat.send", params))

    assert all(ack["runId"] == key for ack in acks), acks
    statuses = [ack["status"] for ack in acks]
    assert statuses.count("started") == 1, acks
    assert [s for s in statuses if s != "started"] in (["in_flight"], ["ok"]), acks
    await log.final(key)
    await log.flush(admin_a, admin_b)  # whichever process ran it has delivered all it emitted
    names = [f["event"] for f in log.of_run(key)]
    assert names.count("chat.run.started") == 1, names
    assert names.count("chat.run.completed") == 1 and "chat.run.failed" not in names, names
    assert_streamed(log, key, session, text)

    history = await writer_b.call("chat.history", {"sessionKey": session})
    assert transcript(history) == [("user", text), ("assistant", text)], transcript(history)

    retry = await writer_a.call("chat.send", params)  # finished: the cached answer, no new run
    assert retry == {"runId": key, "status": "ok"}, retry


async def test_messages_sent_to_a_and_b_during_a_run_are_queued(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    writer_a = await sockets.client(a, [READ, WRITE])
    writer_b = await sockets.client(b, [READ, WRITE])
    log = EventLog(await sockets.client(b, [READ]))
    session, first, second = new_session(), str(uuid.uuid4()), str(uuid.uuid4())
    text1, text2 = echo_text("first, on A", 3000), echo_text("second, on B", 300)

    ack1 = await writer_a.call("chat.send", {"sessionKey": session, "message": text1, "idempotencyKey": first})
    assert ack1 == {"runId": first, "status": "started"}, ack1
    await log.first(first, "chat.delta")
    ack2 = await writer_b.call("chat.send", {"sessionKey": session, "message": text2, "idempotencyKey": second})
    assert ack2 == {"runId": second, "status": "started"}, ack2
    assert not log.of_run(second), "the second run started while the first one was running"

    await log.final(first)
    await log.final(second)
    assert_streamed(log, first, session, text1)
    assert_streamed(log, second, session, text2)

    waited = [await writer_b.call("agent.wait", {"runId": run_id, "timeoutMs": 5000}) for run_id in (first, second)]
    assert all(w["status"] == "ok" for w in waited), waited
    assert waited[1]["startedAt"] >= waited[0]["endedAt"], waited  # afterwards, not alongside

    history = await writer_a.call("chat.history", {"sessionKey": session})
    assert transcript(history) == [("user", text1), ("assistant", text1), ("user", text2), ("assistant", text2)], \
        [(role, text[:30]) for role, text in transcript(history)]


async def test_agent_wait_on_b_for_run_on_a(cluster: Cluster, sockets: Sockets) -> None:
    a, b = cluster.gateways
    runner = await sockets.client(a, [READ, WRITE])
    waiter = await sockets.client(b, [READ, WRITE])
    session, key = new_session(), str(uuid.uuid4())
    text = echo_text("agent on A", 1500)

    responses = Responses(runner, "agent", {"message": text, "idempotencyKey": key, "sessionKey": session})
    await responses.send()
    try:
        first = await responses.next(timeout=10)
        assert first["ok"], first
        accepted = first["payload"]
        assert accepted["runId"] == key and accepted["status"] == "accepted", accepted
        assert isinstance(accepted["acceptedAt"], int), accepted

        waited = await waiter.call("agent.wait", {"runId": key, "timeoutMs": 20_000}, timeout=30)

        second = await responses.next(timeout=20)
    finally:
        responses.forget()
    assert second["ok"], second
    final = second["payload"]
    assert final["runId"] == key and final["status"] == "ok", final
    assert final["result"]["payloads"][0]["text"] == text, final["result"]
    assert waited["runId"] == key and waited["status"] == "ok", waited
    assert isinstance(waited["startedAt"], int) and isinstance(waited["endedAt"], int), waited
    assert waited["startedAt"] <= waited["endedAt"], waited
    assert waited["endedAt"] - waited["startedAt"] >= 1000, waited  # it really waited for the ~2 s echo

    history = await waiter.call("chat.history", {"sessionKey": session})
    assert transcript(history) == [("user", text), ("assistant", text)], transcript(history)


@pytest.mark.slow
async def test_run_of_killed_gateway_fails_on_b_and_its_queue_runs(own_cluster: Cluster) -> None:
    """A SIGKILLed process cannot fail its own run: the survivor does once the lease lapses
    (30 s, checked every 10 s), wakes its waiters, and runs the message queued behind it."""
    a, b = own_cluster.gateways
    sockets = Sockets(own_cluster)
    try:
        writer_a = await sockets.client(a, [READ, WRITE])
        client_b = await sockets.client(b, [READ, WRITE])
        log = EventLog(await sockets.client(b, [READ]))
        session, doomed, queued = new_session(), str(uuid.uuid4()), str(uuid.uuid4())
        text1, text2 = echo_text("killed with A", 8000), echo_text("queued on B", 300)

        ack = await writer_a.call("chat.send", {"sessionKey": session, "message": text1, "idempotencyKey": doomed})
        assert ack["status"] == "started", ack
        await log.first(doomed, "chat.delta")
        ack = await client_b.call("chat.send", {"sessionKey": session, "message": text2, "idempotencyKey": queued})
        assert ack == {"runId": queued, "status": "started"}, ack
        waiting = asyncio.create_task(client_b.call("agent.wait", {"runId": doomed, "timeoutMs": 60_000},
                                                    timeout=70))

        assert a.proc is not None
        a.proc.kill()
        a.proc.wait(10)
        killed_at = time.monotonic()

        failed = await log.final(doomed, timeout=50)
        # the lease (30 s, renewed every 10 s) lapses, then B's next check (every 10 s) fails the run
        assert time.monotonic() - killed_at <= 43, "the orphaned run was failed too late"
        assert failed["event"] == "chat.run.failed", log.summary()
        assert failed["payload"]["state"] == "error", failed
        waited = await asyncio.wait_for(waiting, 10)
        assert waited["runId"] == doomed and waited["status"] == "error", waited

        await log.final(queued, timeout=20)
        assert_streamed(log, queued, session, text2)
        history = await client_b.call("chat.history", {"sessionKey": session})
        assert transcript(history) == [("user", text1), ("user", text2), ("assistant", text2)], \
            [(role, text[:30]) for role, text in transcript(history)]

        fresh = str(uuid.uuid4())
        ack = await client_b.call("chat.send", {"sessionKey": session, "message": "after the crash",
                                                "idempotencyKey": fresh})
        assert ack == {"runId": fresh, "status": "started"}, ack
        completed = await log.final(fresh)
        assert completed["event"] == "chat.run.completed", completed
        assert text_of(completed["payload"]["message"]) == "after the crash", completed
    finally:
        await sockets.close()
