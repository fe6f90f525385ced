"""`manage.py gateway serve` runs the gateway under daphne with the options it needs;
`manage.py gateway call METHOD` calls a method and prints the response as JSON."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.protocol.netaddr import is_loopback


def daphne_args(bind: str, port: int) -> list[str]:
    """Daphne's defaults cap messages at 1 MiB and close sockets after a day: lift both to the
    gateway's advertised policy (README, "Daphne as deployed")."""
    limit = str(settings.ANIMA_MAX_PAYLOAD_BYTES)
    return ["-b", bind, "-p", str(port), "--websocket-max-message-size", limit, "--websocket-max-frame-size", limit,
            "--websocket_timeout", "-1", "--application-close-timeout", "5", "anima_site.asgi:application"]


class Command(BaseCommand):
    help = "Run the gateway (serve) or call one of its methods (call)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        serve = sub.add_parser("serve", help="run the gateway under daphne")
        serve.add_argument("--bind", default=settings.ANIMA_GATEWAY_BIND)
        serve.add_argument("--port", type=int, default=settings.ANIMA_GATEWAY_PORT)
        serve.add_argument("--quiet", action="store_true", help="do not print the URL and token")
        call = sub.add_parser("call", help="call a method and print the response as JSON")
        call.add_argument("method")
        call.add_argument("--params", default="{}", help="JSON object")
        call.add_argument("--url", default=None, help="ws://HOST:PORT (default: this gateway's bind and port)")
        call.add_argument("--token", default=None, help="gateway token (default: the configured one)")
        call.add_argument("--password", default=None)
        call.add_argument("--scopes", default=None, help="comma-separated (default: every operator scope)")
        call.add_argument("--timeout", type=float, default=60)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "serve":
            self.serve(options["bind"], options["port"], options["quiet"])
        else:
            sys.exit(self.call(options))

    # --- serve ---------------------------------------------------------------------------------

    def serve(self, bind: str, port: int, quiet: bool) -> None:
        self.check_port_free(bind, port)
        self.ensure_migrated()
        self.ensure_secret(bind)
        if not quiet:
            from gateway.protocol.handshake import auth_mode, auth_setting

            host = f"[{bind}]" if ":" in bind else bind
            self.stdout.write(f"ANIMA gateway on ws://{host}:{port}  (v3 dialect: ws://{host}:{port}/v3)")
            # The config document wins over the environment and the token file (the wizard sets it).
            mode, token = auth_mode(), auth_setting("token")
            if mode == "token" and token:
                where = "" if token == settings.ANIMA_GATEWAY_TOKEN else "  (gateway.auth.token in the config)"
                self.stdout.write(f"token:  {token}{where}")
            elif mode == "password":
                self.stdout.write("auth:   password (ANIMA_GATEWAY_PASSWORD or gateway.auth.password)")
            self.stdout.write(f"admin:  http://{host}:{port}/admin/   "
                              "(create a login: .venv/bin/python manage.py createsuperuser)")
            self.stdout.flush()
        from daphne.cli import CommandLineInterface

        CommandLineInterface().run(daphne_args(bind, port))

    def check_port_free(self, bind: str, port: int) -> None:
        """Fail before printing a banner that would point at someone else's server."""
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((bind, port))
            except OSError as exc:
                raise CommandError(f"cannot listen on {bind}:{port}: {exc.strerror}. Choose another port with "
                                   "--port or ANIMA_GATEWAY_PORT (e.g. ANIMA_GATEWAY_PORT=18800 make run).") from None

    def ensure_migrated(self) -> None:
        """A fresh state directory must not give a server that refuses every client. The embedded
        SQLite database (one process) is migrated here; a shared database is migrated once by the
        operator, because several processes starting at once would race on it."""
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        if not executor.migration_plan(executor.loader.graph.leaf_nodes()):
            return
        if connection.vendor != "sqlite":
            raise CommandError("the database has unapplied migrations: run "
                               "`.venv/bin/python manage.py migrate` once, then start the gateway processes")
        self.stdout.write("migrating the database")
        call_command("migrate", interactive=False, verbosity=0)

    def ensure_secret(self, bind: str) -> str:
        """Token mode by default: generate and keep a token on first start when none is set."""
        if settings.ANIMA_GATEWAY_PASSWORD:
            return ""
        if not settings.ANIMA_GATEWAY_TOKEN:
            token = secrets.token_hex(24)
            path = settings.GATEWAY_TOKEN_FILE
            path.write_text(token + "\n")
            path.chmod(0o600)
            settings.ANIMA_GATEWAY_TOKEN = token
            self.stdout.write(f"generated a gateway token (kept in {path.name} in the state directory)")
        if not settings.ANIMA_GATEWAY_TOKEN and not is_loopback(bind):
            raise CommandError("refusing to serve without a token or password on a non-loopback address")
        return settings.ANIMA_GATEWAY_TOKEN

    # --- call ----------------------------------------------------------------------------------

    def call(self, options: dict[str, Any]) -> int:
        from gateway.client import GatewayClient, RpcError

        try:
            params = json.loads(options["params"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc}") from None
        url = options["url"] or f"ws://{settings.ANIMA_GATEWAY_BIND}:{settings.ANIMA_GATEWAY_PORT}"
        from gateway.protocol.handshake import auth_setting

        # The secret in force: the config document's, else the environment's (or the token file's).
        token = options["token"] or auth_setting("token") or None
        password = options["password"] or auth_setting("password") or None
        scopes = options["scopes"].split(",") if options["scopes"] else None

        async def run() -> tuple[int, Any]:
            client = await GatewayClient.connect(url, token=token, scopes=scopes, password=password)
            try:
                frame = await client.request(options["method"], params, timeout=options["timeout"])
            finally:
                await client.close()
            return (0, frame["payload"]) if frame.get("ok") else (1, {"error": frame.get("error")})

        try:
            status, output = asyncio.run(run())
        except RpcError as err:
            status, output = 2, {"error": err.error, "during": "connect"}
        except (OSError, asyncio.TimeoutError) as exc:
            raise CommandError(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}") from None
        self.stdout.write(json.dumps(output, indent=2, ensure_ascii=False))
        return status
