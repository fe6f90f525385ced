"""Token and cost usage read from the transcripts (chat-sessions-cron.md §1.11, operations.md §6):
sessions.usage, sessions.usage.timeseries, sessions.usage.logs and usage.cost. Every number
comes from the assistant messages' `usage`; a message without `cost` is priced from
models.providers.<p>.models[].cost (USD per million tokens) or counted in missingCostEntries."""

from __future__ import annotations

import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

from django.core.cache import cache

from gateway.models import Session, TranscriptEntry
from gateway.protocol.errors import invalid, not_found
from gateway.protocol.events import now_ms

from . import messages as msg
from .catalog import configured_model
from .queries import override_ref, session_for_transcript

DAY_MS = 86_400_000
MAX_LATENCY_MS = 12 * 3_600_000
MAX_POINTS = 200
LOG_CHARS = 2000
COST_CACHE_S = 30
ERROR_STOPS = ("error", "aborted", "timeout")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

USAGE_KEYS = {
    "input": ("input", "inputTokens", "input_tokens", "promptTokens", "prompt_tokens"),
    "output": ("output", "outputTokens", "output_tokens", "completionTokens", "completion_tokens"),
    "cacheRead": ("cacheRead", "cacheReadTokens", "cache_read_input_tokens", "cache_read_tokens"),
    "cacheWrite": ("cacheWrite", "cacheWriteTokens", "cache_creation_input_tokens", "cache_write_tokens"),
    "totalTokens": ("totalTokens", "total", "total_tokens"),
}
TOKEN_KINDS = ("input", "output", "cacheRead", "cacheWrite")


def zero_totals() -> dict[str, Any]:
    return {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0, "totalCost": 0.0,
            "inputCost": 0.0, "outputCost": 0.0, "cacheReadCost": 0.0, "cacheWriteCost": 0.0,
            "missingCostEntries": 0}


def add_totals(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for name in into:
        into[name] += other.get(name, 0)
    return into


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def normalize_usage(raw: Any) -> dict[str, int] | None:
    """{input, output, cacheRead, cacheWrite, totalTokens} from any of the spellings providers use."""
    if not isinstance(raw, dict):
        return None
    out: dict[str, int] = {}
    for name, spellings in USAGE_KEYS.items():
        value = next((_number(raw.get(s)) for s in spellings if _number(raw.get(s)) is not None), None)
        if value is not None:
            out[name] = int(value)
    if not out:
        return None
    for name in TOKEN_KINDS:
        out.setdefault(name, 0)
    out.setdefault("totalTokens", sum(out[n] for n in TOKEN_KINDS))
    return out


class Pricing:
    """Per-model prices from config, looked up once per call."""

    def __init__(self) -> None:
        self.memo: dict[tuple[str, str], dict[str, float] | None] = {}

    def rates(self, provider: str, model: str) -> dict[str, float] | None:
        key = (provider, model)
        if key not in self.memo:
            cost = (configured_model(provider, model) or {}).get("cost")
            self.memo[key] = ({k: float(cost.get(k) or 0) for k in TOKEN_KINDS}
                              if isinstance(cost, dict) and any(_number(cost.get(k)) for k in TOKEN_KINDS) else None)
        return self.memo[key]

    def cost(self, message: dict[str, Any], usage: dict[str, int]) -> dict[str, float] | None:
        """{total, input, output, cacheRead, cacheWrite} in USD, or None when unknown."""
        raw = (message.get("usage") or {}).get("cost")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = {"total": raw}
        if isinstance(raw, dict) and _number(raw.get("total")) is not None:
            parts = {k: _number(raw.get(k)) or 0.0 for k in TOKEN_KINDS}
            return {"total": float(raw["total"]), **parts}
        provider, model = str(message.get("provider") or ""), str(message.get("model") or "")
        rates = self.rates(provider, model) if provider and model else None
        if rates is None:
            return None
        parts = {k: usage[k] * rates[k] / 1_000_000 for k in TOKEN_KINDS}
        return {"total": sum(parts.values()), **parts}


def priced_totals(usage: dict[str, int], cost: dict[str, float] | None) -> dict[str, Any]:
    totals = zero_totals()
    for name in (*TOKEN_KINDS, "totalTokens"):
        totals[name] = usage[name]
    if cost is None:
        totals["missingCostEntries"] = 1
    else:
        totals.update(totalCost=cost["total"], inputCost=cost["input"], outputCost=cost["output"],
                      cacheReadCost=cost["cacheRead"], cacheWriteCost=cost["cacheWrite"])
    return totals


def utc_day(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%Y-%m-%d")


def local_day(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000).strftime("%Y-%m-%d")


def timestamp_of(message: dict[str, Any], created_at_ms: int) -> int:
    ts = message.get("timestamp")
    return int(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) and ts > 0 else created_at_ms


# --- ranges ----------------------------------------------------------------------------------------------------

def parse_day(text: str | None) -> date | None:
    if not isinstance(text, str) or not DATE.match(text.strip()):
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def day_range(start_date: str | None, end_date: str | None, days: int | None = None) -> tuple[date, date]:
    """Both dates valid → that range (UTC); else the last `days` (default 30) days, today included."""
    start, end = parse_day(start_date), parse_day(end_date)
    if start and end:
        return (start, end) if start <= end else (end, start)
    today = datetime.now(timezone.utc).date()
    return today - timedelta(days=max(1, days or 30) - 1), today


def range_ms(start: date, end: date) -> tuple[int, int]:
    begin = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)
    finish = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp() * 1000) + DAY_MS - 1
    return begin, finish


