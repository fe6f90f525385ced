"""Real model backends (README D9) against a model server started by the test: a gateway whose
openai / vllm / anthropic providers point at it streams the server's reply into chat events and
the transcript; a provider that is not configured, refuses the key or cannot be reached fails the
run with a message that says so (no fake reply); chat.abort closes the HTTP stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gateway.client import GatewayClient
from gateway.runs.backends import BackendError, backend_for
from gateway.runs.backends.base import RunRequest
from tests.fake_model_server import API_KEY, REPLY, FakeModelServer, start_fake_model_server
from tests.support import ADMIN, GatewayServer, free_port, start_gateway

REPLY_TEXT = "".join(REPLY)
FINAL = ("chat.run.completed", "chat.run.failed")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeModelServer]:
    server = start_fake_model_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm_gateway(fake: FakeModelServer) -> Iterator[GatewayServer]:
    """openai and anthropic point at the fake server with the right key, vllm with a wrong one;
    openrouter has no key; llama.cpp points at a port nobody listens on."""
    server = start_gateway({
        "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": API_KEY,
        "VLLM_BASE_URL": fake.base_url, "VLLM_API_KEY": "wrong-key-abcdefghijkl",
        "ANTHROPIC_BASE_URL": fake.root_url, "ANTHROPIC_API_KEY": API_KEY,
        "OPENROUTER_API_KEY": "", "OPENROUTER_BASE_URL": "",
        "LLAMACPP_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
    })
    yield server
    server.stop()


@pytest.fixture
async def gw(llm_gateway: GatewayServer) -> AsyncIterator[GatewayClient]:
    client = await GatewayClient.connect(llm_gateway.url, token=llm_gateway.token, scopes=ADMIN)
    yield client
    await client.close()


def session_key() -> str:
    return f"agent:main:backend-{uuid.uuid4().hex[:10]}"


async def start_agent(client: GatewayClient, key: str, model: str, message: str = "Say hello") -> str:
    accepted = await client.call("agent", {"message": message, "sessionKey": key, "model": model,
                                           "idempotencyKey": uuid.uuid4().hex})
    assert accepted["status"] == "accepted", accepted
    return accepted["runId"]


async def run_events(client: GatewayClient, run_id: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Every event of the run (name, payload) up to and including its final chat event."""
    out: list[dict[str, Any]] = []

    async def collect() -> None:
        while True:
            frame = await client.events.get()
            payload = frame.get("payload") or {}
            if payload.get("runId") != run_id:
                continue
            out.append({"event": frame.get("event"), **payload})
            if frame.get("event") in FINAL:
                return

    await asyncio.wait_for(collect(), timeout)
    return out


async def transcript(client: GatewayClient, key: str) -> list[tuple[str, str]]:
    history = await client.call("chat.history", {"sessionKey": key})
    return [(m["role"], "".join(p.get("text", "") for p in m.get("content") or []))
            for m in history["messages"]]


def assert_streamed(events: list[dict[str, Any]], reply: str) -> None:
    """The assistant stream carries every piece; chat.delta is throttled (one per 40 ms,
    chat-sessions-cron.md §2.6), so its deltas are a consistent prefix and the final has the rest."""
    pieces = [e["data"]["delta"] for e in events if e["event"] == "agent" and e.get("stream") == "assistant"]
    assert "".join(pieces) == reply, pieces
    deltas = [e for e in events if e["event"] == "chat.delta"]
    assert deltas, events
    streamed = "".join(d["delta"] for d in deltas)
    assert streamed == deltas[-1]["message"]["content"][0]["text"] and reply.startswith(streamed), deltas
    final = events[-1]
    assert final["event"] == "chat.run.completed", final
    assert final["message"]["content"][0]["text"] == reply


# --- end to end through a gateway -------------------------------------------------------------

async def test_openai_compatible_run_streams_deltas_into_chat_events_and_transcript(gw, fake):
    key = session_key()
    before = len(fake.completions())
    run_id = await start_agent(gw, key, "openai/test-model")
    events = await run_events(gw, run_id)

    assert_streamed(events, REPLY_TEXT)
    final = events[-1]
    assert final["usage"]["input"] == 11 and final["usage"]["output"] == len(REPLY), final["usage"]
    assert await transcript(gw, key) == [("user", "Say hello"), ("assistant", REPLY_TEXT)]

    request = fake.completions()[before]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == "test-model" and request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"][-1] == {"role": "user", "content": "Say hello"}


