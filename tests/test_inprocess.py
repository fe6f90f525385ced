"""Fast in-process tests of the consumer with Channels' WebsocketCommunicator (no daphne: close
codes are whatever the ASGI message says, which is what these tests check)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from gateway.protocol.errors import INTERNAL_MESSAGE
from gateway.protocol.frames import dumps
from tests.support import ADMIN, READ, connect_params, temporary_method

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "inproc-token"  # set by the inprocess_app fixture


async def open_communicator(application: Any, path: str = "/", headers: list | None = None,
                            peer: str = "127.0.0.1") -> tuple[WebsocketCommunicator, dict]:
    comm = WebsocketCommunicator(application, path, headers=headers or [(b"host", b"127.0.0.1:18789")])
    comm.scope["client"] = (peer, 50000)  # the communicator sets no peer address
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm, await comm.receive_json_from(timeout=5)


async def connected(application: Any, scopes: list[str]) -> WebsocketCommunicator:
    comm, _ = await open_communicator(application)
    await comm.send_json_to({"type": "req", "id": "c", "method": "connect",
                             "params": connect_params(token=TOKEN, scopes=scopes)})
    response = await comm.receive_json_from(timeout=5)
    assert response["ok"], response
    return comm


async def response_to(comm: WebsocketCommunicator, rid: str, timeout: float = 5) -> dict:
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        if frame.get("type") == "res" and frame.get("id") == rid:
            return frame


async def close_frame(comm: WebsocketCommunicator, timeout: float = 5) -> dict:
    """The websocket.close the application sends, skipping any frames queued before it."""
    while True:
        message = await comm.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return message


async def finish(comm: WebsocketCommunicator) -> None:
    """The server closed the socket: deliver the disconnect the way a server would, and let the
    application end."""
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(timeout=5)


async def request(comm: WebsocketCommunicator, method: str, params: Any = None, rid: str = "r") -> dict:
    await comm.send_json_to({"type": "req", "id": rid, "method": method, "params": params or {}})
    return await response_to(comm, rid)


async def test_handler_exception_becomes_500_and_the_socket_survives(inprocess_app) -> None:
    application, _ = inprocess_app

    async def explode(ctx: Any, params: Any) -> Any:
        raise ZeroDivisionError("internal detail that must not leak")

    with temporary_method("test.explode", explode):
        comm = await connected(application, READ)
        frame = await request(comm, "test.explode", rid="boom")
        assert frame["ok"] is False
        assert frame["error"] == {"code": 500, "message": INTERNAL_MESSAGE, "reason": "INTERNAL"}
        assert (await request(comm, "health", rid="after"))["ok"] is True
        await comm.disconnect()


async def test_payload_that_is_not_json_becomes_500(inprocess_app) -> None:
    application, _ = inprocess_app

    async def unserialisable(ctx: Any, params: Any) -> Any:
        return {"when": object()}

    with temporary_method("test.unserialisable", unserialisable):
        comm = await connected(application, READ)
        frame = await request(comm, "test.unserialisable")
        assert (frame["error"]["code"], frame["error"]["message"]) == (500, INTERNAL_MESSAGE)
        assert (await request(comm, "health", rid="after"))["ok"] is True
        await comm.disconnect()


async def test_two_phase_handler_answers_twice_under_one_id(inprocess_app) -> None:
    application, _ = inprocess_app

    async def two_phase(ctx: Any, params: Any) -> Any:
        ctx.respond_early({"status": "accepted"})
        await asyncio.sleep(0)
        return {"status": "ok"}

    with temporary_method("test.two-phase", two_phase):
        comm = await connected(application, READ)
        await comm.send_json_to({"type": "req", "id": "tp", "method": "test.two-phase"})
        first = await response_to(comm, "tp")
        second = await response_to(comm, "tp")
        assert (first["payload"], second["payload"]) == ({"status": "accepted"}, {"status": "ok"})
        await comm.disconnect()


async def test_challenge_then_hello_in_process(inprocess_app) -> None:
    application, _ = inprocess_app
    comm, challenge = await open_communicator(application)
    assert challenge["event"] == "connect.challenge"
    await comm.send_json_to({"type": "req", "id": "c", "method": "connect",
                             "params": connect_params(token=TOKEN, scopes=ADMIN)})
    hello = (await comm.receive_json_from(timeout=5))["payload"]
    assert hello["type"] == "hello-ok"
    assert hello["snapshot"]["authMode"] == "token"
    await comm.disconnect()


async def test_refused_handshake_sends_the_error_then_the_close_code(inprocess_app) -> None:
    application, _ = inprocess_app
    comm, _ = await open_communicator(application)
    await comm.send_json_to({"type": "req", "id": "c", "method": "connect",
                             "params": connect_params(token="wrong", scopes=READ)})
    frame = await comm.receive_json_from(timeout=5)
    assert frame["error"]["code"] == 401
    close = await close_frame(comm)
    assert close["code"] == 1008
    await finish(comm)


async def test_handshake_timeout_closes_1008(inprocess_app, settings) -> None:
    application, runtime = inprocess_app
    from dataclasses import replace

    runtime.policy = replace(runtime.policy, handshake_timeout_ms=50)
    comm, _ = await open_communicator(application)
    close = await close_frame(comm)
    assert (close["code"], close["reason"]) == (1008, "handshake timeout")
    await finish(comm)


async def test_remote_rate_limit_locks_even_the_right_token(inprocess_app) -> None:
    """Ten failures from one remote address, then the right token is refused with 429."""
    application, _ = inprocess_app
    headers = [(b"host", b"gateway.example.com")]
    for _ in range(10):
        comm, _ = await open_communicator(application, headers=headers, peer="198.51.100.23")
        await comm.send_json_to({"type": "req", "id": "c", "method": "connect",
                                 "params": connect_params(token="wrong", scopes=READ)})
        assert (await comm.receive_json_from(timeout=5))["error"]["code"] == 401
        await finish(comm)
    comm, _ = await open_communicator(application, headers=headers, peer="198.51.100.23")
    await comm.send_json_to({"type": "req", "id": "c", "method": "connect",
                             "params": connect_params(token=TOKEN, scopes=READ)})
    error = (await comm.receive_json_from(timeout=5))["error"]
    assert (error["code"], error["reason"]) == (429, "RATE_LIMITED")
    assert error["retryAfterMs"] > 0
    await finish(comm)
    other = await open_communicator(application, headers=headers, peer="198.51.100.24")
    await other[0].send_json_to({"type": "req", "id": "c", "method": "connect",
                                 "params": connect_params(token=TOKEN, scopes=READ)})
    assert (await other[0].receive_json_from(timeout=5))["ok"] is True, "another address is not locked"
    await other[0].disconnect()


async def test_oversize_frame_in_process_closes_1009(inprocess_app) -> None:
    application, runtime = inprocess_app
    comm = await connected(application, READ)
    await comm.send_to(text_data="x" * (runtime.policy.max_payload + 1))
    close = await close_frame(comm)
    assert close["code"] == 1009
    await finish(comm)


async def test_healthz_through_the_asgi_router(inprocess_app) -> None:
    application, _ = inprocess_app
    comm = HttpCommunicator(application, "GET", "/healthz", headers=[(b"host", b"127.0.0.1")])
    response = await comm.get_response(timeout=5)
    assert response["status"] == 200
    assert response["body"] == dumps({"ok": True}).encode().replace(b":", b": ")
