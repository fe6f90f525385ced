"""Anthropic's Messages API through the official `anthropic` SDK, streaming (README D9). The key
comes from the provider key store, `models.providers.anthropic.apiKey` or ANTHROPIC_API_KEY;
without one the run fails and says so. Cancelling the task closes the HTTP stream."""

from __future__ import annotations

from typing import Any

import anthropic
from asgiref.sync import sync_to_async

from gateway.providers import credentials, services
from gateway.providers.catalog import max_output_tokens

from ._messages import system_prompt, turns
from .base import BackendError, Emit, RunRequest, RunResult, Usage

PROVIDER = "anthropic"
MAX_RETRIES = 1
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "toolUse",
                "refusal": "refusal", "pause_turn": "pauseTurn"}


def anthropic_messages(request: RunRequest) -> list[dict[str, Any]]:
    """Alternating user/assistant turns starting with a user turn (same-role neighbours merged)."""
    merged: list[dict[str, Any]] = []
    for role, text in turns(request):
        if not merged and role != "user":
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n\n" + text
        else:
            merged.append({"role": role, "content": text})
    return merged


def server_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(text, str) and text.strip():
            return text.strip()[:300]
    return (exc.response.reason_phrase or "").strip() or "no details"


def backend_error(exc: anthropic.AnthropicError, ep: credentials.Endpoint, model: str) -> BackendError:
    where = ep.base_url
    if isinstance(exc, anthropic.APITimeoutError):
        return BackendError(f"anthropic at {where} did not answer in time", kind="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {cause}" if cause and str(cause) else ""
        return BackendError(f"cannot reach anthropic at {where}{detail}", kind="unavailable")
    if isinstance(exc, anthropic.APIStatusError):
        status, text = exc.status_code, server_message(exc)
        if status in (401, 403):
            return BackendError(f"anthropic rejected the request ({status}, the key from {ep.key_source}): {text}; "
                                f"{credentials.how_to_configure(PROVIDER)}", kind="auth")
        if status == 429:
            return BackendError(f"anthropic rate limit (429): {text}", kind="rate_limit")
        if status == 402 or "credit balance" in text.lower():
            return BackendError(f"anthropic billing problem ({status}): {text}", kind="billing")
        if status == 404:
            return BackendError(f"anthropic does not know model {model!r} (404): {text}", kind="other")
        if status in (400, 413) and ("too long" in text.lower() or "context" in text.lower()):
            return BackendError(f"anthropic: the conversation is too long for {model} ({status}): {text}",
                                kind="context_overflow")
        if status >= 500:
            return BackendError(f"anthropic server error ({status}): {text}", kind="unavailable")
        return BackendError(f"anthropic refused the request ({status}): {text}", kind="other")
    return BackendError(f"anthropic stream failed: {str(exc)[:300] or type(exc).__name__}", kind="other")


def usage_of(raw: Any) -> Usage:
    return Usage(input=int(getattr(raw, "input_tokens", 0) or 0), output=int(getattr(raw, "output_tokens", 0) or 0),
                 cache_read=int(getattr(raw, "cache_read_input_tokens", 0) or 0),
                 cache_write=int(getattr(raw, "cache_creation_input_tokens", 0) or 0))


class AnthropicBackend:
    async def run(self, request: RunRequest, emit: Emit) -> RunResult:
        ep = await sync_to_async(credentials.endpoint)(PROVIDER)
        if not ep.api_key:
            raise BackendError(f"anthropic is not configured: {credentials.how_to_configure(PROVIDER)}",
                               kind="unavailable")
        if not request.model:
            raise BackendError("no model named: use anthropic/<model>", kind="other")
        sent: list[str] = []
        try:
            return await self.stream(ep, request, emit, sent)
        except BackendError as error:
            if error.kind != "rate_limit" or sent or not ep.key_source.startswith("store:"):
                raise
            nxt = await sync_to_async(services.rotate_after_rate_limit)(PROVIDER, ep.key_source[len("store:"):])
            if nxt is None:
                raise
            return await self.stream(await sync_to_async(credentials.endpoint)(PROVIDER, nxt), request, emit, sent)

    async def stream(self, ep: credentials.Endpoint, request: RunRequest, emit: Emit, sent: list[str]) -> RunResult:
        timeout = request.timeout_ms / 1000 if request.timeout_ms else None
        client = anthropic.AsyncAnthropic(api_key=ep.api_key, base_url=ep.base_url, timeout=timeout,
                                          max_retries=MAX_RETRIES)
        kwargs: dict[str, Any] = {"model": request.model, "max_tokens": max_output_tokens(PROVIDER, request.model),
                                  "messages": anthropic_messages(request)}
        system = system_prompt(request)
        if system:
            kwargs["system"] = system
        try:
            # leaving the stream's context closes the HTTP response, on cancellation too
            async with client, client.messages.stream(**kwargs) as stream:
                async for text in stream.text_stream:
                    if text:
                        sent.append(text)
                        await emit("assistant", {"delta": text})
                final = await stream.get_final_message()
        except anthropic.AnthropicError as exc:
            raise backend_error(exc, ep, request.model) from None
        stop = STOP_REASONS.get(final.stop_reason or "end_turn", final.stop_reason or "stop")
        return RunResult(text="".join(sent), usage=usage_of(final.usage), stop_reason=stop, provider=PROVIDER,
                         model=request.model)
