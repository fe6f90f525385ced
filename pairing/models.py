"""Paired devices, their tokens (hashed) and pairing requests (README D7: all in the database).
Times are epoch milliseconds, as on the wire."""

from __future__ import annotations

import uuid

from django.db import models


class Device(models.Model):
    device_id = models.CharField(primary_key=True, max_length=64, help_text="hex SHA-256 of the public key")
    public_key = models.CharField(max_length=128, help_text="raw Ed25519 key, base64url")
    display_name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=100, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    client_mode = models.CharField(max_length=100, blank=True)
    role = models.CharField(max_length=20, blank=True, help_text="last role it connected with")
    roles = models.JSONField(default=list)
    scopes = models.JSONField(default=list)
    remote_ip = models.CharField(max_length=64, blank=True)
    created_at_ms = models.BigIntegerField()
    approved_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["-approved_at_ms"]

    def __str__(self) -> str:
        return self.display_name or self.device_id[:12]


class DeviceToken(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="tokens")
    role = models.CharField(max_length=20)
    token_hash = models.CharField(max_length=64, help_text="SHA-256 of the token; the token itself is never stored")
    scopes = models.JSONField(default=list)
    created_at_ms = models.BigIntegerField()
    rotated_at_ms = models.BigIntegerField(null=True, blank=True)
    revoked_at_ms = models.BigIntegerField(null=True, blank=True)
    last_used_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "role"], name="one_token_per_device_role")]

    def __str__(self) -> str:
        return f"{self.device_id[:12]}/{self.role}"


class PairingRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    request_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    device_id = models.CharField(max_length=64, db_index=True)
    public_key = models.CharField(max_length=128)
    display_name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=100, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    client_mode = models.CharField(max_length=100, blank=True)
    role = models.CharField(max_length=20)
    scopes = models.JSONField(default=list)
    remote_ip = models.CharField(max_length=64, blank=True)
    silent = models.BooleanField(default=False)
    is_repair = models.BooleanField(default=False)
    ts = models.BigIntegerField(help_text="created, epoch ms")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    resolved_at_ms = models.BigIntegerField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-ts"]

    def __str__(self) -> str:
        return f"{self.display_name or self.device_id[:12]} ({self.status})"
