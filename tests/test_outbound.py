"""send / poll through channel adapters (operations.md §5, §8): the log channel records every
delivery in the outbound table, the webhook channel POSTs to a real local HTTP server with retries,
one idempotencyKey delivers once (also when two calls race), and every refusal has its code."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from asgiref.sync import sync_to_async

from gateway.config import config_value
from gateway.config import services as config_services
from gateway.models import ChannelAccount, OutboundMessage
from gateway.outbound import queries, services
from gateway.protocol.errors import GatewayError
from tests.support import READ, WRITE, call_error, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def message(channel: str | None = "log", text: str = "hello", **kw: Any) -> services.MessageRequest:
    fields: dict[str, Any] = {"to": "someone", "text": text, "media_urls": [], "channel": channel, "account_id": None,
                              "session_key": None, "idempotency_key": key()}
    fields.update(kw)
    return services.MessageRequest(**fields)


def poll(channel: str | None = "log", **kw: Any) -> services.PollRequest:
    fields: dict[str, Any] = {"to": "room", "question": "Lunch?", "options": ["Soup", "Salad"], "max_selections": None,
                              "duration_seconds": None, "duration_hours": None, "silent": None, "is_anonymous": None,
                              "thread_id": None, "channel": channel, "account_id": None, "idempotency_key": key()}
    fields.update(kw)
    return services.PollRequest(**fields)


async def refused(coro: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await coro
    return caught.value


def set_config(path: str, value: Any) -> None:
    snapshot = config_services.load()
    config_services.set_key(path, value, base_hash=snapshot.hash if snapshot.exists else None, actor="test")
    assert config_value(path) == value


@pytest.fixture
def config_key() -> Iterator[Any]:
    """`config_key(path, value)` writes a config key; every key written is removed afterwards."""
    written: list[str] = []

    def write(path: str, value: Any) -> None:
        written.append(path)
        set_config(path, value)

    yield write
    for path in reversed(written):
        set_config(path, None)


# --- a small local webhook receiver ---------------------------------------------------------------------------

class Receiver:
    """An HTTP server on a free loopback port answering each POST with the next status in `statuses`
    (the last one repeats) and keeping what it received."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append({"body": body, "headers": dict(self.headers)})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(config_key: Any) -> Iterator[Any]:
    """`webhook(statuses)` starts a receiver and points channels.webhook at it (fast retries)."""
    receivers: list[Receiver] = []

    def start(statuses: list[int] | None = None, retries: int = 2) -> Receiver:
        receiver = Receiver(statuses or [200])
        receivers.append(receiver)
        config_key("channels.webhook", {"url": receiver.url, "retries": retries, "retryDelayMs": 10,
                                        "timeoutMs": 2000, "headers": {"X-Test": "yes"}})
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()


# --- log channel and idempotency ---------------------------------------------------------------------------------

async def test_send_via_log_records_the_message_and_a_repeat_is_not_delivered_again() -> None:
    req = message(text="  hi there  ", media_urls=["https://example.org/a.png", " "])
    first = await services.send(req)
    assert first["runId"] == req.idempotency_key and first["channel"] == "log" and first["messageId"]
    assert await services.send(req) == first
    rows = await sync_to_async(list)(OutboundMessage.objects.filter(idempotency_key=req.idempotency_key))
    assert len(rows) == 1
    row = rows[0]
    assert (row.kind, row.channel, row.to, row.text, row.media_urls, row.status, row.message_id) == (
        "message", "log", "someone", "hi there", ["https://example.org/a.png"], "delivered", first["messageId"])


async def test_a_new_idempotency_key_delivers_again() -> None:
    a = await services.send(message())
    b = await services.send(message())
    assert a["messageId"] != b["messageId"]


async def test_two_racing_sends_with_one_key_deliver_once() -> None:
    req = message()
    results = await asyncio.gather(*(services.send(req) for _ in range(5)))
    assert all(r == results[0] for r in results)
    assert await sync_to_async(OutboundMessage.objects.filter(idempotency_key=req.idempotency_key).count)() == 1


