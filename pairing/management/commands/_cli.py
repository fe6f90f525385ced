"""What the `devices` and `nodes` commands share: the audit-trail actor, error mapping, tables,
and the honest note about where their events go."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gateway.protocol.errors import GatewayError

T = TypeVar("T")

EVENTS_NOTE = (
    "These commands call the same services as the RPC methods and the Django admin, so they write "
    "the same rows and emit the same events (device.pair.resolved, node.pair.resolved, closing the "
    "connections of a revoked token) once the change commits. The events travel through the channel "
    "layer: only with REDIS_URL (and the same ANIMA_REDIS_PREFIX) set as for the gateway do they reach "
    "a running gateway. In the embedded default (no REDIS_URL) the in-memory channel layer lives inside "
    "each process, so the database changes but the running gateway hears nothing: connected clients get "
    "no event and a revoked token's live connections stay open until they reconnect (then they are "
    "refused). To notify a running embedded gateway, call the method over its socket instead, e.g. "
    "`manage.py gateway call device.pair.approve --params '{\"requestId\": \"…\"}'`. Point the command "
    "at the gateway's database (same ANIMA_STATE_DIR or DATABASE_URL).")

UNDELIVERED = ("note: REDIS_URL is not set, so this process has its own in-memory channel layer: the running "
               "gateway was not notified ({what}). See `--help`.")


def cli_actor() -> str:
    """Who resolved something, for the audit trail: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def service(call: Callable[[], T]) -> T:
    """Run a service call; its refusal becomes a CommandError (non-zero exit) with its message."""
    try:
        return call()
    except GatewayError as exc:
        raise CommandError(f"{exc.message} ({exc.reason})") from exc


def warn_if_undelivered(command: BaseCommand, what: str) -> None:
    if not settings.REDIS_URL:
        command.stderr.write(UNDELIVERED.format(what=what))


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table; "-" for empty cells, "(none)" under the headers when there are no rows."""
    cells = [[str(c) if c not in (None, "", []) else "-" for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines if cells else lines + ["(none)"])


def dump_json(command: BaseCommand, data: Any) -> None:
    command.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))