async def test_chat_send_on_a_session_with_an_openai_model_streams_the_servers_reply(gw, fake):
    """The path a chat client takes: sessions.patch picks the model, chat.send starts the run, the
    WebSocket client sees the local server's reply stream in and lands in the transcript."""
    key = session_key()
    await gw.call("sessions.patch", {"key": key, "model": "openai/test-model"})
    ack = await gw.call("chat.send", {"sessionKey": key, "message": "Say hello",
                                      "idempotencyKey": uuid.uuid4().hex})
    events = await run_events(gw, ack["runId"])

    assert [e for e in events if e["event"].startswith("chat.")][0]["event"] == "chat.run.started", events
    assert_streamed(events, REPLY_TEXT)
    assert await transcript(gw, key) == [("user", "Say hello"), ("assistant", REPLY_TEXT)]
    assert fake.completions()[-1].body["model"] == "test-model"


async def test_second_turn_sends_the_transcript_as_history(gw, fake):
    key = session_key()
    await run_events(gw, await start_agent(gw, key, "openai/test-model", "first question"))
    before = len(fake.completions())
    events = await run_events(gw, await start_agent(gw, key, "openai/test-model", "second question"))
    assert events[-1]["event"] == "chat.run.completed", events[-1]
    messages = fake.completions()[before].body["messages"]
    assert [(m["role"], m["content"]) for m in messages if m["role"] != "system"] == [
        ("user", "first question"), ("assistant", REPLY_TEXT), ("user", "second question")]


async def test_anthropic_run_streams_through_the_messages_api(gw, fake):
    key = session_key()
    run_id = await start_agent(gw, key, "anthropic/claude-test")
    events = await run_events(gw, run_id)
    assert_streamed(events, REPLY_TEXT)
    assert events[-1]["usage"]["input"] == 9 and events[-1]["usage"]["output"] == len(REPLY)
    sent = [r for r in fake.requests if r.path == "/v1/messages"][-1]
    assert API_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:]), sent.headers
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello"}] and sent.body["max_tokens"] > 0
    assert await transcript(gw, key) == [("user", "Say hello"), ("assistant", REPLY_TEXT)]


async def test_unconfigured_provider_fails_the_run_with_what_to_set(gw):
    key = session_key()
    events = await run_events(gw, await start_agent(gw, key, "openrouter/some-model"))
    final = events[-1]
    assert final["event"] == "chat.run.failed" and final["state"] == "error", final
    assert "openrouter is not configured" in final["errorMessage"], final
    assert "OPENROUTER_API_KEY" in final["errorMessage"], final
    assert not any(e["event"] == "chat.delta" for e in events)
    assert [role for role, _ in await transcript(gw, key)] == ["user"]  # no pretend reply


async def test_rejected_key_fails_the_run_with_an_auth_error(gw):
    events = await run_events(gw, await start_agent(gw, session_key(), "vllm/test-model"))
    final = events[-1]
    assert final["event"] == "chat.run.failed" and final["state"] == "error", final
    message = final["errorMessage"]
    assert "vllm rejected the request (401" in message and "Incorrect API key" in message, message
    assert "wrong-key-abcdefghijkl" not in message


async def test_stored_provider_key_is_used_before_the_environment(gw):
    await gw.call("anima.providers.set", {"providers": [
        {"id": "vllm", "name": "vLLM (test)", "apiKey": API_KEY, "enabled": True, "priority": 1}]})
    try:
        events = await run_events(gw, await start_agent(gw, session_key(), "vllm/test-model"))
        assert events[-1]["event"] == "chat.run.completed", events[-1]
    finally:
        await gw.call("anima.providers.set", {"providers": []})


async def test_unreachable_server_fails_the_run_with_its_address(gw):
    events = await run_events(gw, await start_agent(gw, session_key(), "llamacpp/tiny"))
    final = events[-1]
    assert final["event"] == "chat.run.failed" and final["state"] == "error", final
    assert final["errorMessage"].startswith("cannot reach llamacpp at http://127.0.0.1:"), final
    assert "LLAMACPP_BASE_URL" in final["errorMessage"]


