"""Scheduled jobs and their run log (chat-sessions-cron.md §5.1, §5.5, §5.7).

A job's scheduling state lives in columns, so the due scan is one indexed query and a claim is
one conditional UPDATE (§5.8): `running_at_ms` marks a run in flight, `lease_*` say which
process owns it and until when; every write of a result must carry the lease token."""

from __future__ import annotations

import uuid

from django.db import models


class CronJob(models.Model):
    class Kind(models.TextChoices):
        AT = "at"
        EVERY = "every"
        CRON = "cron"

    class Target(models.TextChoices):
        MAIN = "main"
        ISOLATED = "isolated"

    class WakeMode(models.TextChoices):
        NOW = "now"
        NEXT_HEARTBEAT = "next-heartbeat"

    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        SKIPPED = "skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    agent_id = models.CharField(max_length=64, blank=True, help_text="empty: the default agent")
    enabled = models.BooleanField(default=True)
    delete_after_run = models.BooleanField(null=True, blank=True, help_text="one-shot: delete after an ok run")

    schedule = models.JSONField(help_text='{"kind":"at","at":ISO} | {"kind":"every","everyMs":N} | '
                                          '{"kind":"cron","expr":"m h dom mon dow","tz":"Europe/Berlin"}')
    schedule_kind = models.CharField(max_length=10, choices=Kind.choices, editable=False)
    tz = models.CharField(max_length=64, blank=True, editable=False, help_text="IANA zone of a cron schedule")
    session_target = models.CharField(max_length=10, choices=Target.choices)
    wake_mode = models.CharField(max_length=20, choices=WakeMode.choices, default=WakeMode.NOW)
    payload = models.JSONField(help_text='{"kind":"systemEvent","text":…} | {"kind":"agentTurn","message":…}')
    delivery = models.JSONField(null=True, blank=True)

    next_run_at_ms = models.BigIntegerField(null=True, blank=True, db_index=True)
    running_at_ms = models.BigIntegerField(null=True, blank=True)
    last_run_at_ms = models.BigIntegerField(null=True, blank=True)
    last_status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    last_error = models.TextField(blank=True)
    last_duration_ms = models.BigIntegerField(null=True, blank=True)
    consecutive_errors = models.IntegerField(default=0)
    schedule_error_count = models.IntegerField(default=0)

    lease_owner = models.CharField(max_length=200, blank=True, help_text="process running it")
    lease_token = models.CharField(max_length=64, blank=True)
    lease_expires_at_ms = models.BigIntegerField(null=True, blank=True)

    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()

    class Meta:
        verbose_name = "cron job"
        ordering = ["next_run_at_ms", "created_at_ms"]
        indexes = [models.Index(fields=["enabled", "next_run_at_ms"], name="cron_job_due"),
                   models.Index(fields=["lease_expires_at_ms"], name="cron_job_lease")]

    def __str__(self) -> str:
        return self.name


class CronRun(models.Model):
    """One finished run (§5.5 run log entry). `job_id` is no foreign key: entries outlive their
    job until pruned (the newest 2000 per job are kept)."""

    job_id = models.UUIDField()
    ts = models.BigIntegerField(help_text="when the run finished (ms)")
    status = models.CharField(max_length=10, choices=CronJob.Status.choices)
    error = models.TextField(blank=True)
    summary = models.TextField(blank=True)
    session_id = models.CharField(max_length=64, blank=True)
    session_key = models.CharField(max_length=300, blank=True)
    run_at_ms = models.BigIntegerField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    next_run_at_ms = models.BigIntegerField(null=True, blank=True)
    owner = models.CharField(max_length=200, blank=True, help_text="process that ran it")

    class Meta:
        verbose_name = "cron run"
        ordering = ["ts", "id"]
        indexes = [models.Index(fields=["job_id", "ts"], name="cron_run_job_ts")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.status} @{self.ts}"