async def test_send_with_only_media_is_accepted() -> None:
    res = await services.send(message(text=" ", media_urls=["https://example.org/cat.gif"]))
    assert res["channel"] == "log"


@pytest.mark.parametrize("text, media", [("", []), ("   ", []), ("", ["  "])])
async def test_send_without_text_or_media_is_400(text: str, media: list[str]) -> None:
    err = await refused(services.send(message(text=text, media_urls=media)))
    assert (err.code, err.message) == (400, "invalid send params: text or media is required")


async def test_send_to_an_unknown_channel_is_400_naming_it() -> None:
    err = await refused(services.send(message(channel=" NoSuch ")))
    assert (err.code, err.message) == (400, "unsupported channel: NoSuch")


@pytest.mark.parametrize("channel", ["whatsapp", "Telegram", "bynd", None])
async def test_a_known_channel_without_adapter_is_503(channel: str | None) -> None:
    """No channel given means ANIMA's default, noxsoft (alias bynd), which has no adapter here."""
    err = await refused(services.send(message(channel=channel)))
    assert err.code == 503 and err.message.endswith("is not configured")
    assert await sync_to_async(OutboundMessage.objects.count)() == 0


async def test_a_validation_error_is_not_cached() -> None:
    req = message(text="")
    await refused(services.send(req))
    ok = await services.send(message(idempotency_key=req.idempotency_key))
    assert ok["runId"] == req.idempotency_key


async def test_the_log_channel_can_be_disabled_in_config(config_key: Any) -> None:
    await sync_to_async(config_key)("channels.log", {"enabled": False})
    err = await refused(services.send(message()))
    assert err.code == 503 and "disabled" in err.message


# --- polls ----------------------------------------------------------------------------------------------------

async def test_poll_via_log_is_recorded_once_per_key() -> None:
    req = poll(options=[" Soup ", "", "Salad"], max_selections=2)
    first = await services.poll(req)
    assert first["runId"] == req.idempotency_key and first["messageId"]
    assert await services.poll(req) == first
    row = await sync_to_async(OutboundMessage.objects.get)(idempotency_key=req.idempotency_key)
    assert row.kind == "poll" and row.poll == {"question": "Lunch?", "options": ["Soup", "Salad"], "maxSelections": 2}


@pytest.mark.parametrize("changes, message_text", [
    ({"options": ["Soup", "  "]}, "poll requires at least 2 options"),
    ({"max_selections": 3}, "maxSelections cannot exceed the number of options (2)"),
    ({"duration_seconds": 60}, "durationSeconds is only supported for Telegram polls"),
    ({"is_anonymous": True}, "isAnonymous is only supported for Telegram polls"),
    ({"question": "  "}, "invalid poll params: question is required"),
    ({"channel": "nosuch"}, "unsupported channel: nosuch"),
    ({"channel": "whatsapp", "duration_seconds": 60}, "durationSeconds is only supported for Telegram polls"),
])
async def test_poll_refusals_are_400(changes: dict[str, Any], message_text: str) -> None:
    err = await refused(services.poll(poll(**changes)))
    assert (err.code, err.message) == (400, message_text)


# --- webhook channel -------------------------------------------------------------------------------------------

async def test_webhook_without_url_is_503_and_a_retry_after_configuring_it_delivers(webhook: Any) -> None:
    req = message(channel="webhook")
    err = await refused(services.send(req))
    assert err.code == 503 and "channels.webhook.url" in err.message
    receiver = await sync_to_async(webhook)([200])
    assert (await services.send(req))["runId"] == req.idempotency_key, "not configured is not a cached failure"
    assert len(receiver.received) == 1


async def test_webhook_posts_the_message_as_json(webhook: Any) -> None:
    receiver = await sync_to_async(webhook)([200])
    req = message(channel="webhook", text="ping", media_urls=["https://example.org/x.jpg"])
    res = await services.send(req)
    assert res["channel"] == "webhook" and res["runId"] == req.idempotency_key
    [hit] = receiver.received
    assert hit["body"] == {"type": "message", "channel": "webhook", "accountId": "default", "to": "someone",
                           "messageId": res["messageId"], "idempotencyKey": req.idempotency_key, "text": "ping",
                           "mediaUrls": ["https://example.org/x.jpg"]}
    assert hit["headers"]["Idempotency-Key"] == req.idempotency_key and hit["headers"]["X-Test"] == "yes"


