"""Operators see devices and pairing requests here. Token strings are never stored, so never shown."""

from __future__ import annotations

from django.contrib import admin

from .models import Device, DeviceToken, PairingRequest


class DeviceTokenInline(admin.TabularInline):
    model = DeviceToken
    extra = 0
    can_delete = False
    fields = ("role", "scopes", "created_at_ms", "rotated_at_ms", "revoked_at_ms", "last_used_at_ms")
    readonly_fields = fields


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("device_id", "display_name", "platform", "role", "scopes", "remote_ip", "approved_at_ms")
    search_fields = ("device_id", "display_name")
    readonly_fields = ("device_id", "public_key", "created_at_ms", "approved_at_ms")
    inlines = [DeviceTokenInline]


@admin.register(PairingRequest)
class PairingRequestAdmin(admin.ModelAdmin):
    list_display = ("request_id", "display_name", "device_id", "role", "scopes", "remote_ip", "status", "ts")
    list_filter = ("status", "role")
    search_fields = ("device_id", "display_name")
    readonly_fields = [f.name for f in PairingRequest._meta.fields]
