"""The model catalog behind models.list (chat-sessions-cron.md §4.3, operations.md §6): echo/echo
always; a small built-in list for each configured cloud provider; the models each reachable
OpenAI-compatible server of our own (Ollama, vLLM, llama.cpp, LM Studio, a custom base URL) lists
at GET /models, cached; and `models.providers.<p>.models[]` from the config (`models.mode:
"replace"` drops the built-ins of a provider that lists its own). Sorted by provider, then name."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import openai
from asgiref.sync import sync_to_async
from django.core.cache import cache

from gateway.runs.backends.base import BackendError

from . import credentials

log = logging.getLogger("gateway.providers")

DISCOVERY_TIMEOUT_S = 2.0
DISCOVERED_TTL_S = 300
UNREACHABLE_TTL_S = 15
DEFAULT_MAX_OUTPUT_TOKENS = 8192

TEXT, TEXT_IMAGE = ["text"], ["text", "image"]
BUILTIN: dict[str, list[dict[str, Any]]] = {
    "echo": [{"id": "echo", "name": "Echo (offline, replies with your text)", "contextWindow": 1_000_000,
              "input": TEXT}],
    "openai": [
        {"id": "gpt-4o-mini", "name": "GPT-4o mini", "contextWindow": 128_000, "input": TEXT_IMAGE},
        {"id": "gpt-4o", "name": "GPT-4o", "contextWindow": 128_000, "input": TEXT_IMAGE},
        {"id": "gpt-4.1", "name": "GPT-4.1", "contextWindow": 1_047_576, "input": TEXT_IMAGE},
        {"id": "gpt-4.1-mini", "name": "GPT-4.1 mini", "contextWindow": 1_047_576, "input": TEXT_IMAGE},
        {"id": "o4-mini", "name": "o4-mini", "contextWindow": 200_000, "reasoning": True, "input": TEXT_IMAGE},
        {"id": "gpt-5", "name": "GPT-5", "contextWindow": 400_000, "reasoning": True, "input": TEXT_IMAGE},
        {"id": "gpt-5-mini", "name": "GPT-5 mini", "contextWindow": 400_000, "reasoning": True, "input": TEXT_IMAGE},
    ],
    "anthropic": [
        {"id": "claude-opus-4-1", "name": "Claude Opus 4.1", "contextWindow": 200_000, "reasoning": True,
         "input": TEXT_IMAGE, "maxTokens": 32_000},
        {"id": "claude-sonnet-4-5", "name": "Claude Sonnet 4.5", "contextWindow": 200_000, "reasoning": True,
         "input": TEXT_IMAGE, "maxTokens": 64_000},
        {"id": "claude-haiku-4-5", "name": "Claude Haiku 4.5", "contextWindow": 200_000, "reasoning": True,
         "input": TEXT_IMAGE, "maxTokens": 64_000},
        {"id": "claude-3-5-haiku-latest", "name": "Claude Haiku 3.5", "contextWindow": 200_000,
         "input": TEXT_IMAGE, "maxTokens": 8_192},
    ],
}
WIRE_KEYS = ("id", "name", "provider", "contextWindow", "reasoning", "input")
LOCAL_SERVERS = {"ollama", "vllm", "llamacpp", "lmstudio"}


def max_output_tokens(provider: str, model: str) -> int:
    """The output budget a backend asks for (Anthropic requires one)."""
    for entry in BUILTIN.get(provider, []):
        if model == entry["id"] or model.startswith(entry["id"] + "-"):
            return int(entry.get("maxTokens") or DEFAULT_MAX_OUTPUT_TOKENS)
    return DEFAULT_MAX_OUTPUT_TOKENS


def _wire(provider: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id.strip() or not provider:
        return None
    out = {k: entry[k] for k in WIRE_KEYS if entry.get(k) is not None}
    out.update(id=model_id.strip(), provider=provider)
    out["name"] = entry["name"] if isinstance(entry.get("name"), str) and entry["name"].strip() else out["id"]
    return out


def _plan() -> tuple[list[dict[str, Any]], list[credentials.Endpoint]]:
    """Static entries (built-in and config) and the endpoints worth asking for their models."""
    configured = credentials.config_value("models.providers", None)
    configured = configured if isinstance(configured, dict) else {}
    replace = credentials.config_value("models.mode", "merge") == "replace"
    static: list[dict[str, Any]] = []
    probes: list[credentials.Endpoint] = []
    for entry in BUILTIN["echo"]:
        static.append(_wire("echo", entry))
    for pid in credentials.PROVIDERS:
        conf = configured.get(pid) if isinstance(configured.get(pid), dict) else {}
        own = [m for m in conf.get("models") or [] if isinstance(m, dict)] if isinstance(conf.get("models"), list) else []
        try:
            ep = credentials.endpoint(pid)
        except BackendError:
            ep = None
        if ep is not None and not (replace and own):
            static.extend(_wire(pid, e) for e in BUILTIN.get(pid, []))
        if ep is not None and pid != "anthropic" and (ep.custom_base_url or pid in LOCAL_SERVERS):
            probes.append(ep)
    own_entries = [_wire(credentials.canonical(str(pid)), m)  # first: they win over built-ins and discovery
                   for pid, conf in configured.items() if isinstance(conf, dict) and isinstance(conf.get("models"), list)
                   for m in conf["models"] if isinstance(m, dict)]
    return [e for e in [*own_entries, *static] if e], probes


def _cache_key(ep: credentials.Endpoint) -> str:
    digest = hashlib.sha256(f"{ep.base_url}\0{ep.api_key or ''}".encode()).hexdigest()[:24]
    return f"anima:models:discovered:{ep.provider}:{digest}"


async def discovered(ep: credentials.Endpoint) -> list[dict[str, Any]]:
    """The models an OpenAI-compatible server lists (GET <base>/models), cached; [] when unreachable."""
    key = _cache_key(ep)
    cached = await cache.aget(key)
    if cached is not None:
        return cached
    found: list[dict[str, Any]] = []
    try:
        async with openai.AsyncOpenAI(api_key=ep.api_key or "no-key", base_url=ep.base_url,
                                      timeout=DISCOVERY_TIMEOUT_S, max_retries=0) as client:
            async with asyncio.timeout(DISCOVERY_TIMEOUT_S * 2):
                async for model in client.models.list():
                    extra = model.model_extra or {}
                    window = extra.get("max_model_len") or extra.get("context_length")
                    entry = _wire(ep.provider, {"id": model.id, "contextWindow": window if isinstance(window, int)
                                                else None})
                    if entry:
                        found.append(entry)
    except (openai.OpenAIError, TimeoutError) as exc:
        log.debug("listing the models of %s at %s failed: %s", ep.provider, ep.base_url, exc)
        await cache.aset(key, [], UNREACHABLE_TTL_S)
        return []
    await cache.aset(key, found, DISCOVERED_TTL_S if found else UNREACHABLE_TTL_S)
    return found


async def list_models() -> list[dict[str, Any]]:
    """The catalog: unique by (provider, id), sorted by provider, then name."""
    static, probes = await sync_to_async(_plan)()
    lists = await asyncio.gather(*(discovered(ep) for ep in probes))
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in [*static, *(e for found in lists for e in found)]:
        unique.setdefault((entry["provider"], entry["id"]), entry)
    return sorted(unique.values(), key=lambda m: (m["provider"], m["name"].lower(), m["id"]))