async def test_webhook_retries_server_errors_then_delivers(webhook: Any) -> None:
    receiver = await sync_to_async(webhook)([500, 503, 200])
    req = message(channel="webhook")
    await services.send(req)
    assert len(receiver.received) == 3
    row = await sync_to_async(OutboundMessage.objects.get)(idempotency_key=req.idempotency_key)
    assert row.status == "delivered" and row.attempts == 3


async def test_webhook_client_error_fails_at_once_and_the_failure_is_replayed(webhook: Any) -> None:
    receiver = await sync_to_async(webhook)([400])
    req = message(channel="webhook")
    err = await refused(services.send(req))
    assert err.code == 503 and err.message == "webhook delivery failed: HTTP 400"
    again = await refused(services.send(req))
    assert again.message == err.message
    assert len(receiver.received) == 1, "a cached failure is not delivered again"
    row = await sync_to_async(OutboundMessage.objects.get)(idempotency_key=req.idempotency_key)
    assert row.status == "failed" and row.error == err.message
    account = await sync_to_async(ChannelAccount.objects.get)(channel="webhook", account_id="default")
    assert account.last_error == err.message


async def test_webhook_that_keeps_failing_is_503_after_the_retries(webhook: Any) -> None:
    receiver = await sync_to_async(webhook)([502], retries=1)
    err = await refused(services.send(message(channel="webhook")))
    assert err.code == 503 and err.message == "webhook delivery failed after 2 attempts: HTTP 502"
    assert len(receiver.received) == 2


async def test_unreachable_webhook_is_503(config_key: Any) -> None:
    await sync_to_async(config_key)("channels.webhook", {"url": f"http://127.0.0.1:{free_port()}/", "retries": 0})
    err = await refused(services.send(message(channel="webhook")))
    assert err.code == 503 and "unreachable" in err.message


async def test_webhook_poll_is_posted(webhook: Any) -> None:
    receiver = await sync_to_async(webhook)([204])
    await services.poll(poll(channel="webhook"))
    assert receiver.received[0]["body"]["poll"] == {"question": "Lunch?", "options": ["Soup", "Salad"],
                                                    "maxSelections": 1}


# --- channels.status / logout --------------------------------------------------------------------------------

async def test_channels_status_lists_both_adapters_and_probes_the_webhook(webhook: Any) -> None:
    await sync_to_async(webhook)([200])
    await services.send(message())
    status = await queries.status(probe=True, timeout_ms=2000)
    assert status["channelOrder"] == ["log", "webhook"]
    assert status["channelDefaultAccountId"] == {"log": "default", "webhook": "default"}
    [log_account] = status["channelAccounts"]["log"]
    assert log_account["configured"] and log_account["lastOutboundAt"]
    [hook] = status["channelAccounts"]["webhook"]
    assert hook["configured"] is True and hook["probe"] == {"ok": True, "status": 200}


async def test_channels_status_shows_an_unconfigured_webhook() -> None:
    status = await queries.status(probe=False, timeout_ms=1000)
    assert status["channels"]["webhook"]["configured"] is False
    assert "channels.webhook.url" in status["channelAccounts"]["webhook"][0]["lastError"]


async def test_logout_clears_the_account_state() -> None:
    await services.send(message())
    res = await sync_to_async(services.logout)("log", None)
    assert res == {"channel": "log", "accountId": "default", "cleared": True, "loggedOut": True}
    [snap] = (await queries.status(probe=False, timeout_ms=1000))["channelAccounts"]["log"]
    assert snap["lastOutboundAt"] is None and snap["linked"] is False
    await services.send(message())  # delivering links it again
    [snap] = (await queries.status(probe=False, timeout_ms=1000))["channelAccounts"]["log"]
    assert snap["linked"] is True


async def test_a_telegram_poll_is_503_like_any_channel_without_adapter() -> None:
    err = await refused(services.poll(poll(channel="telegram", duration_seconds=60, is_anonymous=True)))
    assert (err.code, err.message) == (503, "channel telegram is not configured")


