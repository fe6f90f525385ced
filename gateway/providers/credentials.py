"""Where a backend sends its requests and with which key. Each value comes from the first
place that has it: the provider key store (anima.providers.set, an entry whose id is the
provider or `<provider>:<label>`), the config document (`models.providers.<id>.baseUrl` /
`.apiKey`), the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`,
`OLLAMA_BASE_URL`, …), then the provider's default endpoint. Local servers (Ollama, vLLM,
llama.cpp, LM Studio) need no key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from gateway.runs.backends.base import BackendError

from . import services


@dataclass(frozen=True)
class ProviderInfo:
    id: str
    label: str
    default_base_url: str | None  # None: the base URL must be configured
    key_required: bool            # with the default base URL


PROVIDERS: dict[str, ProviderInfo] = {p.id: p for p in (
    ProviderInfo("openai", "OpenAI", "https://api.openai.com/v1", True),
    ProviderInfo("openrouter", "OpenRouter", "https://openrouter.ai/api/v1", True),
    ProviderInfo("ollama", "Ollama", "http://127.0.0.1:11434/v1", False),
    ProviderInfo("vllm", "vLLM", "http://127.0.0.1:8000/v1", False),
    ProviderInfo("llamacpp", "llama.cpp", "http://127.0.0.1:8080/v1", False),
    ProviderInfo("lmstudio", "LM Studio", "http://127.0.0.1:1234/v1", False),
    ProviderInfo("anthropic", "Anthropic", "https://api.anthropic.com", True),
)}
OPENAI_COMPATIBLE = tuple(p for p in PROVIDERS if p != "anthropic")
ENV_PLACEHOLDER = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class Endpoint:
    provider: str
    base_url: str
    api_key: str | None
    key_source: str       # "store:<id>", "config", "env", "" (none)
    custom_base_url: bool  # configured explicitly, not the provider's default


def canonical(provider: str) -> str:
    return provider.strip().lower().replace(".", "")


def env_prefix(provider: str) -> str:
    return canonical(provider).upper()


def config_value(path: str, default: Any) -> Any:
    try:
        from gateway.config import config_value as read
    except ImportError:  # the config subsystem is optional here
        return default
    value = read(path, default)
    if isinstance(value, str) and (m := ENV_PLACEHOLDER.match(value)):
        return os.environ.get(m.group(1), "")
    return value


def _first(*values: Any) -> str:
    return next((v.strip() for v in values if isinstance(v, str) and v.strip()), "")


def how_to_configure(provider: str) -> str:
    p = canonical(provider)
    return (f"set {env_prefix(p)}_API_KEY, models.providers.{p}.apiKey in the config, or store a key with "
            f'anima.providers.set (id "{p}")')


def endpoint(provider: str, stored: services.StoredKey | None = None) -> Endpoint:
    """The endpoint of `provider`, with `stored` (or the first stored key) taking precedence.
    Not configured is a BackendError of kind `unavailable` that says what to set."""
    p = canonical(provider)
    info = PROVIDERS.get(p) or ProviderInfo(p, p, None, False)
    if stored is None:
        stored = next(iter(services.keys_for(p)), None)
    if stored is not None and stored.api_key is None:
        raise BackendError(f'the stored API key of provider "{stored.entry_id}" cannot be decrypted (the '
                           f"gateway's SECRET_KEY changed); store it again with anima.providers.set", kind="auth")
    conf = config_value(f"models.providers.{p}", None)
    conf = conf if isinstance(conf, dict) else {}
    prefix = env_prefix(p)
    base_url = _first(stored.base_url if stored else "", conf.get("baseUrl"), os.environ.get(f"{prefix}_BASE_URL"))
    custom = bool(base_url)
    base_url = (base_url or info.default_base_url or "").rstrip("/")
    key, source = "", ""
    for value, where in ((stored.api_key if stored else "", f"store:{stored.entry_id}" if stored else ""),
                         (conf.get("apiKey"), "config"), (os.environ.get(f"{prefix}_API_KEY"), "env")):
        if isinstance(value, str) and value.strip():
            key, source = value.strip(), where
            break
    if not base_url:
        raise BackendError(f"{p} is not configured: set {prefix}_BASE_URL or models.providers.{p}.baseUrl in "
                           f"the config (the URL of its OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1)",
                           kind="unavailable")
    if not key and info.key_required and not custom:
        raise BackendError(f"{p} is not configured: {how_to_configure(p)}", kind="unavailable")
    return Endpoint(p, base_url, key or None, source, custom)


def is_configured(provider: str) -> bool:
    """Whether a run on `provider` would get as far as calling its server."""
    try:
        endpoint(provider)
    except BackendError:
        return False
    return True
