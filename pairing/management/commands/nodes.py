"""`manage.py nodes list|approve|reject|rename`: node pairing for headless operators, through the
same services as node.pair.* / node.rename and the Django admin (README D10)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pairing import queries, services

from ._cli import EVENTS_NOTE, cli_actor, dump_json, service, table, warn_if_undelivered, when


class Command(BaseCommand):
    help = "List, approve and reject node pairing requests; rename nodes. " + EVENTS_NOTE

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="pending node pairing requests and paired nodes")
        listing.add_argument("--json", action="store_true", help="print what node.pair.list returns")
        sub.add_parser("approve", help="approve a pending request; prints the node token (once)"
                       ).add_argument("request_id")
        sub.add_parser("reject", help="reject a pending request").add_argument("request_id")
        rename = sub.add_parser("rename", help="set a node's display name")
        rename.add_argument("node_id")
        rename.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"cmd_{options['action']}")(options)

    def cmd_list(self, options: dict[str, Any]) -> None:
        listing = queries.node_pairing_listing()
        if options["json"]:
            dump_json(self, listing)
            return
        self.stdout.write(f"Pending node pairing requests ({len(listing['pending'])})")
        self.stdout.write(table(
            ["REQUEST ID", "NODE ID", "NAME", "PLATFORM", "REMOTE IP", "REQUESTED"],
            [[p["requestId"], p["nodeId"], p.get("displayName"), p.get("platform"), p.get("remoteIp"),
              when(p["ts"])] for p in listing["pending"]]))
        self.stdout.write("")
        self.stdout.write(f"Paired nodes ({len(listing['paired'])})")
        self.stdout.write(table(
            ["NODE ID", "NAME", "PLATFORM", "VERSION", "APPROVED", "LAST CONNECTED"],
            [[n["nodeId"], n.get("displayName"), n.get("platform"), n.get("version"), when(n.get("approvedAtMs")),
              when(n.get("lastConnectedAtMs"))] for n in listing["paired"]]))

    def cmd_approve(self, options: dict[str, Any]) -> None:
        node, token = service(lambda: services.approve_node_pairing(options["request_id"],
                                                                    resolved_by=cli_actor()))
        self.stderr.write(f"approved {options['request_id']}: node {node.node_id}; its token is shown only now:")
        self.stdout.write(token)
        warn_if_undelivered(self, "no node.pair.resolved event")

    def cmd_reject(self, options: dict[str, Any]) -> None:
        request = service(lambda: services.reject_node_pairing(options["request_id"], resolved_by=cli_actor()))
        self.stdout.write(f"rejected {options['request_id']} (node {request.node_id})")
        warn_if_undelivered(self, "no node.pair.resolved event")

    def cmd_rename(self, options: dict[str, Any]) -> None:
        node = service(lambda: services.rename_node(options["node_id"], options["name"]))
        self.stdout.write(f"node {node.node_id} is now named {node.display_name!r}")