async def test_unknown_model_is_reported_by_name(gw):
    events = await run_events(gw, await start_agent(gw, session_key(), "openai/no-such-model"))
    assert events[-1]["event"] == "chat.run.failed", events[-1]
    assert "'no-such-model'" in events[-1]["errorMessage"] and "404" in events[-1]["errorMessage"]


async def test_abort_stops_the_stream_and_keeps_the_partial_reply(gw, fake):
    key = session_key()
    fake.dropped.clear()
    run_id = await start_agent(gw, key, "openai/slow-model")

    async def first_delta() -> None:
        while True:
            frame = await gw.events.get()
            if frame.get("event") == "chat.delta" and frame["payload"].get("runId") == run_id:
                return

    await asyncio.wait_for(first_delta(), 20)
    res = await gw.call("chat.abort", {"sessionKey": key})  # by session: a runId names chat.send runs only
    assert res.get("aborted") is True and res.get("runIds") == [run_id], res
    events = await run_events(gw, run_id)
    final = events[-1]
    assert final["event"] == "chat.run.failed" and final["state"] == "aborted", final
    partial = final["message"]["content"][0]["text"]
    assert partial.startswith("tick ") and len(partial) < 400 * len("tick "), partial
    assert await asyncio.to_thread(fake.dropped.wait, 10), "the model server's stream was not closed"
    assert [role for role, _ in await transcript(gw, key)] == ["user", "assistant"]


async def test_models_list_has_echo_builtins_and_the_servers_models_sorted(gw):
    models = (await gw.call("models.list", {}))["models"]
    pairs = {(m["provider"], m["id"]) for m in models}
    assert {("echo", "echo"), ("openai", "test-model"), ("openai", "slow-model"), ("openai", "gpt-4o-mini"),
            ("anthropic", "claude-sonnet-4-5")} <= pairs, pairs
    assert not any(p == "openrouter" for p, _ in pairs)  # not configured: nothing to offer
    assert all(isinstance(m["name"], str) and m["name"] for m in models)
    order = [(m["provider"], m["name"].lower()) for m in models]
    assert order == sorted(order)


# --- backends on their own -----------------------------------------------------------------------

def request(provider: str, model: str) -> RunRequest:
    return RunRequest(run_id="r1", session_key="agent:main:main", session_id="", agent_id="main",
                      provider=provider, model=model, prompt_text="hi", timeout_ms=10_000)


async def no_emit(stream: str, data: dict[str, Any]) -> None:
    pass


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("provider, variable", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                                ("openrouter", "OPENROUTER_API_KEY")])
async def test_backend_without_credentials_says_what_to_set(provider, variable, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                 "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BackendError) as caught:
        await backend_for(provider).run(request(provider, "m"), no_emit)
    assert caught.value.kind == "unavailable"
    assert str(caught.value).startswith(f"{provider} is not configured: set {variable}")
    assert f"models.providers.{provider}.apiKey" in str(caught.value)


@pytest.mark.django_db(transaction=True)
async def test_local_server_needs_no_key_and_defaults_to_loopback(monkeypatch):
    from asgiref.sync import sync_to_async

    from gateway.providers.credentials import endpoint

    monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    ep = await sync_to_async(endpoint)("ollama")
    assert ep.base_url == "http://127.0.0.1:11434/v1" and ep.api_key is None


@pytest.mark.django_db(transaction=True)
async def test_backend_streams_from_the_fake_server_directly(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    deltas: list[str] = []

    async def emit(stream: str, data: dict[str, Any]) -> None:
        assert stream == "assistant"
        deltas.append(data["delta"])

    result = await backend_for("openai").run(request("openai", "test-model"), emit)
    assert deltas == REPLY and result.text == REPLY_TEXT and result.stop_reason == "stop"
    assert (result.usage.input, result.usage.output, result.provider, result.model) == (11, 4, "openai", "test-model")


@pytest.mark.django_db(transaction=True)
async def test_cancelling_the_backend_closes_the_stream(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake.dropped.clear()
    got_one = asyncio.Event()

    async def emit(stream: str, data: dict[str, Any]) -> None:
        got_one.set()

    task = asyncio.ensure_future(backend_for("openai").run(request("openai", "slow-model"), emit))
    await asyncio.wait_for(got_one.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(fake.dropped.wait, 10)
