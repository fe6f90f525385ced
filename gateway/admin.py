from django.contrib import admin

from .models import Session


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("key", "label", "agent_id", "model", "input_tokens", "output_tokens", "updated_at_ms")
    search_fields = ("key", "label")
