from __future__ import annotations

import logging
from collections.abc import Callable

from graph.management.drain import DrainCommand
from graph.reports import RunSummary, run_reports


class Command(DrainCommand):
    help = (
        "Queue the cluster reports and analysts' digests that are due, then send every due email in the "
        "outbox (safe to run from cron and from several processes at once). With --loop, repeat until "
        "SIGTERM or Ctrl-C; the email being sent is finished first."
    )
    summary_type = RunSummary
    default_interval = 60.0
    message = "email"
    title = "Reports"
    logger = logging.getLogger("exchange.reports")
    failure_event = "report_pass_failed"

    def run_pass(self, should_stop: Callable[[], bool]) -> RunSummary:
        return run_reports(should_stop=should_stop)
