"""`manage.py devices list|approve|reject|revoke|rotate`: device pairing for headless operators,
through the same services as device.pair.* / device.token.* and the Django admin (README D10)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pairing import queries, services

from ._cli import EVENTS_NOTE, cli_actor, dump_json, service, table, warn_if_undelivered, when


class Command(BaseCommand):
    help = "List, approve and reject device pairing requests; revoke or rotate device tokens. " + EVENTS_NOTE

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="pending pairing requests and paired devices")
        listing.add_argument("--json", action="store_true", help="print what device.pair.list returns")
        for name, text in (("approve", "approve a pending request"), ("reject", "reject a pending request")):
            sub.add_parser(name, help=text).add_argument("request_id")
        revoke = sub.add_parser("revoke", help="revoke a device token; its live connections are closed "
                                "(on the running gateway only with REDIS_URL, see above)")
        revoke.add_argument("device_id", help="as shown by `devices list`")
        revoke.add_argument("--role", default="operator", help="default: operator")
        rotate = sub.add_parser("rotate", help="mint a new device token and print it (once)")
        rotate.add_argument("device_id", help="as shown by `devices list`")
        rotate.add_argument("--role", default="operator", help="default: operator")
        rotate.add_argument("--scopes", default=None,
                            help="comma-separated; default: the token's current scopes (never beyond the approval)")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"cmd_{options['action']}")(options)

    def cmd_list(self, options: dict[str, Any]) -> None:
        listing = queries.pairing_listing()
        if options["json"]:
            dump_json(self, listing)
            return
        self.stdout.write(f"Pending pairing requests ({len(listing['pending'])})")
        self.stdout.write(table(
            ["REQUEST ID", "DEVICE ID", "NAME", "ROLE", "SCOPES", "REMOTE IP", "REQUESTED"],
            [[p["requestId"], p["deviceId"], p.get("displayName"), p.get("role"), ",".join(p["scopes"]),
              p.get("remoteIp"), when(p["ts"])] for p in listing["pending"]]))
        self.stdout.write("")
        self.stdout.write(f"Paired devices ({len(listing['paired'])})")
        self.stdout.write(table(
            ["DEVICE ID", "NAME", "PLATFORM", "ROLES", "SCOPES", "TOKENS", "APPROVED"],
            [[d["deviceId"], d.get("displayName"), d.get("platform"), ",".join(d["roles"]), ",".join(d["scopes"]),
              ",".join(t["role"] + (" (revoked)" if t.get("revokedAtMs") else "") for t in d["tokens"]),
              when(d.get("approvedAtMs"))] for d in listing["paired"]]))

    def cmd_approve(self, options: dict[str, Any]) -> None:
        # approver_scopes=None: whoever runs manage.py owns the gateway and may grant any scope (D5).
        device = service(lambda: services.approve_pairing(options["request_id"], approver_scopes=None,
                                                          resolved_by=cli_actor()))
        self.stdout.write(f"approved {options['request_id']}: device {device.device_id} "
                          f"(role {device.role}, scopes {','.join(device.scopes) or '-'}); "
                          "it receives its device token when it connects again")
        warn_if_undelivered(self, "no device.pair.resolved event")

    def cmd_reject(self, options: dict[str, Any]) -> None:
        request = service(lambda: services.reject_pairing(options["request_id"], resolved_by=cli_actor()))
        self.stdout.write(f"rejected {options['request_id']} (device {request.device_id})")
        warn_if_undelivered(self, "no device.pair.resolved event")

    def cmd_revoke(self, options: dict[str, Any]) -> None:
        row = service(lambda: services.revoke_device_token(options["device_id"], options["role"]))
        self.stdout.write(f"revoked the {row.role} token of device {options['device_id']}")
        warn_if_undelivered(self, "its live connections were not closed; they are refused when they reconnect")

    def cmd_rotate(self, options: dict[str, Any]) -> None:
        scopes = None if options["scopes"] is None else [s for s in options["scopes"].split(",") if s.strip()]
        token, row = service(lambda: services.rotate_device_token(options["device_id"], options["role"], scopes))
        self.stderr.write(f"new {row.role} token for device {options['device_id']} "
                          f"(scopes {','.join(row.scopes) or '-'}); it is shown only now:")
        self.stdout.write(token)
