"""Text to speech (operations.md §9): the effective mode and provider from preferences and config,
and conversion through provider engines. The only engine built in is the local `espeak` one
(`espeak-ng` or `espeak` on PATH, found at run time); the paid/network engines (OpenAI,
ElevenLabs, Edge) have no implementation here, so choosing them fails honestly (README D12)."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from gateway.config import config_value
from gateway.models import SpeechSettings
from gateway.protocol.errors import invalid, unavailable
from gateway.protocol.events import now_ms

PROVIDERS = ("openai", "elevenlabs", "edge", "espeak")
NAMES = {"openai": "OpenAI", "elevenlabs": "ElevenLabs", "edge": "Edge TTS", "espeak": "eSpeak NG (local)"}
OPENAI_MODELS = ["gpt-4o-mini-tts", "tts-1", "tts-1-hd"]
OPENAI_VOICES = ["alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "juniper", "marin", "onyx", "nova",
                 "sage", "shimmer", "verse"]
ELEVENLABS_MODELS = ["eleven_multilingual_v2", "eleven_turbo_v2_5", "eleven_monolingual_v1"]
PREFS_PATH = "db:default/speech-settings"
MAX_TEXT_LENGTH = 4096
TIMEOUT_MS = 30_000
AUDIO_TTL_S = 300


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


def has_openai_key() -> bool:
    return bool(config_value("messages.tts.openai.apiKey") or os.environ.get("OPENAI_API_KEY"))


def has_elevenlabs_key() -> bool:
    return bool(config_value("messages.tts.elevenlabs.apiKey") or os.environ.get("ELEVENLABS_API_KEY")
                or os.environ.get("XI_API_KEY"))


def configured(provider: str) -> bool:
    if provider == "openai":
        return has_openai_key()
    if provider == "elevenlabs":
        return has_elevenlabs_key()
    if provider == "edge":
        return config_value("messages.tts.edge.enabled") is not False
    return espeak_binary() is not None and config_value("messages.tts.espeak.enabled") is not False


@dataclass(frozen=True)
class Effective:
    auto: str
    provider: str
    voices: dict[str, str]


def effective() -> Effective:
    """prefs → config → keys → local espeak → edge (espeak before edge: unlike ANIMA, the one engine
    this gateway really has is preferred over one it does not have)."""
    row = SpeechSettings.objects.filter(pk=1).first()
    auto = (row.tts_auto if row else "") or config_value("messages.tts.auto")
    if not auto:
        auto = "always" if config_value("messages.tts.enabled") is True else "off"
    provider = (row.tts_provider if row else "") or config_value("messages.tts.provider")
    if provider not in PROVIDERS:
        provider = ("openai" if has_openai_key() else "elevenlabs" if has_elevenlabs_key()
                    else "espeak" if configured("espeak") else "edge")
    return Effective(str(auto), provider, dict(row.tts_voices or {}) if row else {})


def fallback_order(primary: str) -> list[str]:
    return [primary, *(p for p in PROVIDERS if p != primary)]


def status() -> dict[str, Any]:
    eff = effective()
    fallbacks = [p for p in fallback_order(eff.provider)[1:] if configured(p)]
    return {"enabled": eff.auto != "off", "auto": eff.auto, "provider": eff.provider,
            "fallbackProvider": fallbacks[0] if fallbacks else None, "fallbackProviders": fallbacks,
            "prefsPath": PREFS_PATH, "hasOpenAIKey": has_openai_key(), "hasElevenLabsKey": has_elevenlabs_key(),
            "edgeEnabled": configured("edge"), "espeakAvailable": configured("espeak"),
            "voice": eff.voices.get(eff.provider)}


def providers() -> dict[str, Any]:
    # `configured` keeps ANIMA's meaning (a key, or not disabled); `available` says whether this
    # gateway can really convert with it, which only the local espeak engine can.
    espeak_ready = configured("espeak")
    return {"providers": [
        {"id": "openai", "name": NAMES["openai"], "configured": configured("openai"), "available": False,
         "models": OPENAI_MODELS, "voices": OPENAI_VOICES},
        {"id": "elevenlabs", "name": NAMES["elevenlabs"], "configured": configured("elevenlabs"), "available": False,
         "models": ELEVENLABS_MODELS},
        {"id": "edge", "name": NAMES["edge"], "configured": configured("edge"), "available": False, "models": []},
        {"id": "espeak", "name": NAMES["espeak"], "configured": espeak_ready, "available": espeak_ready, "models": [],
         "binary": os.path.basename(espeak_binary() or "") or None},
    ], "active": effective().provider}


def check_provider(provider: str) -> str:
    value = provider.strip().lower()
    if value not in PROVIDERS:
        raise invalid("Invalid provider. Use openai, elevenlabs, edge, or espeak.")
    return value


# --- conversion ---------------------------------------------------------------------------------------------

class EngineError(Exception):
    pass


async def convert(text: str, channel: str | None) -> dict[str, Any]:
    text = text.strip()
    if not text:
        raise invalid("tts.convert requires text")
    limit = config_value("messages.tts.maxTextLength", MAX_TEXT_LENGTH)
    if len(text) > limit:
        raise invalid(f"Text too long ({len(text)} chars, max {limit})")
    eff = await sync_to_async(effective)()
    errors = []
    for provider in fallback_order(eff.provider):
        try:
            return await _engine(provider, text, eff.voices.get(provider))
        except EngineError as exc:
            errors.append(f"{provider}: {exc}")
    # every provider's reason, the chosen one first (ANIMA names only the last, which hides the useful one)
    raise unavailable(f"TTS conversion failed: {'; '.join(errors)}")


async def _engine(provider: str, text: str, voice: str | None) -> dict[str, Any]:
    if provider == "espeak":
        return await espeak(text, voice)
    if not configured(provider):
        raise EngineError("No API key" if provider != "edge" else "disabled")
    raise EngineError("no engine for this provider in this gateway (only the local espeak engine is built in)")


async def espeak(text: str, voice: str | None) -> dict[str, Any]:
    """`espeak-ng --stdin -w <file>.wav [-v voice]`; a non-zero exit or an empty file is a failure."""
    binary = espeak_binary()
    if binary is None or config_value("messages.tts.espeak.enabled") is False:
        raise EngineError("espeak-ng not installed" if binary is None else "disabled")
    folder = tempfile.mkdtemp(prefix="tts-")
    path = os.path.join(folder, f"voice-{now_ms()}.wav")
    args = [binary, "--stdin", "-w", path, *(["-v", voice] if voice else [])]
    timeout = config_value("messages.tts.timeoutMs", TIMEOUT_MS) / 1000
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(text.encode()), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise EngineError(f"timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            raise EngineError(f"exit {proc.returncode}: {stderr.decode(errors='replace').strip()[:300]}")
        with open(path, "rb") as fh:
            audio = fh.read()
        if not audio:
            raise EngineError("produced no audio")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    asyncio.get_running_loop().call_later(AUDIO_TTL_S, shutil.rmtree, folder, True)
    return {"audioPath": path, "provider": "espeak", "outputFormat": "wav", "voiceCompatible": False,
            "mimeType": "audio/wav", "bytes": len(audio), "audioBase64": base64.b64encode(audio).decode()}
