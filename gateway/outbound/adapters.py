"""Channel adapters: the one interface `send`, `poll`, `channels.status` and `channels.logout` use,
and the two built-in channels. `log` delivers into the outbound message table and the gateway log;
`webhook` POSTs JSON to `channels.webhook.url` with retries. Other known channel ids have no
adapter here and answer 503 (operations.md §1, README D12)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.config import config_value
from gateway.protocol.errors import unavailable

log = logging.getLogger("gateway.outbound")

DEFAULT_ACCOUNT = "default"
POLL_MAX_OPTIONS = 12


@dataclass(frozen=True)
class Outgoing:
    """One delivery: a message (text and/or media) or a poll."""

    kind: str                      # "message" | "poll"
    to: str
    account_id: str
    message_id: str
    idempotency_key: str
    text: str = ""
    media_urls: list[str] = field(default_factory=list)
    poll: dict[str, Any] | None = None


@dataclass
class Delivered:
    """What an adapter reports: extra result fields (chatId, …) and how many attempts it took."""

    fields: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


class DeliveryFailed(Exception):
    """The channel could not deliver (answered 503, and recorded as a failed message)."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


class ChannelAdapter:
    id: str = ""
    label: str = ""
    detail_label: str = ""
    supports_polls = True
    poll_max_options = POLL_MAX_OPTIONS

    def settings(self, account_id: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        """`channels.<id>` merged with `channels.<id>.accounts.<accountId>`."""
        base = config_value(f"channels.{self.id}", {}) or {}
        base = base if isinstance(base, dict) else {}
        accounts = base.get("accounts") if isinstance(base.get("accounts"), dict) else {}
        own = accounts.get(account_id) if isinstance(accounts.get(account_id), dict) else {}
        return {**{k: v for k, v in base.items() if k != "accounts"}, **own}

    def account_ids(self) -> list[str]:
        accounts = config_value(f"channels.{self.id}.accounts", {}) or {}
        extra = sorted(k for k in accounts if k != DEFAULT_ACCOUNT) if isinstance(accounts, dict) else []
        return [DEFAULT_ACCOUNT, *extra]

    def enabled(self, account_id: str) -> bool:
        return self.settings(account_id).get("enabled") is not False

    def configured(self, account_id: str) -> bool:
        return True

    def why_unusable(self, account_id: str) -> str | None:
        if not self.enabled(account_id):
            return f"channel {self.id} is disabled (channels.{self.id}.enabled is false)"
        return None

    async def deliver(self, out: Outgoing) -> Delivered:
        raise NotImplementedError

    async def probe(self, account_id: str, timeout_ms: int) -> dict[str, Any]:
        return {"ok": True}


class LogChannel(ChannelAdapter):
    """Delivers to the gateway log; the outbound message row the service writes is the record."""

    id, label, detail_label = "log", "Log", "Gateway log"

    async def deliver(self, out: Outgoing) -> Delivered:
        if out.kind == "poll":
            poll = out.poll or {}
            log.info("outbound poll via log to %s (%s): %s %s", out.to, out.message_id, poll.get("question"),
                     poll.get("options"))
        else:
            log.info("outbound message via log to %s (%s): %s%s", out.to, out.message_id, out.text,
                     f" media={out.media_urls}" if out.media_urls else "")
        return Delivered({"chatId": out.to})


RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_RETRIES, MAX_TIMEOUT_MS, MAX_RETRY_DELAY_MS = 5, 30_000, 5_000  # worst case: 6 × 30 s + 75 s of delays


class WebhookChannel(ChannelAdapter):
    """POSTs each message as JSON to `channels.webhook.url` (optional `headers`, `timeoutMs`,
    `retries`, `retryDelayMs`). Unreachable, 408/429/5xx: retried; any other non-2xx: failed at once."""

    id, label, detail_label = "webhook", "Webhook", "HTTP webhook"

    def configured(self, account_id: str) -> bool:
        url = self.settings(account_id).get("url")
        return isinstance(url, str) and url.startswith(("http://", "https://"))

    def why_unusable(self, account_id: str) -> str | None:
        if not self.configured(account_id):
            return "channel webhook is not configured (set channels.webhook.url)"
        return super().why_unusable(account_id)

    def body(self, out: Outgoing) -> dict[str, Any]:
        body: dict[str, Any] = {"type": out.kind, "channel": self.id, "accountId": out.account_id, "to": out.to,
                                "messageId": out.message_id, "idempotencyKey": out.idempotency_key}
        if out.kind == "poll":
            body["poll"] = out.poll
        else:
            body.update({"text": out.text, "mediaUrls": out.media_urls})
        return body

    async def deliver(self, out: Outgoing) -> Delivered:
        cfg = self.settings(out.account_id)
        # bounded so that a whole delivery ends well inside the idempotency claim (services.CLAIM_TTL_S)
        timeout = min(_number(cfg.get("timeoutMs"), 10_000), MAX_TIMEOUT_MS) / 1000
        retries = int(min(_number(cfg.get("retries"), 2), MAX_RETRIES))
        delay = min(_number(cfg.get("retryDelayMs"), 500), MAX_RETRY_DELAY_MS) / 1000
        headers = {str(k): str(v) for k, v in (cfg.get("headers") or {}).items()} if isinstance(
            cfg.get("headers"), dict) else {}
        headers["Idempotency-Key"] = out.idempotency_key
        last = "no attempt"
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            for attempt in range(1, retries + 2):
                try:
                    res = await client.post(cfg["url"], json=self.body(out), headers=headers)
                except httpx.HTTPError as exc:
                    last = f"unreachable: {exc or type(exc).__name__}"
                else:
                    if 200 <= res.status_code < 300:
                        return Delivered({}, attempt)
                    last = f"HTTP {res.status_code}"
                    if res.status_code not in RETRYABLE_STATUS:
                        raise DeliveryFailed(f"webhook delivery failed: {last}", attempt)
                if attempt <= retries:
                    await asyncio.sleep(delay * attempt)
        raise DeliveryFailed(f"webhook delivery failed after {retries + 1} attempts: {last}", retries + 1)

    async def probe(self, account_id: str, timeout_ms: int) -> dict[str, Any]:
        """Reachability only (a HEAD request; any HTTP answer counts as reachable)."""
        url = self.settings(account_id).get("url")
        try:
            async with httpx.AsyncClient(timeout=timeout_ms / 1000, trust_env=False) as client:
                res = await client.head(str(url))
            return {"ok": True, "status": res.status_code}
        except httpx.HTTPError as exc:
            return {"ok": False, "error": f"unreachable: {exc or type(exc).__name__}"}


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else default


ADAPTERS: dict[str, ChannelAdapter] = {a.id: a for a in (LogChannel(), WebhookChannel())}

# Channel ids clients know (ANIMA's and its family's) that have no adapter in this gateway.
KNOWN_ABSENT = ("noxsoft", "whatsapp", "telegram", "discord", "slack", "signal", "imessage", "googlechat",
                "mattermost", "bluebubbles")
ALIASES = {"bynd": "noxsoft"}
DEFAULT_CHANNEL = "noxsoft"  # ANIMA's default (operations.md §5)


def normalize(channel: str | None) -> str:
    value = (channel or "").strip().lower()
    return ALIASES.get(value, value) or DEFAULT_CHANNEL


def adapter_for(channel: str) -> ChannelAdapter:
    """The adapter of a normalised channel id: unknown → 400, known without adapter → 503."""
    from gateway.protocol.errors import invalid

    adapter = ADAPTERS.get(channel)
    if adapter is not None:
        return adapter
    if channel in KNOWN_ABSENT:
        raise unavailable(f"channel {channel} is not configured", details={"channel": channel})
    raise invalid(f"unsupported channel: {channel}", details={"channel": channel})