# --- one transcript ---------------------------------------------------------------------------------------------

def transcript_messages(session_id: uuid.UUID, start_ms: int | None = None,
                        end_ms: int | None = None) -> Iterator[tuple[dict[str, Any], int]]:
    """(message, timestamp) of a transcript in order, streamed from the database. Entries archived
    by sessions.compact still count: their tokens were spent."""
    rows = TranscriptEntry.objects.filter(session_id=session_id, type="message").exclude(
        archived_reason__in=("reset", "deleted"))
    if start_ms is not None:
        rows = rows.filter(created_at_ms__gte=start_ms)
    if end_ms is not None:
        rows = rows.filter(created_at_ms__lte=end_ms)
    for message, created in rows.order_by("seq").values_list("message", "created_at_ms").iterator(chunk_size=500):
        if isinstance(message, dict):
            yield message, timestamp_of(message, created)


def latency_stats(samples: list[int]) -> dict[str, Any] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"count": len(ordered), "avgMs": round(sum(ordered) / len(ordered)), "p95Ms": p95,
            "minMs": ordered[0], "maxMs": ordered[-1]}


def zero_counts() -> dict[str, int]:
    return {"total": 0, "user": 0, "assistant": 0, "toolCalls": 0, "toolResults": 0, "errors": 0}


