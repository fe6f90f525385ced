"""The operator's console: approve or reject devices and nodes, revoke or rotate device tokens,
rename nodes and decide exec approvals. Every action calls the service the RPC method calls
(README D10), so it writes the same rows and emits the same events after commit.

Resolved requests and decided approvals stay listed (the audit trail) and are read-only. Token
strings are never stored: a freshly minted one is shown once, in the page the action answers
with (the message is rendered in that same response, so it never lands in the message cookie
or the session), and nowhere else."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, OrderBy, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from gateway.protocol.errors import GatewayError
from gateway.protocol.events import now_ms

from . import approvals, services
from .models import Device, DeviceToken, ExecApproval, Node, NodePairingRequest, PairingRequest
from .queries import PENDING_TTL_MS

TOKEN_PAGE = "admin/pairing/issued_tokens.html"


def admin_actor(request: HttpRequest) -> str:
    """Who resolved something, for the audit trail."""
    return f"admin:{request.user.get_username()}"


def when(ms: int | None) -> str:
    """Epoch milliseconds as a UTC time for humans ("-" when unset)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def first(condition: Q) -> OrderBy:
    """Ordering that puts the rows matching `condition` (e.g. still waiting for a decision) first."""
    return Case(When(condition, then=Value(0)), default=Value(1), output_field=IntegerField()).asc()


