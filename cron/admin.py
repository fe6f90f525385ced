"""Cron jobs and their run log in the Django admin. Saving, deleting and *Run now* call the same
services as cron.add / cron.update / cron.remove / cron.run (README D10), so they validate the
same way and emit the same `cron` events; the scheduling state and the lease are read-only."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gateway.protocol.errors import GatewayError
from gateway.protocol.events import now_ms

from . import schemas, services
from .models import CronJob, CronRun
from .scheduler import run_job


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def form_spec(data: dict[str, Any], *, clearing: bool = False) -> dict[str, Any]:
    """The admin form's fields as a cron.add document (wire names); `clearing` (an edit) sends
    emptied optional fields as null, which cron.update reads as "clear"."""
    spec: dict[str, Any] = {"name": data.get("name"), "enabled": bool(data.get("enabled")),
                            "schedule": data.get("schedule"), "sessionTarget": data.get("session_target"),
                            "wakeMode": data.get("wake_mode"), "payload": data.get("payload")}
    optional = {"description": data.get("description") or None, "agentId": data.get("agent_id") or None,
                "deleteAfterRun": data.get("delete_after_run"), "delivery": data.get("delivery")}
    spec.update({k: v for k, v in optional.items() if v is not None or clearing})
    return spec


class CronJobForm(forms.ModelForm):
    class Meta:
        model = CronJob
        fields = ["name", "description", "agent_id", "enabled", "delete_after_run", "schedule", "session_target",
                  "wake_mode", "payload", "delivery"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            spec = schemas.check(schemas.coerce(form_spec(data)), "job")
            services.check_schedule(spec.wire()["schedule"], now_ms())
        except GatewayError as exc:
            raise forms.ValidationError(exc.message) from None
        return data


@admin.register(CronJob)
class CronJobAdmin(admin.ModelAdmin):
    form = CronJobForm
    list_display = ("name", "enabled", "schedule_text", "session_target", "next_run", "last_run", "last_status",
                    "consecutive_errors")
    list_filter = ("enabled", "schedule_kind", "session_target", "last_status")
    search_fields = ("name", "description")
    actions = ["run_now", "delete_jobs"]
    readonly_fields = ("id", "next_run", "running", "last_run", "last_status", "last_error", "last_duration_ms",
                       "consecutive_errors", "schedule_error_count", "lease_owner", "lease_expires")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # deletes without events; delete_jobs goes through the service
        return found

    @admin.display(description="schedule")
    def schedule_text(self, obj: CronJob) -> str:
        return json.dumps(obj.schedule, separators=(",", ":"))

    @admin.display(description="next run")
    def next_run(self, obj: CronJob) -> str:
        return when(obj.next_run_at_ms)

    @admin.display(description="running since")
    def running(self, obj: CronJob) -> str:
        return when(obj.running_at_ms)

    @admin.display(description="last run")
    def last_run(self, obj: CronJob) -> str:
        return when(obj.last_run_at_ms)

    @admin.display(description="lease expires")
    def lease_expires(self, obj: CronJob) -> str:
        return when(obj.lease_expires_at_ms)

    def save_model(self, request: HttpRequest, obj: CronJob, form: forms.ModelForm, change: bool) -> None:
        spec = form_spec(form.cleaned_data, clearing=change)
        if change:
            saved = services.update_job(str(obj.pk), spec, now_ms())
        else:
            saved = services.add_job(spec, now_ms())
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: CronJob) -> None:
        services.remove_job(str(obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for job_id in list(queryset.values_list("pk", flat=True)):
            services.remove_job(str(job_id))

    @admin.action(description="Delete selected jobs")
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.count()
        self.delete_queryset(request, queryset)
        self.message_user(request, f"Deleted {count} job(s).", messages.SUCCESS)

    @admin.action(description="Run now")
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        """cron.run (force) for each selected job: the same claim, run and result path."""
        owner = f"admin:{request.user.get_username()}"
        for job in queryset:
            try:
                result = async_to_sync(run_job)(str(job.pk), "force", owner=owner)
            except GatewayError as exc:
                self.message_user(request, f"{job.name}: {exc.message}", messages.ERROR)
                continue
            if result.get("ran"):
                self.message_user(request, f"{job.name}: ran", messages.SUCCESS)
            else:
                self.message_user(request, f"{job.name}: not run ({result.get('reason')})", messages.WARNING)


@admin.register(CronRun)
class CronRunAdmin(admin.ModelAdmin):
    """The run log is written by runs only."""

    list_display = ("job_id", "finished", "status", "duration_ms", "summary", "error", "owner")
    list_filter = ("status",)
    search_fields = ("job_id", "summary", "error", "session_key")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="finished")
    def finished(self, obj: CronRun) -> str:
        return when(obj.ts)