@dataclass
class Tally:
    """Everything sessions.usage reports, accumulated over messages (one session or many)."""

    totals: dict[str, Any] = field(default_factory=zero_totals)
    counts: dict[str, int] = field(default_factory=zero_counts)
    tools: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latency: list[int] = field(default_factory=list)
    first: int | None = None
    last: int | None = None
    daily: dict[str, dict[str, Any]] = field(default_factory=dict)
    daily_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    daily_latency: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    models: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    daily_models: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    def feed(self, items: Iterable[tuple[dict[str, Any], int]], pricing: Pricing,
             day: Callable[[int], str] = utc_day) -> Tally:
        pending_user: int | None = None
        for message, ts in items:
            role = message.get("role")
            date_key = day(ts)
            self.first = ts if self.first is None else min(self.first, ts)
            self.last = ts if self.last is None else max(self.last, ts)
            counts = self.daily_counts.setdefault(date_key, zero_counts())
            calls = msg.tool_calls(message)
            errors = 0
            if role == "user":
                bump(self.counts, counts, "user")
                pending_user = ts
            elif role == "assistant":
                bump(self.counts, counts, "assistant")
                if message.get("stopReason") in ERROR_STOPS:
                    errors += 1
                if pending_user is not None:
                    gap = ts - pending_user
                    if 0 <= gap <= MAX_LATENCY_MS:
                        self.latency.append(gap)
                        self.daily_latency[date_key].append(gap)
                    pending_user = None
                usage = normalize_usage(message.get("usage"))
                if usage is not None:
                    self.add_usage(date_key, message, priced_totals(usage, pricing.cost(message, usage)))
            elif role in ("toolResult", "tool"):
                bump(self.counts, counts, "toolResults")
                if message.get("isError"):
                    errors += 1
            else:
                continue
            for call in calls:
                self.tools[str(call.get("name") or "tool")] += 1
            for target in (self.counts, counts):
                target["toolCalls"] += len(calls)
                target["errors"] += errors
        return self

    def add_usage(self, date_key: str, message: dict[str, Any], totals: dict[str, Any]) -> None:
        add_totals(self.totals, totals)
        day_row = self.daily.setdefault(date_key, zero_totals())
        add_totals(day_row, totals)
        ref = (str(message.get("provider") or ""), str(message.get("model") or ""))
        model_row = self.models.setdefault(ref, {"count": 0, "totals": zero_totals()})
        model_row["count"] += 1
        add_totals(model_row["totals"], totals)
        daily_model = self.daily_models.setdefault((date_key, *ref), {"tokens": 0, "cost": 0.0, "count": 0})
        daily_model["tokens"] += totals["totalTokens"]
        daily_model["cost"] += totals["totalCost"]
        daily_model["count"] += 1

    def merge(self, other: Tally) -> None:
        add_totals(self.totals, other.totals)
        add_totals(self.counts, other.counts)
        for name, n in other.tools.items():
            self.tools[name] += n
        self.latency.extend(other.latency)
        for date_key, row in other.daily.items():
            add_totals(self.daily.setdefault(date_key, zero_totals()), row)
        for date_key, row in other.daily_counts.items():
            add_totals(self.daily_counts.setdefault(date_key, zero_counts()), row)
        for date_key, samples in other.daily_latency.items():
            self.daily_latency[date_key].extend(samples)
        for ref, row in other.models.items():
            mine = self.models.setdefault(ref, {"count": 0, "totals": zero_totals()})
            mine["count"] += row["count"]
            add_totals(mine["totals"], row["totals"])
        for ref, row in other.daily_models.items():
            mine = self.daily_models.setdefault(ref, {"tokens": 0, "cost": 0.0, "count": 0})
            for name in mine:
                mine[name] += row[name]

    # --- wire shapes ---

    def tool_usage(self) -> dict[str, Any]:
        tools = sorted(({"name": n, "count": c} for n, c in self.tools.items()), key=lambda t: (-t["count"], t["name"]))
        return {"totalCalls": sum(self.tools.values()), "uniqueTools": len(self.tools), "tools": tools}

    def model_usage(self) -> list[dict[str, Any]]:
        rows = [{**ref_fields(*ref), "count": row["count"], "totals": row["totals"]} for ref, row in self.models.items()]
        return sorted(rows, key=lambda r: (-r["totals"]["totalCost"], -r["totals"]["totalTokens"]))

    def daily_latency_rows(self) -> list[dict[str, Any]]:
        return [{"date": d, **stats} for d in sorted(self.daily_latency)
                if (stats := latency_stats(self.daily_latency[d]))]

    def daily_model_rows(self) -> list[dict[str, Any]]:
        return [{"date": d, **ref_fields(p, m), **row} for (d, p, m), row in sorted(self.daily_models.items())]

    def session_cost(self) -> dict[str, Any]:
        """SessionCost (§1.11): CostTotals plus activity, daily breakdowns, counts, tools, models, latency."""
        out: dict[str, Any] = dict(self.totals)
        if self.first is not None:
            out.update(firstActivity=self.first, lastActivity=self.last, durationMs=self.last - self.first)
        dates = sorted(set(self.daily_counts) | set(self.daily))
        out["activityDates"] = dates
        out["dailyBreakdown"] = [{"date": d, "tokens": self.daily[d]["totalTokens"], "cost": self.daily[d]["totalCost"]}
                                 for d in sorted(self.daily)]
        out["dailyMessageCounts"] = [{"date": d, **self.daily_counts[d]} for d in sorted(self.daily_counts)]
        out["dailyLatency"] = self.daily_latency_rows()
        out["dailyModelUsage"] = self.daily_model_rows()
        out["messageCounts"] = dict(self.counts)
        out["toolUsage"] = self.tool_usage()
        out["modelUsage"] = self.model_usage()
        latency = latency_stats(self.latency)
        if latency:
            out["latency"] = latency
        return out


def bump(total: dict[str, int], day: dict[str, int], name: str) -> None:
    for target in (total, day):
        target[name] += 1
        target["total"] += 1


