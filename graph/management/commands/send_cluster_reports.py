from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from graph.reports import RunSummary, run_reports

logger = logging.getLogger("exchange.reports")


class Command(BaseCommand):
    help = (
        "Queue the cluster reports and analysts' digests that are due, then send every due email in the "
        "outbox (safe to run from cron and from several processes at once). With --loop, repeat until "
        "SIGTERM or Ctrl-C; the email being sent is finished first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep running, one pass every --interval.")
        parser.add_argument(
            "--interval", type=float, default=60.0, help="Seconds between passes with --loop (default 60)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if options["loop"]:

            def request_stop(signum: int, frame: FrameType | None) -> None:
                self.stderr.write(f"signal {signum}: stopping after the current email")
                stop.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, request_stop)
        try:
            total = self.passes(stop, loop=options["loop"], interval=options["interval"])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"Reports: {total}")

    def passes(self, stop: threading.Event, loop: bool, interval: float) -> RunSummary:
        total = RunSummary()
        while True:
            try:
                summary = run_reports(should_stop=stop.is_set)
            except Exception:
                if not loop:
                    raise
                # A lost database or a bad row must not end the loop: log it, reconnect at the next pass.
                logger.exception("event=report_pass_failed")
                close_old_connections()
                summary = RunSummary()
            if summary.queued or summary.sent or summary.retried or summary.failed:
                self.stdout.write(str(summary))
            total.queued += summary.queued
            total.sent += summary.sent
            total.retried += summary.retried
            total.failed += summary.failed
            if not loop or stop.wait(interval):
                return total
