"""Backend registry: `provider/model` names pick the backend (README D9)."""

from __future__ import annotations

from .base import AgentBackend, BackendError
from .echo import EchoBackend

DEFAULT_MODEL = "echo/echo"
OPENAI_COMPATIBLE = {"openai", "ollama", "vllm", "llamacpp", "llama.cpp", "openrouter", "lmstudio"}


def split_model(name: str | None) -> tuple[str, str]:
    text = (name or DEFAULT_MODEL).strip()
    provider, _, model = text.partition("/")
    return (provider.lower(), model) if model else ("echo", text) if text == "echo" else (provider.lower(), text)


def backend_for(provider: str) -> AgentBackend:
    """The backend of a provider; an unknown provider is a clear error, never a fake reply."""
    if provider == "echo":
        return EchoBackend()
    if provider in OPENAI_COMPATIBLE:
        from .openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(provider)
    if provider == "anthropic":
        from .anthropic import AnthropicBackend

        return AnthropicBackend()
    raise BackendError(f"unknown model provider {provider!r} (use echo/…, openai/…, ollama/…, anthropic/…)",
                       kind="unavailable")


__all__ = ["AgentBackend", "BackendError", "DEFAULT_MODEL", "backend_for", "split_model"]
