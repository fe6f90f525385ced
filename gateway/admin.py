from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.html import format_html

from gateway.config import document as config_document
from gateway.config import services as config_services
from gateway.protocol.errors import GatewayError

from .models import ConfigDocument, ConfigRevision, Session


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("key", "label", "agent_id", "model", "input_tokens", "output_tokens", "updated_at_ms")
    search_fields = ("key", "label")


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
