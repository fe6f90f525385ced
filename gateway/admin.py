from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from gateway.config import document as config_document
from gateway.config import services as config_services
from gateway.protocol.errors import GatewayError

from .chat.transcripts import message_text
from .models import ConfigDocument, ConfigRevision, Run, Session, TranscriptEntry


# --- config (operations.md §2; README D10: the form writes through the same service as config.apply) --------

def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class ConfigForm(forms.ModelForm):
    """The whole document as JSON, secrets shown as the sentinel (kept on save). Saving calls
    the config.apply service with the hash the page was loaded with: a stale page is refused."""

    text = forms.CharField(label="Document (JSON)", strip=False,
                           widget=forms.Textarea(attrs={"rows": 30, "cols": 110, "spellcheck": "false",
                                                        "style": "font-family: monospace"}),
                           help_text=f"Secrets show as {config_document.SENTINEL}: leave them so to keep the "
                                     "stored value. ${VAR} references are kept as written.")
    base_hash = forms.CharField(widget=forms.HiddenInput, required=False)
    actor = "admin"

    class Meta:
        model = ConfigDocument
        fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        snapshot = config_services.load()
        self.fields["text"].initial = config_services.public(snapshot)["raw"] or "{}\n"
        self.fields["base_hash"].initial = snapshot.hash

    def clean(self) -> dict[str, Any]:
        # The write happens here so that a refusal (stale hash, invalid document) is shown on the
        # form like any validation error; save_model then only picks up the stored row.
        data = super().clean()
        if "text" in data:
            try:
                config_services.replace(data["text"], base_hash=data.get("base_hash") or None, actor=self.actor,
                                        source="admin")
            except GatewayError as exc:
                if exc.reason == "CONFLICT":
                    raise ValidationError("The config changed since this page was loaded: reload it and "
                                          "make your change again.") from None
                issues = (exc.details or {}).get("errors") if isinstance(exc.details, dict) else None
                raise ValidationError([f"{i['path']}: {i['message']}" for i in issues] if issues
                                      else exc.message) from None
        return data


@admin.register(ConfigDocument)
class ConfigDocumentAdmin(admin.ModelAdmin):
    form = ConfigForm
    list_display = ("__str__", "revision", "updated")
    readonly_fields = ("hash", "revision", "updated")
    fields = ("text", "base_hash", "hash", "revision", "updated")

    @admin.display(description="updated")
    def updated(self, obj: ConfigDocument) -> str:
        return _when(obj.updated_at_ms)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type("ConfigForm", (form,), {"actor": f"admin:{request.user.get_username()}"})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not ConfigDocument.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ConfigDocument, form: Any, change: bool) -> None:
        stored = ConfigDocument.objects.get(name=config_services.NAME)  # written by the form
        obj.pk = stored.pk
        obj.refresh_from_db()