def ref_fields(provider: str, model: str) -> dict[str, str]:
    return {k: v for k, v in (("provider", provider), ("model", model)) if v}


# --- sessions.usage -------------------------------------------------------------------------------------------

def usage_row(session: Session | None, key: str, session_id: uuid.UUID, tally: Tally,
              include_context_weight: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"key": key, "sessionId": str(session_id)}
    if session is not None:
        settings = session.settings or {}
        row.update(updatedAt=session.updated_at_ms, agentId=session.agent_id)
        if session.label:
            row["label"] = session.label
        for name in ("channel", "chatType", "origin"):
            if settings.get(name) is not None:
                row[name] = settings[name]
        ref = override_ref(session)
        if ref:
            row["providerOverride"], row["modelOverride"] = ref
        if session.model_provider:
            row["modelProvider"] = session.model_provider
        if session.model:
            row["model"] = session.model
        if include_context_weight:
            row["contextWeight"] = settings.get("systemPromptReport")
    else:
        row["updatedAt"] = tally.last
    row["usage"] = tally.session_cost() if tally.first is not None else None
    return row


def sessions_usage(*, key: str | None, start_date: str | None, end_date: str | None, limit: int,
                   include_context_weight: bool) -> dict[str, Any]:
    start, end = day_range(start_date, end_date)
    start_ms, end_ms = range_ms(start, end)
    pricing = Pricing()
    picked: list[tuple[Session | None, str, uuid.UUID]] = []
    if key and key.strip():
        session, transcript = session_for_transcript(key)
        if transcript is not None:
            picked.append((session, session.key if session else key.strip(), transcript))
    else:
        rows = (Session.objects.filter(updated_at_ms__gte=start_ms, created_at_ms__lte=end_ms)
                .exclude(key__regex=r":cron:[^:]+:run:").order_by("-updated_at_ms", "-id")[:limit])
        picked = [(s, s.key, s.session_id) for s in rows]
    everything = Tally()
    by_agent: dict[str, dict[str, Any]] = {}
    by_channel: dict[str, dict[str, Any]] = {}
    sessions = []
    for session, row_key, transcript in picked:
        tally = Tally().feed(transcript_messages(transcript, start_ms, end_ms), pricing)
        everything.merge(tally)
        if session is not None:
            add_totals(by_agent.setdefault(session.agent_id, zero_totals()), tally.totals)
            channel = (session.settings or {}).get("channel") or (session.settings or {}).get("lastChannel")
            if channel:
                add_totals(by_channel.setdefault(str(channel), zero_totals()), tally.totals)
        sessions.append(usage_row(session, row_key, transcript, tally, include_context_weight))
    return {"updatedAt": now_ms(), "startDate": start.isoformat(), "endDate": end.isoformat(), "sessions": sessions,
            "totals": everything.totals, "aggregates": aggregates(everything, by_agent, by_channel)}


def aggregates(tally: Tally, by_agent: dict[str, dict[str, Any]], by_channel: dict[str, dict[str, Any]]) -> dict:
    by_model = tally.model_usage()
    providers: dict[str, dict[str, Any]] = {}
    for row in by_model:
        mine = providers.setdefault(row.get("provider", ""), {"count": 0, "totals": zero_totals()})
        mine["count"] += row["count"]
        add_totals(mine["totals"], row["totals"])
    by_provider = sorted(({**ref_fields(p, ""), **row} for p, row in providers.items()),
                         key=lambda r: (-r["totals"]["totalCost"], -r["totals"]["totalTokens"]))
    daily = []
    for d in sorted(set(tally.daily) | set(tally.daily_counts)):
        totals, counts = tally.daily.get(d, zero_totals()), tally.daily_counts.get(d, zero_counts())
        daily.append({"date": d, "tokens": totals["totalTokens"], "cost": totals["totalCost"],
                      "messages": counts["total"], "toolCalls": counts["toolCalls"], "errors": counts["errors"]})
    out: dict[str, Any] = {
        "messages": dict(tally.counts), "tools": tally.tool_usage(), "byModel": by_model, "byProvider": by_provider,
        "byAgent": [{"agentId": a, "totals": t} for a, t in sorted(by_agent.items())],
        "byChannel": [{"channel": c, "totals": t} for c, t in sorted(by_channel.items())],
        "dailyLatency": tally.daily_latency_rows(), "modelDaily": tally.daily_model_rows(), "daily": daily,
    }
    latency = latency_stats(tally.latency)
    if latency:
        out["latency"] = latency
    return out


