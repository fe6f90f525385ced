"""Voice state writes and reads: TTS preferences, voice-wake triggers (events after commit) and
talk mode (not persisted, broadcast at once). All state is the SpeechSettings row (README D7)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from gateway.models import SpeechSettings
from gateway.protocol.events import READERS_AND_NODES, emit, emit_after_commit, now_ms

DEFAULT_TRIGGERS = ["anima", "claude", "computer"]
MAX_TRIGGERS = 32
MAX_TRIGGER_CHARS = 64


def settings_row(*, lock: bool = False) -> SpeechSettings:
    """The one row (pk 1), created on first use."""
    qs = SpeechSettings.objects.select_for_update() if lock else SpeechSettings.objects
    row = qs.filter(pk=1).first()
    if row is None:
        row, _ = SpeechSettings.objects.get_or_create(pk=1)
    return row


# --- voice wake -----------------------------------------------------------------------------------------------

def normalize_triggers(values: list[Any]) -> list[str]:
    """Strings only, trimmed, no blanks, at most 32 of at most 64 characters; nothing left → defaults."""
    out = [v.strip()[:MAX_TRIGGER_CHARS] for v in values if isinstance(v, str) and v.strip()][:MAX_TRIGGERS]
    return out or list(DEFAULT_TRIGGERS)


def wake_triggers() -> list[str]:
    row = SpeechSettings.objects.filter(pk=1).first()
    return list(row.wake_triggers) if row and row.wake_triggers else list(DEFAULT_TRIGGERS)


@transaction.atomic
def set_wake_triggers(values: list[Any]) -> list[str]:
    """Store the triggers and tell every operator and node (voicewake.changed), after commit."""
    triggers = normalize_triggers(values)
    row = settings_row(lock=True)
    row.wake_triggers = triggers
    row.wake_updated_at_ms = now_ms()
    row.save()
    emit_after_commit("voicewake.changed", {"triggers": triggers}, READERS_AND_NODES)
    return triggers


# --- talk mode --------------------------------------------------------------------------------------------------

async def set_talk_mode(enabled: bool, phase: str | None) -> dict[str, Any]:
    """Nothing to store: talk mode is a live signal to every client and node (protocol.md §4.3)."""
    payload = {"enabled": enabled, "phase": phase, "ts": now_ms()}
    await emit("talk.mode", payload, READERS_AND_NODES)
    return payload


# --- TTS preferences ----------------------------------------------------------------------------------------------

@transaction.atomic
def set_tts_auto(auto: str) -> None:
    row = settings_row(lock=True)
    row.tts_auto = auto
    row.save(update_fields=["tts_auto"])


@transaction.atomic
def set_tts_provider(provider: str, voice: str | None) -> None:
    row = settings_row(lock=True)
    row.tts_provider = provider
    if voice is not None:
        voices = dict(row.tts_voices or {})
        if voice.strip():
            voices[provider] = voice.strip()
        else:
            voices.pop(provider, None)
        row.tts_voices = voices
    row.save(update_fields=["tts_provider", "tts_voices"])
