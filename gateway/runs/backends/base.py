"""The one interface every agent backend implements (README D9, chat-sessions-cron.md §4.1).
The gateway owns sessions, transcripts, events, dedupe, timeouts and cancellation; a backend
turns a prepared request into a stream of events and a result. Cancellation is task
cancellation: a backend stops at its next await."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol


class BackendError(Exception):
    """The backend could not produce a reply (not configured, unreachable, refused)."""

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind  # auth | rate_limit | billing | timeout | context_overflow | unavailable | other


@dataclass
class RunRequest:
    run_id: str
    session_key: str
    session_id: str
    agent_id: str
    provider: str
    model: str
    prompt_text: str
    history: list[dict[str, Any]] = field(default_factory=list)  # transcript messages before this turn
    thinking: str | None = None
    extra_system_prompt: str | None = None
    system_prompt: str | None = None
    timeout_ms: int = 600_000


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def as_wire(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "cacheRead": self.cache_read,
                "cacheWrite": self.cache_write, "totalTokens": self.total}


@dataclass
class RunResult:
    text: str
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "stop"
    provider: str = ""
    model: str = ""


# emit(stream, data): stream is "assistant" ({"delta": str}) or "tool" ({phase, name, toolCallId, ...})
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class AgentBackend(Protocol):
    async def run(self, request: RunRequest, emit: Emit) -> RunResult: ...
