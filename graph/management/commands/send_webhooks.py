from __future__ import annotations

import logging
from collections.abc import Callable

from graph.management.drain import DrainCommand
from graph.outbox import DrainSummary
from graph.webhooks import send_due_webhooks


class Command(DrainCommand):
    help = (
        "Send every due webhook event in the outbox (safe to run from cron and from several processes at "
        "once; the Procrastinate worker also does it every minute). With --loop, repeat until SIGTERM or "
        "Ctrl-C; the event being sent is finished first."
    )
    default_interval = 5.0
    message = "event"
    title = "Webhooks"
    logger = logging.getLogger("exchange.webhooks")
    failure_event = "webhook_pass_failed"

    def run_pass(self, should_stop: Callable[[], bool]) -> DrainSummary:
        return send_due_webhooks(should_stop=should_stop)
