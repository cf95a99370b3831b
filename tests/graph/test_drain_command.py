"""The loop shared by `send_cluster_reports` and `send_webhooks` (graph.management.drain.DrainCommand): in a
loop a failed pass is logged and the next one runs; a single pass raises; the numbers of every pass add up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from io import StringIO

import pytest

from graph.management.drain import DrainCommand
from graph.outbox import DrainSummary


class Flaky(DrainCommand):
    default_interval = 0.0
    message = "thing"
    title = "Things"
    logger = logging.getLogger("exchange.test_drain")
    failure_event = "thing_pass_failed"

    def __init__(self, stop: threading.Event, passes: int) -> None:
        super().__init__(stdout=StringIO(), stderr=StringIO())
        self.stop, self.last, self.calls = stop, passes, 0

    def run_pass(self, should_stop: Callable[[], bool]) -> DrainSummary:
        self.calls += 1
        if self.calls == self.last:
            self.stop.set()  # as SIGTERM would: this pass finishes, no other starts
        if self.calls == 1:
            raise RuntimeError("the database went away")
        return DrainSummary(sent=2, retried=self.calls % 2)


@pytest.mark.django_db  # the loop closes unusable connections after a failed pass
def test_in_a_loop_a_failed_pass_is_logged_and_the_next_pass_runs(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    command = Flaky(stop, passes=3)
    with caplog.at_level(logging.ERROR, logger="exchange.test_drain"):
        total = command.passes(stop, loop=True, interval=0)
    assert command.calls == 3
    assert (total.sent, total.retried, total.failed) == (4, 1, 0)  # passes 2 and 3
    assert [r.getMessage() for r in caplog.records] == ["event=thing_pass_failed"]
    assert command.stdout.getvalue().splitlines() == [
        "sent 2, to retry 0, failed 0",
        "sent 2, to retry 1, failed 0",
    ]


def test_a_single_pass_that_fails_raises() -> None:
    with pytest.raises(RuntimeError, match="went away"):
        Flaky(threading.Event(), passes=1).passes(threading.Event(), loop=False, interval=0)


def test_an_empty_pass_prints_nothing_and_the_summary_adds_every_count() -> None:
    total = DrainSummary(sent=1)
    total.add(DrainSummary(retried=2, failed=3))
    assert (total.sent, total.retried, total.failed) == (1, 2, 3)
    assert not DrainSummary() and bool(DrainSummary(failed=1))
