"""Admin pages for agents, agent files, mission control and memory (operations part A). Every
write goes through the same service as the RPC method (README D10): the form calls it in
clean(), so a refusal shows on the form, and save_model only picks up the stored row."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.html import format_html

from gateway.agents import queries as agent_queries
from gateway.agents import services as agent_services
from gateway.mission import services as mission_services
from gateway.protocol.errors import GatewayError
from gateway.protocol.events import now_ms

from .models import Agent, AgentFile, MemoryEntry, MissionFile, MissionState


def _refused(exc: GatewayError) -> ValidationError:
    return ValidationError(exc.message)


class ServiceForm(forms.ModelForm):
    """A form whose clean() has already written through the service: the model-level checks
    (unique constraints against the row just written) would only contradict it."""

    def _post_clean(self) -> None:
        pass


class AgentForm(ServiceForm):
    class Meta:
        model = Agent
        fields = ("agent_id", "name", "workspace", "model")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent_id"].required = False
        self.fields["agent_id"].help_text = "derived from the name when the agent is created"
        if self.instance.pk:
            self.fields["agent_id"].disabled = True

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            if self.instance.pk:
                agent_services.update_agent(self.instance.agent_id, name=data.get("name"),
                                            workspace=data.get("workspace"), model=data.get("model") or "")
                self.saved_id = self.instance.agent_id
            else:
                self.saved_id = agent_services.create_agent(data.get("name") or "", data.get("workspace") or "",
                                                            model=data.get("model") or None)["agentId"]
        except GatewayError as exc:
            raise _refused(exc) from None
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ("agent_id", "name", "model", "workspace")
    search_fields = ("agent_id", "name")

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        stored = Agent.objects.get(agent_id=form.saved_id)
        obj.pk = stored.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        agent_services.delete_agent(obj.agent_id)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for agent in list(queryset):
            agent_services.delete_agent(agent.agent_id)


class AgentFileForm(ServiceForm):
    class Meta:
        model = AgentFile
        fields = ("agent_id", "name", "content")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "name" in self.fields:  # absent (read-only) once the file exists
            self.fields["name"] = forms.ChoiceField(choices=[(n, n) for n in agent_queries.ALLOWED_FILES])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        agent_id = self.instance.agent_id if self.instance.pk else data.get("agent_id") or ""
        name = self.instance.name if self.instance.pk else data.get("name") or ""
        try:
            result = agent_services.set_file(agent_id, name, data.get("content") or "")
        except GatewayError as exc:
            raise _refused(exc) from None
        self.saved = (result["agentId"], name.strip())
        return data


@admin.register(AgentFile)
class AgentFileAdmin(admin.ModelAdmin):
    form = AgentFileForm
    list_display = ("agent_id", "name", "size", "updated_at_ms")
    list_filter = ("name",)
    search_fields = ("agent_id", "content")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("agent_id", "name") if obj else ()

    def save_model(self, request: HttpRequest, obj: AgentFile, form: Any, change: bool) -> None:
        agent_id, name = form.saved
        obj.pk = AgentFile.objects.get(agent_id=agent_id, name=name).pk
        obj.refresh_from_db()


class MissionFileForm(ServiceForm):
    class Meta:
        model = MissionFile
        fields = ("file_name", "content")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        name = self.instance.file_name if self.instance.pk else data.get("file_name")
        try:
            self.saved = mission_services.set_file(name, data.get("content") or "")["file"]["fileName"]
        except GatewayError as exc:
            raise _refused(exc) from None
        return data


@admin.register(MissionFile)
class MissionFileAdmin(admin.ModelAdmin):
    form = MissionFileForm
    list_display = ("file_name", "updated_at_ms")
    search_fields = ("file_name", "content")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("file_name",) if obj else ()

    def save_model(self, request: HttpRequest, obj: MissionFile, form: Any, change: bool) -> None:
        obj.pk = MissionFile.objects.get(file_name=form.saved).pk
        obj.refresh_from_db()


@admin.register(MissionState)
class MissionStateAdmin(admin.ModelAdmin):
    """Shown here, changed through anima.mission.patch (its normalisation lives in the service)."""

    fields = ("document", "updated_at_ms")
    readonly_fields = fields

    @admin.display(description="state")
    def document(self, obj: MissionState) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', json.dumps(obj.state, indent=2))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MemoryEntry)
class MemoryEntryAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "updated_at_ms")
    list_filter = ("kind",)
    search_fields = ("name", "content")
    fields = ("kind", "name", "content")

    def save_model(self, request: HttpRequest, obj: MemoryEntry, form: Any, change: bool) -> None:
        at = now_ms()
        if not change:
            obj.created_at_ms = at
        obj.updated_at_ms = at
        super().save_model(request, obj, form, change)
