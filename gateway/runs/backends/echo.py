"""The offline default backend (README D9, D14): replies with the user's raw text, streamed
in `chunkChars` pieces every `chunkDelayMs` (config agents.defaults.echo), and reports usage
as whitespace-separated word counts."""

from __future__ import annotations

import asyncio

from .base import Emit, RunRequest, RunResult, Usage

DEFAULT_CHUNK_CHARS = 16
DEFAULT_CHUNK_DELAY_MS = 20


def echo_settings() -> tuple[int, int]:
    try:
        from gateway.config import config_value
    except ImportError:  # the config subsystem is optional for this backend
        return DEFAULT_CHUNK_CHARS, DEFAULT_CHUNK_DELAY_MS
    chars = config_value("agents.defaults.echo.chunkChars", DEFAULT_CHUNK_CHARS)
    delay = config_value("agents.defaults.echo.chunkDelayMs", DEFAULT_CHUNK_DELAY_MS)
    return max(1, int(chars or DEFAULT_CHUNK_CHARS)), max(0, int(delay if delay is not None else DEFAULT_CHUNK_DELAY_MS))


class EchoBackend:
    async def run(self, request: RunRequest, emit: Emit) -> RunResult:
        chars, delay_ms = echo_settings()
        text = request.prompt_text
        for start in range(0, len(text), chars):
            if start:
                await asyncio.sleep(delay_ms / 1000)
            await emit("assistant", {"delta": text[start:start + chars]})
        words = len(text.split())
        return RunResult(text=text, usage=Usage(input=words, output=words), provider="echo", model=request.model)
