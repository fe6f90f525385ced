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


class Node(models.Model):
    """A node the gateway knows: seen on a node-role connect, and/or paired through node.pair.*
    (the gateway-owned node store, auth-and-pairing.md §5.1). Its token is kept only as a hash."""

    node_id = models.CharField(primary_key=True, max_length=200)
    display_name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=100, blank=True)
    version = models.CharField(max_length=100, blank=True)
    core_version = models.CharField(max_length=100, blank=True)
    ui_version = models.CharField(max_length=100, blank=True)
    device_family = models.CharField(max_length=100, blank=True)
    model_identifier = models.CharField(max_length=100, blank=True)
    caps = models.JSONField(default=list)
    commands = models.JSONField(default=list)
    permissions = models.JSONField(default=dict, blank=True)
    bins = models.JSONField(default=list, blank=True)
    remote_ip = models.CharField(max_length=64, blank=True)
    token_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the node token")
    created_at_ms = models.BigIntegerField()
    approved_at_ms = models.BigIntegerField(null=True, blank=True, help_text="set when paired via node.pair")
    last_connected_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["node_id"]

    def __str__(self) -> str:
        return self.display_name or self.node_id


class NodePairingRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    request_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    node_id = models.CharField(max_length=200, db_index=True)
    display_name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=100, blank=True)
    version = models.CharField(max_length=100, blank=True)
    core_version = models.CharField(max_length=100, blank=True)
    ui_version = models.CharField(max_length=100, blank=True)
    device_family = models.CharField(max_length=100, blank=True)
    model_identifier = models.CharField(max_length=100, blank=True)
    caps = models.JSONField(default=list)
    commands = models.JSONField(default=list)
    permissions = models.JSONField(default=dict, blank=True)
    remote_ip = models.CharField(max_length=64, blank=True)
    silent = models.BooleanField(default=False)
    is_repair = models.BooleanField(default=False)
    ts = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    resolved_at_ms = models.BigIntegerField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-ts"]

    def __str__(self) -> str:
        return f"{self.display_name or self.node_id} ({self.status})"


class ExecApproval(models.Model):
    """One request to run a command, and its decision (auth-and-pairing.md §6.1). Kept after it
    is decided or expires, for the audit trail."""

    class Decision(models.TextChoices):
        ALLOW_ONCE = "allow-once"
        ALLOW_ALWAYS = "allow-always"
        DENY = "deny"

    id = models.CharField(primary_key=True, max_length=200)
    command = models.TextField()
    cwd = models.TextField(null=True, blank=True)
    host = models.CharField(max_length=100, null=True, blank=True)
    security = models.CharField(max_length=50, null=True, blank=True)
    ask = models.CharField(max_length=50, null=True, blank=True)
    agent_id = models.CharField(max_length=100, null=True, blank=True)
    resolved_path = models.TextField(null=True, blank=True)
    session_key = models.CharField(max_length=300, null=True, blank=True)
    created_at_ms = models.BigIntegerField()
    expires_at_ms = models.BigIntegerField(db_index=True)
    requested_by_conn_id = models.CharField(max_length=64, blank=True)
    requested_by_device_id = models.CharField(max_length=64, blank=True)
    requested_by_client_id = models.CharField(max_length=200, blank=True)
    settled = models.BooleanField(default=False, db_index=True, help_text="decided or expired")
    decision = models.CharField(max_length=20, choices=Decision.choices, null=True, blank=True)
    resolved_at_ms = models.BigIntegerField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        ordering = ["-created_at_ms"]

    def __str__(self) -> str:
        return f"{self.command[:60]} ({self.decision or ('expired' if self.settled else 'pending')})"


class ExecApprovalPolicy(models.Model):
    """The exec-approvals policy document (one row). The socket token is stored here and never
    returned by exec.approvals.get."""

    document = models.JSONField(default=dict)
    socket_token = models.CharField(max_length=100, blank=True)
    updated_at_ms = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return "exec approvals policy"
