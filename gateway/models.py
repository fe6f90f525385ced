"""Gateway-wide records. Sessions are the conversations the agent keeps; this is the part the
protocol core needs (listing, counts); the chat issue adds transcripts and runs."""

from __future__ import annotations

import uuid

from django.db import models


class Session(models.Model):
    key = models.CharField(max_length=300, unique=True, help_text="canonical key agent:<agentId>:<rest>")
    session_id = models.UUIDField(default=uuid.uuid4, unique=True)
    agent_id = models.CharField(max_length=100, default="main", db_index=True)
    label = models.CharField(max_length=200, null=True, blank=True, unique=True)
    model = models.CharField(max_length=200, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField(db_index=True)

    class Meta:
        ordering = ["-updated_at_ms"]

    def __str__(self) -> str:
        return self.label or self.key


class SystemEvent(models.Model):
    """Text queued for the next agent turn of a session (system-event, node exec events, cron
    systemEvent jobs). In the database so that no process loses one."""

    session_key = models.CharField(max_length=300, db_index=True)
    text = models.TextField()
    created_at_ms = models.BigIntegerField()
    consumed_at_ms = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["created_at_ms", "id"]

    def __str__(self) -> str:
        return self.text[:80]