@admin.register(ConfigRevision)
class ConfigRevisionAdmin(admin.ModelAdmin):
    """The history of config writes; read-only, documents shown with secrets redacted."""

    list_display = ("id", "created", "actor", "source", "changes")
    list_filter = ("source",)
    search_fields = ("actor",)
    fields = ("created", "actor", "source", "previous_hash", "hash", "changes", "redacted_document")
    readonly_fields = fields

    @admin.display(description="time")
    def created(self, obj: ConfigRevision) -> str:
        return _when(obj.created_at_ms)

    @admin.display(description="changed paths")
    def changes(self, obj: ConfigRevision) -> str:
        paths = obj.changed_paths or []
        return ", ".join(paths[:8]) + (f" (+{len(paths) - 8})" if len(paths) > 8 else "") if paths else "-"

    @admin.display(description="document (secrets redacted)")
    def redacted_document(self, obj: ConfigRevision) -> str:
        text = json.dumps(config_document.redact(obj.document), indent=2, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- sessions, transcripts, runs (chat-sessions-cron.md §1; read-only: writes go through the RPC services) ---

TRANSCRIPT_PREVIEW = 50


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never edited here: sessions change through sessions.* (README D10)."""

    show_full_result_count = False  # no COUNT(*) over every transcript entry per page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _entry_text(entry: TranscriptEntry, limit: int = 400) -> str:
    if entry.type == "compaction":
        return "[compaction]"
    text = message_text(entry.message) or json.dumps((entry.message or {}).get("content"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _transcript_url(session_id: Any) -> str:
    return f"{reverse('admin:gateway_transcriptentry_changelist')}?session_id__exact={session_id}"


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = ("key", "label", "agent_id", "model", "input_tokens", "output_tokens", "updated", "transcript_link")
    list_filter = ("agent_id",)
    search_fields = ("key", "label", "display_name")
    readonly_fields = ("transcript",)

    @admin.display(description="updated", ordering="updated_at_ms")
    def updated(self, obj: Session) -> str:
        return _when(obj.updated_at_ms)

    @admin.display(description="transcript")
    def transcript_link(self, obj: Session) -> str:
        return format_html('<a href="{}">entries</a>', _transcript_url(obj.session_id))

    @admin.display(description=f"transcript (newest {TRANSCRIPT_PREVIEW} entries)")
    def transcript(self, obj: Session) -> str:
        entries = reversed(list(TranscriptEntry.objects.filter(session_id=obj.session_id, archived_reason__isnull=True)
                                .order_by("-seq")[:TRANSCRIPT_PREVIEW]))
        rows = format_html_join("", '<tr><td>{}</td><td>{}</td><td style="white-space: pre-wrap">{}</td></tr>',
                                ((e.seq, e.role or e.type, _entry_text(e)) for e in entries))
        return format_html('<table><tr><th>#</th><th>role</th><th>text</th></tr>{}</table>'
                           '<p><a href="{}">All entries of this transcript, archived ones too</a></p>',
                           rows, _transcript_url(obj.session_id))


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(ReadOnlyAdmin):
    """Filter one transcript with ?session_id__exact=<uuid> (the Session page links here); pages
    come from the (session_id, seq) index."""

    list_display = ("seq", "role", "text", "run_id", "archived_reason", "created")
    list_filter = ("archived_reason", "role", "type")
    search_fields = ("=session_id", "=run_id", "=entry_id")
    ordering = ("session_id", "seq")
    readonly_fields = ("pretty_message",)
    exclude = ("message",)

    @admin.display(description="text")
    def text(self, obj: TranscriptEntry) -> str:
        return _entry_text(obj, 160)

    @admin.display(description="created", ordering="created_at_ms")
    def created(self, obj: TranscriptEntry) -> str:
        return _when(obj.created_at_ms)

    @admin.display(description="message")
    def pretty_message(self, obj: TranscriptEntry) -> str:
        text = json.dumps(obj.message, indent=2, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("run_id", "kind", "session_key", "status", "stop_reason", "created", "started", "ended")
    list_filter = ("status", "kind")
    search_fields = ("=run_id", "session_key")

    @admin.display(description="created", ordering="created_at_ms")
    def created(self, obj: Run) -> str:
        return _when(obj.created_at_ms)

    @admin.display(description="started", ordering="started_at_ms")
    def started(self, obj: Run) -> str:
        return _when(obj.started_at_ms)

    @admin.display(description="ended", ordering="ended_at_ms")
    def ended(self, obj: Run) -> str:
        return _when(obj.ended_at_ms)


# --- outbound message log, channel accounts, skills (operations.md §5, §7, §8; read-only: writes go through the
# send / poll / channels.logout / skills.* services) ----------------------------------------------------------------

from .models import ChannelAccount, OutboundMessage, Skill, SpeechSettings  # noqa: E402  (kept with this section)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    list_display = ("created", "kind", "channel", "account_id", "to", "short_text", "status", "attempts", "message_id")
    list_filter = ("status", "channel", "kind")
    search_fields = ("to", "text", "=message_id", "=idempotency_key", "session_key")
    ordering = ("-created_at_ms", "-id")

    @admin.display(description="time", ordering="created_at_ms")
    def created(self, obj: OutboundMessage) -> str:
        return _when(obj.created_at_ms)

    @admin.display(description="text")
    def short_text(self, obj: OutboundMessage) -> str:
        text = obj.text or ""
        return text if len(text) <= 80 else text[:79] + "…"


@admin.register(ChannelAccount)
class ChannelAccountAdmin(ReadOnlyAdmin):
    list_display = ("channel", "account_id", "logged_out", "last_outbound", "last_error")
    list_filter = ("channel", "logged_out")

    @admin.display(description="last outbound", ordering="last_outbound_at_ms")
    def last_outbound(self, obj: ChannelAccount) -> str:
        return _when(obj.last_outbound_at_ms)


@admin.register(Skill)
class SkillAdmin(ReadOnlyAdmin):
    list_display = ("name", "skill_key", "description", "source_path", "updated")
    search_fields = ("name", "description")

    @admin.display(description="updated", ordering="updated_at_ms")
    def updated(self, obj: Skill) -> str:
        return _when(obj.updated_at_ms)


@admin.register(SpeechSettings)
class SpeechSettingsAdmin(ReadOnlyAdmin):
    """TTS preferences and voice-wake triggers; changed with tts.* and voicewake.set (events go with them)."""

    list_display = ("__str__", "tts_auto", "tts_provider", "wake_triggers")

from . import admin_operations  # noqa: E402,F401  (agents, agent files, mission, memory)
