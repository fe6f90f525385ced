"""Which models a session may be switched to (sessions.patch `model`, README D9) and what an
agent's default model is. Models are named `provider/model`; the provider picks the backend."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from gateway.protocol.errors import invalid

from .keys import config_value

DEFAULT_MODEL = "echo/echo"
# Providers that have a backend (gateway/runs/backends). Anything else would fail every run.
PROVIDERS = ("echo", "openai", "ollama", "vllm", "llamacpp", "anthropic")
PROVIDER_ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp"}
# thinkingLevel "xhigh" is only accepted for these (chat-sessions-cron.md §1.7).
XHIGH = re.compile(r"^gpt-5\.[1-9](?:[-.].*)?$|^gpt-5(?:\.\d+)?-codex(?:-.*)?$")
XHIGH_HINT = "openai/gpt-5.x and */gpt-5.x-codex models"


def split_ref(ref: str) -> tuple[str, str]:
    provider, _, model = ref.strip().partition("/")
    provider = provider.strip().lower()
    return PROVIDER_ALIASES.get(provider, provider), model.strip()


def _model_name(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict) and isinstance(value.get("primary"), str) and value["primary"].strip():
        return value["primary"].strip()
    return None


def default_model_ref(agent_id: str | None = None) -> tuple[str, str]:
    """(provider, model) an agent runs when its session has no override: agents.list[id].model,
    then agents.defaults.model, then the ANIMA_DEFAULT_MODEL setting, then echo/echo."""
    name = None
    entries = config_value("agents.list", None)
    if agent_id and isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and str(entry.get("id", "")).strip().lower() == agent_id:
                name = _model_name(entry.get("model"))
    name = name or _model_name(config_value("agents.defaults.model", None))
    name = name or getattr(settings, "ANIMA_DEFAULT_MODEL", "") or DEFAULT_MODEL
    if "/" not in name:  # as the run manager reads it (runs.backends.split_model)
        return ("echo", "echo") if name.lower() == "echo" else (name.lower(), name)
    return split_ref(name)


def default_context_tokens(provider: str, model: str) -> int | None:
    """The context window configured for the model (models.providers.<p>.models[].contextWindow)."""
    definition = configured_model(provider, model)
    window = (definition or {}).get("contextWindow")
    if isinstance(window, int):
        return window
    value = config_value("agents.defaults.contextTokens", None)
    return value if isinstance(value, int) else None


def configured_model(provider: str, model: str) -> dict[str, Any] | None:
    providers = config_value("models.providers", None)
    if not isinstance(providers, dict):
        return None
    for name, block in providers.items():
        if split_ref(f"{name}/x")[0] != provider or not isinstance(block, dict):
            continue
        for definition in block.get("models") or []:
            if isinstance(definition, dict) and definition.get("id") == model:
                return definition
    return None


def resolve_model(raw: str) -> tuple[str, str]:
    """A `provider/model` reference checked against the providers that have a backend. The bare
    name `echo` means echo/echo."""
    text = raw.strip()
    if not text:
        raise invalid("invalid model: empty")
    if text.lower() == "echo":
        return "echo", "echo"
    provider, model = split_ref(text)
    if "/" not in text or not provider or not model:
        raise invalid(f'invalid model "{text}": use provider/model (providers: {", ".join(PROVIDERS)})')
    if provider not in PROVIDERS:
        raise invalid(f'model not allowed: {text} (unknown provider "{provider}"; use {", ".join(PROVIDERS)})')
    return provider, model


def supports_xhigh(provider: str, model: str) -> bool:
    return provider in ("openai", "openai-codex") and bool(XHIGH.match(model.lower()))