@pytest.mark.parametrize("channel", ["nosuch", "whatsapp"])
async def test_logout_of_a_channel_without_adapter_is_400(channel: str) -> None:
    with pytest.raises(GatewayError) as caught:
        await sync_to_async(services.logout)(channel, None)
    assert (caught.value.code, caught.value.message) == (400, "invalid channels.logout channel")


# --- over the socket: params, scopes, web login -------------------------------------------------------------------

async def test_send_params_are_checked_with_json_paths(client: Any) -> None:
    writer = await client(WRITE)
    err = await call_error(writer, "send", {"to": "x", "message": "hi"})
    assert err["code"] == 400 and "/idempotencyKey" in err["message"]
    err = await call_error(writer, "send", {"to": "x", "message": 5, "idempotencyKey": key()})
    assert err["code"] == 400 and "/message" in err["message"]
    err = await call_error(writer, "poll", {"to": "x", "question": "q", "options": ["only"], "idempotencyKey": key()})
    assert err["code"] == 400 and "/options" in err["message"]
    err = await call_error(writer, "send", {"to": "x", "message": "m" * 100_001, "idempotencyKey": key()})
    assert err["code"] == 400 and "/message" in err["message"], "a 100,000-character cap, not a 5 MB log line"
    err = await call_error(writer, "send", {"to": "x", "mediaUrls": ["https://e.com/a"] * 33, "idempotencyKey": key()})
    assert err["code"] == 400 and "/mediaUrls" in err["message"]


async def test_send_over_the_socket_replays_the_same_answer(client: Any) -> None:
    writer = await client(WRITE)
    params = {"channel": "log", "to": "me", "message": "hi", "idempotencyKey": key()}
    first = await writer.call("send", params)
    assert await writer.call("send", params) == first and first["runId"] == params["idempotencyKey"]


async def test_readers_may_not_send_and_writers_may_not_log_out(client: Any) -> None:
    reader, writer = await client(READ), await client(WRITE)
    err = await call_error(reader, "send", {"to": "x", "message": "hi", "idempotencyKey": key()})
    assert err["code"] == 403 and err["reason"] == "MISSING_SCOPE"
    err = await call_error(writer, "channels.logout", {"channel": "log"})
    assert err["code"] == 403
    assert isinstance((await reader.call("channels.status", {}))["channelOrder"], list)


@pytest.mark.parametrize("method", ["web.login.start", "web.login.wait"])
async def test_web_login_is_503_without_a_provider(client: Any, method: str) -> None:
    admin = await client(["operator.admin"])
    err = await call_error(admin, method, {"timeoutMs": 1000})
    assert err["code"] == 503 and err["message"].startswith("web login provider is not available")
    err = await call_error(admin, method, {"timeoutMs": "soon"})
    assert err["code"] == 400 and "/timeoutMs" in err["message"]


# --- session mirror ------------------------------------------------------------------------------------------------

async def test_a_delivered_message_is_mirrored_into_its_session() -> None:
    from gateway.chat.transcripts import find_session, history_messages

    await services.send(message(text="see you", media_urls=["https://example.org/p.png"],
                                session_key="Agent:Main:Chat-1"))
    session = await sync_to_async(find_session)("agent:main:chat-1")
    [entry] = await sync_to_async(history_messages)(session, 10)
    assert entry["role"] == "assistant" and entry["mirror"]["channel"] == "log"
    assert entry["content"][0]["text"] == "see you\nMEDIA: https://example.org/p.png"
    row = await sync_to_async(OutboundMessage.objects.get)(message_id=entry["mirror"]["messageId"])
    assert row.session_key == "agent:main:chat-1"


async def test_a_failed_delivery_is_not_mirrored(config_key: Any) -> None:
    from gateway.models import Session

    await sync_to_async(config_key)("channels.webhook", {"url": f"http://127.0.0.1:{free_port()}/", "retries": 0})
    await refused(services.send(message(channel="webhook", session_key="agent:main:nope")))
    assert not await sync_to_async(Session.objects.filter(key="agent:main:nope").exists)()