class OperatorAdmin(admin.ModelAdmin):
    """Nothing is added or deleted here: rows are created by the protocol and kept for the audit
    trail. Actions need the model's change permission (`has_operate_permission`)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def each(self, request: HttpRequest, objects: Iterable[Any], act: Callable[[Any], str | None],
             label: Callable[[Any], str] = str) -> int:
        """Run `act` (one service call) per selected object. A refusal, such as a request resolved
        meanwhile, becomes an error message for that object instead of a 500; returns successes."""
        done = 0
        for obj in objects:
            try:
                note = act(obj)
            except GatewayError as exc:
                self.message_user(request, f"{label(obj)}: {exc.message}", messages.ERROR)
                continue
            done += 1
            if note:
                self.message_user(request, note, messages.SUCCESS)
        return done

    def token_page(self, request: HttpRequest, title: str, issued: list[str]) -> HttpResponse:
        """Show new tokens once: as messages rendered in this response, never stored or cached."""
        for line in issued:
            self.message_user(request, line, messages.WARNING)
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.opts,
                   "changelist_url": request.get_full_path(), "issued": issued}
        response = render(request, TOKEN_PAGE, context)
        add_never_cache_headers(response)
        return response


class ResolvableRequestAdmin(OperatorAdmin):
    """Pairing requests (devices and nodes): live pending ones first, all read-only."""

    actions = ["approve", "reject"]
    list_filter = ("status",)

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        live = Q(status=PairingRequest.Status.PENDING, ts__gte=now_ms() - PENDING_TTL_MS)
        return [first(live), "-ts"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="state", ordering="status")
    def state(self, obj: PairingRequest | NodePairingRequest) -> str:
        if obj.status == PairingRequest.Status.PENDING and obj.ts < now_ms() - PENDING_TTL_MS:
            return "expired"
        return obj.status

    @admin.display(description="requested", ordering="ts")
    def requested(self, obj: PairingRequest | NodePairingRequest) -> str:
        return when(obj.ts)

    @admin.display(description="resolved", ordering="resolved_at_ms")
    def resolved(self, obj: PairingRequest | NodePairingRequest) -> str:
        return when(obj.resolved_at_ms)


# --- devices -----------------------------------------------------------------------------------

class DeviceTokenInline(admin.TabularInline):
    """Token records: metadata only, the hash is never shown."""

    model = DeviceToken
    extra = 0
    can_delete = False
    fields = ("role", "scopes", "created", "rotated", "revoked", "last_used")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="created")
    def created(self, obj: DeviceToken) -> str:
        return when(obj.created_at_ms)

    @admin.display(description="rotated")
    def rotated(self, obj: DeviceToken) -> str:
        return when(obj.rotated_at_ms)

    @admin.display(description="revoked")
    def revoked(self, obj: DeviceToken) -> str:
        return when(obj.revoked_at_ms)

    @admin.display(description="last used")
    def last_used(self, obj: DeviceToken) -> str:
        return when(obj.last_used_at_ms)


@admin.register(Device)
class DeviceAdmin(OperatorAdmin):
    """Paired devices, read-only: scopes change only through pairing, tokens only through the
    actions below (there is no service that deletes a device, so neither does the admin)."""

    list_display = ("device_id", "display_name", "platform", "roles", "scopes", "token_state", "remote_ip",
                    "approved")
    search_fields = ("device_id", "display_name")
    inlines = [DeviceTokenInline]
    actions = ["revoke_tokens", "rotate_tokens"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("tokens")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Device._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="tokens")
    def token_state(self, obj: Device) -> str:
        rows = sorted(obj.tokens.all(), key=lambda t: t.role)
        return ", ".join(f"{t.role}{' (revoked)' if t.revoked_at_ms else ''}" for t in rows) or "-"

    @admin.display(description="approved", ordering="approved_at_ms")
    def approved(self, obj: Device) -> str:
        return when(obj.approved_at_ms)

    @admin.action(description="Revoke token (every role; closes live connections)", permissions=["operate"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        for device in queryset:
            live = [t.role for t in sorted(device.tokens.all(), key=lambda t: t.role) if t.revoked_at_ms is None]
            if not live:
                self.message_user(request, f"{device}: no live token to revoke", messages.WARNING)
                continue

            def revoke(role: str, d: Device = device) -> str:
                services.revoke_device_token(d.device_id, role)
                return f"{d}: {role} token revoked; its live connections are closed"

            self.each(request, live, revoke, label=lambda role, d=device: f"{d} ({role})")

    @admin.action(description="Rotate token (every role; the new token is shown once)", permissions=["operate"])
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        issued: list[str] = []
        for device in queryset:
            roles = sorted({t.role for t in device.tokens.all()} | set(device.roles or []))

            def rotate(role: str, d: Device = device) -> None:
                token, row = services.rotate_device_token(d.device_id, role)
                issued.append(f"{d} ({d.device_id[:12]}…), role {row.role}, scopes "
                              f"{', '.join(row.scopes) or '-'}: {token}")

            self.each(request, roles, rotate, label=lambda role, d=device: f"{d} ({role})")
        if not issued:
            return None
        return self.token_page(request, "New device tokens", issued)


@admin.register(PairingRequest)
class PairingRequestAdmin(ResolvableRequestAdmin):
    list_display = ("request_id", "display_name", "device_id", "role", "scopes", "remote_ip", "state",
                    "requested", "resolved", "resolved_by")
    list_filter = ("status", "role")
    search_fields = ("device_id", "display_name", "request_id")

    @admin.action(description="Approve selected pairing requests", permissions=["operate"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        def approve_one(r: PairingRequest) -> str:
            # approver_scopes=None: an admin login is owner-level and may grant any scope (D5).
            services.approve_pairing(str(r.request_id), approver_scopes=None, resolved_by=admin_actor(request))
            return f"{r.display_name or r.device_id[:12]}: approved ({r.role}; {', '.join(r.scopes) or 'no scopes'})"

        self.each(request, queryset, approve_one)

    @admin.action(description="Reject selected pairing requests", permissions=["operate"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        def reject_one(r: PairingRequest) -> str:
            services.reject_pairing(str(r.request_id), resolved_by=admin_actor(request))
            return f"{r.display_name or r.device_id[:12]}: rejected"

        self.each(request, queryset, reject_one)


# --- nodes -------------------------------------------------------------------------------------

class NodeForm(forms.ModelForm):
    class Meta:
        model = Node
        fields = ("display_name",)

    def clean_display_name(self) -> str:
        name = (self.cleaned_data.get("display_name") or "").strip()
        if not name:
            raise forms.ValidationError("A display name is required.")
        return name


@admin.register(Node)
class NodeAdmin(OperatorAdmin):
    """Known nodes. Only the display name is editable, through services.rename_node; the token
    hash is never shown."""

    form = NodeForm
    list_display = ("node_id", "display_name", "platform", "paired", "last_connected")
    search_fields = ("node_id", "display_name")
    fields = ("node_id", "display_name", "platform", "version", "core_version", "ui_version", "device_family",
              "model_identifier", "caps", "commands", "permissions", "bins", "remote_ip", "created", "approved",
              "last_connected")
    readonly_fields = tuple(f for f in fields if f != "display_name")

    @admin.display(description="paired", boolean=True, ordering="approved_at_ms")
    def paired(self, obj: Node) -> bool:
        return obj.approved_at_ms is not None

    @admin.display(description="last connected", ordering="last_connected_at_ms")
    def last_connected(self, obj: Node) -> str:
        return when(obj.last_connected_at_ms)

    @admin.display(description="created")
    def created(self, obj: Node) -> str:
        return when(obj.created_at_ms)

    @admin.display(description="approved")
    def approved(self, obj: Node) -> str:
        return when(obj.approved_at_ms)

    def save_model(self, request: HttpRequest, obj: Node, form: forms.ModelForm, change: bool) -> None:
        """The same write as node.rename (never a plain save of the whole row)."""
        if "display_name" not in form.changed_data:
            return
        try:
            services.rename_node(obj.node_id, form.cleaned_data["display_name"])
        except GatewayError as exc:
            self.message_user(request, f"{obj.node_id}: {exc.message}", messages.ERROR)


@admin.register(NodePairingRequest)
class NodePairingRequestAdmin(ResolvableRequestAdmin):
    list_display = ("request_id", "node_id", "display_name", "platform", "remote_ip", "state", "requested",
                    "resolved", "resolved_by")
    search_fields = ("node_id", "display_name", "request_id")

    @admin.action(description="Approve selected node pairing requests (the token is shown once)",
                  permissions=["operate"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        issued: list[str] = []

        def approve_one(r: NodePairingRequest) -> None:
            node, token = services.approve_node_pairing(str(r.request_id), resolved_by=admin_actor(request))
            issued.append(f"node {node.node_id} ({node.display_name or 'no name'}) approved; node token: {token}")

        self.each(request, queryset, approve_one)
        if not issued:
            return None
        return self.token_page(request, "Node tokens", issued)

    @admin.action(description="Reject selected node pairing requests", permissions=["operate"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        def reject_one(r: NodePairingRequest) -> str:
            services.reject_node_pairing(str(r.request_id), resolved_by=admin_actor(request))
            return f"node {r.node_id}: rejected"

        self.each(request, queryset, reject_one)


# --- exec approvals ------------------------------------------------------------------------------

@admin.register(ExecApproval)
class ExecApprovalAdmin(OperatorAdmin):
    """Requests to run a command: undecided ones first; decided and expired ones stay listed."""

    list_display = ("id", "command", "host", "agent_id", "state", "created", "expires", "resolved_by")
    list_filter = ("settled", "decision", "host")
    search_fields = ("id", "command", "agent_id", "session_key")
    actions = ["allow_once", "allow_always", "deny"]

    def get_ordering(self, request: HttpRequest) -> list[Any]:
        return [first(Q(settled=False, expires_at_ms__gt=now_ms())), "-created_at_ms"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ExecApproval._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="state", ordering="settled")
    def state(self, obj: ExecApproval) -> str:
        if obj.decision:
            return obj.decision
        return "expired" if obj.settled or obj.expires_at_ms <= now_ms() else "pending"

    @admin.display(description="created", ordering="created_at_ms")
    def created(self, obj: ExecApproval) -> str:
        return when(obj.created_at_ms)

    @admin.display(description="expires", ordering="expires_at_ms")
    def expires(self, obj: ExecApproval) -> str:
        return when(obj.expires_at_ms)

    def decide(self, request: HttpRequest, queryset: QuerySet, decision: str) -> None:
        def decide_one(a: ExecApproval) -> str:
            approvals.resolve_approval(a.id, decision, resolved_by=admin_actor(request))
            return f"{a.command[:80]}: {decision}"

        self.each(request, queryset, decide_one)

    @admin.action(description="Allow once", permissions=["operate"])
    def allow_once(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.decide(request, queryset, ExecApproval.Decision.ALLOW_ONCE.value)

    @admin.action(description="Allow always", permissions=["operate"])
    def allow_always(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.decide(request, queryset, ExecApproval.Decision.ALLOW_ALWAYS.value)

    @admin.action(description="Deny", permissions=["operate"])
    def deny(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.decide(request, queryset, ExecApproval.Decision.DENY.value)
