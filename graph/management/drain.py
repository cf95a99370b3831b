"""The one loop of the commands that drain an outbox (`send_cluster_reports`, `send_webhooks`): one pass, or with
--loop a pass every --interval until SIGTERM or Ctrl-C, the message being sent finished first; in a loop, a
pass that fails (a lost database, a bad row) is logged and the next pass reconnects."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from graph.outbox import DrainSummary


class DrainCommand(BaseCommand):
    summary_type: type[DrainSummary] = DrainSummary
    default_interval: float  # seconds between passes with --loop
    message: str  # what one outbox row sends ("email", "event"), for the stop notice
    title: str  # the last line's label
    logger: logging.Logger
    failure_event: str  # the log event of a failed pass in a loop

    def run_pass(self, should_stop: Callable[[], bool]) -> DrainSummary:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="Keep running, one pass every --interval.")
        parser.add_argument(
            "--interval",
            type=float,
            default=self.default_interval,
            help=f"Seconds between passes with --loop (default {self.default_interval:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        previous: dict[signal.Signals, Any] = {}
        if options["loop"]:

            def request_stop(signum: int, frame: FrameType | None) -> None:
                self.stderr.write(f"signal {signum}: stopping after the current {self.message}")
                stop.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, request_stop)
        try:
            total = self.passes(stop, loop=options["loop"], interval=options["interval"])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"{self.title}: {total}")

    def passes(self, stop: threading.Event, loop: bool, interval: float) -> DrainSummary:
        total = self.summary_type()
        while True:
            try:
                summary = self.run_pass(stop.is_set)
            except Exception:
                if not loop:
                    raise
                self.logger.exception("event=%s", self.failure_event)
                close_old_connections()
                summary = self.summary_type()
            if summary:
                self.stdout.write(str(summary))
            total.add(summary)
            if not loop or stop.wait(interval):
                return total
