"""Any OpenAI-compatible chat-completions server (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp,
LM Studio) through the official `openai` SDK, streaming (README D9). Endpoint and key come from
gateway.providers.credentials; a provider that is not configured or not reachable fails the run
with a message that says what to do. Cancelling the task closes the HTTP stream."""

from __future__ import annotations

from typing import Any

import openai
from asgiref.sync import sync_to_async

from gateway.providers import credentials, services

from ._messages import system_prompt, turns
from .base import BackendError, Emit, RunRequest, RunResult, Usage

MAX_RETRIES = 1
STOP_REASONS = {"stop": "stop", "length": "length", "tool_calls": "toolUse", "function_call": "toolUse",
                "content_filter": "contentFilter"}


def chat_messages(request: RunRequest) -> list[dict[str, Any]]:
    system = system_prompt(request)
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": role, "content": text} for role, text in turns(request)]


def server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        text = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(text, str) and text.strip():
            return text.strip()[:300]
    return (exc.response.reason_phrase or "").strip() or "no details"


def backend_error(exc: openai.OpenAIError, ep: credentials.Endpoint, model: str) -> BackendError:
    """The SDK's exception as a run error a person can act on."""
    p, where = ep.provider, ep.base_url
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(f"{p} at {where} did not answer in time", kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f": {cause}" if cause and str(cause) else ""
        return BackendError(f"cannot reach {p} at {where}{detail} (is the server running? set "
                            f"{credentials.env_prefix(p)}_BASE_URL or models.providers.{p}.baseUrl)", kind="unavailable")
    if isinstance(exc, openai.APIStatusError):
        status, text = exc.status_code, server_message(exc)
        if status in (401, 403):
            hint = f"the key from {ep.key_source}" if ep.key_source else "no API key was sent"
            return BackendError(f"{p} rejected the request ({status}, {hint}): {text}; "
                                f"{credentials.how_to_configure(p)}", kind="auth")
        if status == 429:
            billing = "quota" in text.lower() or "billing" in text.lower()
            return BackendError(f"{p} rate limit (429): {text}", kind="billing" if billing else "rate_limit")
        if status == 402:
            return BackendError(f"{p} billing problem (402): {text}", kind="billing")
        if status == 404:
            return BackendError(f"{p} at {where} does not know model {model!r} (404): {text}", kind="other")
        if status in (400, 413) and any(w in text.lower() for w in ("context", "too long", "maximum")):
            return BackendError(f"{p}: the conversation is too long for {model} ({status}): {text}",
                                kind="context_overflow")
        if status >= 500:
            return BackendError(f"{p} server error ({status}): {text}", kind="unavailable")
        return BackendError(f"{p} refused the request ({status}): {text}", kind="other")
    return BackendError(f"{p} stream failed: {str(exc)[:300] or type(exc).__name__}", kind="other")


class OpenAICompatibleBackend:
    def __init__(self, provider: str):
        self.provider = credentials.canonical(provider)

    async def run(self, request: RunRequest, emit: Emit) -> RunResult:
        ep = await sync_to_async(credentials.endpoint)(self.provider)
        if not request.model:
            raise BackendError(f"no model named: use {self.provider}/<model>", kind="other")
        sent: list[str] = []
        try:
            return await self.stream(ep, request, emit, sent)
        except BackendError as error:
            retry = await self.rotated(ep, error, sent)
            if retry is None:
                raise
            return await self.stream(retry, request, emit, sent)

    async def rotated(self, ep: credentials.Endpoint, error: BackendError,
                      sent: list[str]) -> credentials.Endpoint | None:
        """After a rate limit on a stored key, before any text went out: the next stored key."""
        if error.kind != "rate_limit" or sent or not ep.key_source.startswith("store:"):
            return None
        nxt = await sync_to_async(services.rotate_after_rate_limit)(self.provider, ep.key_source[len("store:"):])
        return None if nxt is None else await sync_to_async(credentials.endpoint)(self.provider, nxt)

    async def stream(self, ep: credentials.Endpoint, request: RunRequest, emit: Emit, sent: list[str]) -> RunResult:
        usage, stop = Usage(), "stop"
        timeout = request.timeout_ms / 1000 if request.timeout_ms else None
        # a local server that needs no key still gets a non-empty bearer value: the SDK insists on one
        client = openai.AsyncOpenAI(api_key=ep.api_key or "no-key", base_url=ep.base_url, timeout=timeout,
                                    max_retries=MAX_RETRIES)
        try:
            async with client:
                stream = await client.chat.completions.create(
                    model=request.model, messages=chat_messages(request), stream=True,
                    stream_options={"include_usage": True})
                async with stream:  # closes the HTTP response on cancellation too
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = usage_of(chunk.usage)
                        for choice in chunk.choices or []:
                            if choice.index not in (0, None):
                                continue
                            text = choice.delta.content if choice.delta else None
                            if text:
                                sent.append(text)
                                await emit("assistant", {"delta": text})
                            if choice.finish_reason:
                                stop = STOP_REASONS.get(choice.finish_reason, choice.finish_reason)
        except openai.OpenAIError as exc:
            raise backend_error(exc, ep, request.model) from None
        return RunResult(text="".join(sent), usage=usage, stop_reason=stop, provider=self.provider,
                         model=request.model)


def usage_of(raw: Any) -> Usage:
    """OpenAI counts cached prompt tokens inside prompt_tokens; ANIMA's `input` excludes them."""
    prompt = int(getattr(raw, "prompt_tokens", 0) or 0)
    details = getattr(raw, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return Usage(input=max(0, prompt - cached), output=int(getattr(raw, "completion_tokens", 0) or 0),
                 cache_read=cached)