# --- sessions.usage.timeseries / sessions.usage.logs ------------------------------------------------------------

def timeseries(key: str | None) -> dict[str, Any]:
    if not key or not key.strip():
        raise invalid("key is required for timeseries")
    _, transcript = session_for_transcript(key)
    if transcript is None:
        raise not_found(f"No transcript found for session: {key}")
    pricing = Pricing()
    points = []
    tokens, spent = 0, 0.0
    for message, ts in transcript_messages(transcript):
        if message.get("role") != "assistant":
            continue
        usage = normalize_usage(message.get("usage"))
        if usage is None:
            continue
        cost = (pricing.cost(message, usage) or {}).get("total", 0.0)
        tokens += usage["totalTokens"]
        spent += cost
        points.append({"timestamp": ts, **usage, "cost": cost, "cumulativeTokens": tokens, "cumulativeCost": spent})
    if len(points) > MAX_POINTS:  # a fixed stride, always keeping the last point
        stride = math.ceil(len(points) / (MAX_POINTS - 1))
        points = points[:-1][::stride] + points[-1:]
    return {"sessionId": str(transcript), "points": points}


def log_content(message: dict[str, Any]) -> str:
    role = message.get("role")
    if role in ("toolResult", "tool"):
        text = f"[Tool: {message.get('toolName') or 'tool'}]\n[Tool Result]"
        body = msg.text_of(message)
        text = f"{text}\n{body}" if body else text
    else:
        parts = [msg.display_text(message)] + [f"[Tool: {c.get('name') or 'tool'}]" for c in msg.tool_calls(message)]
        text = "\n".join(p for p in parts if p)
    return text if len(text) <= LOG_CHARS else text[:LOG_CHARS] + "…"


def logs(key: str | None, limit: int) -> dict[str, Any]:
    if not key or not key.strip():
        raise invalid("key is required for logs")
    _, transcript = session_for_transcript(key)
    if transcript is None:
        return {"logs": []}
    rows = (TranscriptEntry.objects.filter(session_id=transcript, archived_reason__isnull=True, type="message")
            .order_by("-seq").values_list("message", "created_at_ms")[:limit])
    pricing = Pricing()
    out = []
    for message, created in reversed(list(rows)):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "toolResult", "tool"):
            continue
        entry: dict[str, Any] = {"timestamp": timestamp_of(message, created), "role": message["role"],
                                 "content": log_content(message)}
        if message["role"] == "assistant":
            usage = normalize_usage(message.get("usage"))
            if usage is not None:
                entry["tokens"] = usage["totalTokens"]
                cost = pricing.cost(message, usage)
                if cost is not None:
                    entry["cost"] = cost["total"]
        out.append(entry)
    return {"logs": out}


# --- usage.cost -----------------------------------------------------------------------------------------------

def usage_cost(start_date: str | None, end_date: str | None, days: int | None) -> dict[str, Any]:
    """Cost per day over every transcript (archived ones too: the money was spent), cached 30 s
    per range in the shared cache."""
    start, end = day_range(start_date, end_date, days)
    cache_key = f"anima:usage.cost:{start.isoformat()}:{end.isoformat()}"
    cached = cache.get(cache_key)
    if cached is not None:
        return cached
    start_ms, end_ms = range_ms(start, end)
    rows = (TranscriptEntry.objects.filter(role="assistant", type="message", created_at_ms__gte=start_ms,
                                           created_at_ms__lte=end_ms)
            .values_list("message", "created_at_ms").iterator(chunk_size=1000))
    pricing = Pricing()
    totals = zero_totals()
    daily: dict[str, dict[str, Any]] = {}
    for message, created in rows:
        if not isinstance(message, dict):
            continue
        usage = normalize_usage(message.get("usage"))
        if usage is None:
            continue
        priced = priced_totals(usage, pricing.cost(message, usage))
        add_totals(totals, priced)
        add_totals(daily.setdefault(local_day(timestamp_of(message, created)), zero_totals()), priced)
    result = {"updatedAt": now_ms(), "days": (end - start).days + 1,
              "daily": [{"date": d, **daily[d]} for d in sorted(daily)], "totals": totals}
    cache.set(cache_key, result, COST_CACHE_S)
    return result
