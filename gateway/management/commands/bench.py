"""`manage.py bench`: the gateway against a bare websockets server, plus chat fan-out and
chat.history figures (gateway/bench.py)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.bench import DEFAULT_SIZES, QUICK_SIZES, BenchError, format_report, run


class Command(BaseCommand):
    help = ("Benchmark the gateway (health round trips, 32 concurrent connections, handshakes) against a bare "
            "websockets server doing the same JSON work; reports server CPU per call and the ratios. Then, gateway "
            "only: chat delta fan-out of one run to 100 watching clients, and chat.history latency on a "
            "10,000-entry session against a 50-entry one.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quick", action="store_true", help="small counts (CI smoke run)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON (progress to stderr)")
        parser.add_argument("--repeat", type=int, default=None,
                            help="runs per measure and server, the median one reported (default 3; --quick: 1)")
        parser.add_argument("--cron", action="store_true",
                            help="only the cron scheduler's tick cost with 10,000 jobs, idle and with 100 due, "
                                 "against a bare indexed SELECT of the due rows (cron/bench.py)")
        parser.add_argument("--database-url", default="",
                            help="with --cron: measure on this (empty, scratch) database instead of a throw-away "
                                 "SQLite file, e.g. postgres://postgres@127.0.0.1:5432/anima_bench")

    def handle(self, *args: Any, **options: Any) -> None:
        sizes = QUICK_SIZES if options["quick"] else DEFAULT_SIZES
        if options["repeat"] is not None:
            if not 1 <= options["repeat"] <= 20:
                raise CommandError("--repeat must be between 1 and 20")
            sizes = replace(sizes, repeat=options["repeat"])

        def log(message: str) -> None:
            if options["verbosity"] > 0:
                print(f"bench: {message}", file=sys.stderr, flush=True)

        if options["cron"]:
            self.cron_bench(options, log)
            return
        try:
            report = run(sizes, settings.BASE_DIR, log)
        except KeyboardInterrupt:
            print("bench: interrupted; both servers stopped", file=sys.stderr)
            sys.exit(130)
        except BenchError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(format_report(report))

    def cron_bench(self, options: dict[str, Any], log: Any) -> None:
        from cron import bench

        try:
            report = bench.run(settings.BASE_DIR, jobs=1000 if options["quick"] else 10_000,
                               due=100, repeat=5 if options["quick"] else 15, database_url=options["database_url"],
                               log=log)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(report, indent=2) if options["json"] else bench.format_report(report))
