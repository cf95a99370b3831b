from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from graph.outbox import DrainSummary
from graph.webhooks import send_due_webhooks

logger = logging.getLogger("exchange.webhooks")


class Command(BaseCommand):
    help = (
        "Send every due webhook event in the outbox (safe to run from cron and from several processes at "
        "once; the Procrastinate worker also does it every minute). With --loop, repeat until SIGTERM or "
        "Ctrl-C; the event being sent is finished first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep running, one pass every --interval.")
        parser.add_argument(
            "--interval", type=float, default=5.0, help="Seconds between passes with --loop (default 5)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if options["loop"]:

            def request_stop(signum: int, frame: FrameType | None) -> None:
                self.stderr.write(f"signal {signum}: stopping after the current event")
                stop.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, request_stop)
        try:
            total = self.passes(stop, loop=options["loop"], interval=options["interval"])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"Webhooks: sent {total.sent}, to retry {total.retried}, failed {total.failed}")

    def passes(self, stop: threading.Event, loop: bool, interval: float) -> DrainSummary:
        total = DrainSummary()
        while True:
            try:
                summary = send_due_webhooks(should_stop=stop.is_set)
            except Exception:
                if not loop:
                    raise
                # A lost database must not end the loop: log it, reconnect at the next pass.
                logger.exception("event=webhook_pass_failed")
                close_old_connections()
                summary = DrainSummary()
            if summary.sent or summary.retried or summary.failed:
                self.stdout.write(f"sent {summary.sent}, to retry {summary.retried}, failed {summary.failed}")
            total.sent += summary.sent
            total.retried += summary.retried
            total.failed += summary.failed
            if not loop or stop.wait(interval):
                return total
