"""A sender that dies between claiming, sending and marking neither loses a report nor duplicates it.

A crash is simulated by raising a BaseException (as SIGKILL-like as Python gets: nothing catches it) from the
patched step; the rerun happens after the claim timeout, as it would in production. "Exactly once" is counted
as distinct Message-IDs per outbox row: the one honest at-least-once edge (died after the SMTP server accepted)
resends the identical message, which receivers deduplicate by Message-ID.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.db import connection

from accounts.models import Platform
from graph import reports
from graph.models import DeliveryStatus, ReportDelivery
from tests.conftest import KeyedPlatform
from tests.graph.test_reports import NOON, reports_on, shared_pair


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


class Crash(BaseException):
    """The process dies here."""


def crash(*args: Any, **kwargs: Any) -> None:
    raise Crash


def after(step: Any) -> Any:
    """Run the real step, then die."""

    def wrapped(*args: Any, **kwargs: Any) -> None:
        step(*args, **kwargs)
        raise Crash

    return wrapped


@pytest.fixture
def queued(acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller) -> list[ReportDelivery]:
    shared_pair(acme, bazaar)
    reports_on(acme, "one@acme.example", "two@acme.example")
    reports_on(bazaar, "one@bazaar.example")
    assert reports.queue_due_reports() == 3
    return list(ReportDelivery.objects.order_by("id"))


def rerun_until_done(clock: time_machine.Traveller) -> None:
    clock.shift(reports.claim_timeout() + timedelta(seconds=1))
    reports.run_reports()


def assert_exactly_once(rows: list[ReportDelivery]) -> None:
    ids_by_recipient: dict[str, set[str]] = {}
    for message in mail.outbox:
        ids_by_recipient.setdefault(message.to[0], set()).add(message.extra_headers["Message-ID"])
    assert ids_by_recipient == {row.recipient: {row.message_id} for row in rows}
    assert set(ReportDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert ReportDelivery.objects.count() == len(rows)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_crash_after_claiming_before_sending(
    queued: list[ReportDelivery], clock: time_machine.Traveller, position: int
) -> None:
    real_deliver = reports.deliver
    calls = iter(range(10))

    def deliver(row: ReportDelivery) -> None:
        if next(calls) == position:
            raise Crash
        real_deliver(row)

    with mock.patch.object(reports, "deliver", deliver), pytest.raises(Crash):
        reports.send_due_reports()
    claimed = ReportDelivery.objects.get(status=DeliveryStatus.SENDING)
    assert reports.send_due_reports().sent == 2 - position  # the others; the claimed one is left alone
    assert ReportDelivery.objects.get(status=DeliveryStatus.SENDING) == claimed

    rerun_until_done(clock)
    assert_exactly_once(queued)
    assert len(mail.outbox) == 3


def test_crash_after_the_smtp_server_accepted_before_marking_resends_the_same_message(
    queued: list[ReportDelivery], clock: time_machine.Traveller
) -> None:
    with mock.patch.object(reports, "deliver", after(reports.deliver)), pytest.raises(Crash):
        reports.send_due_reports()
    assert len(mail.outbox) == 1

    rerun_until_done(clock)
    # At least once, never under two identities: the first row went out twice with one Message-ID.
    assert len(mail.outbox) == 4
    assert mail.outbox[0].extra_headers["Message-ID"] == mail.outbox[1].extra_headers["Message-ID"]
    assert_exactly_once(queued)


def test_crash_after_marking_sent_sends_nothing_again(
    queued: list[ReportDelivery], clock: time_machine.Traveller
) -> None:
    with mock.patch.object(reports, "mark_sent", after(reports.mark_sent)), pytest.raises(Crash):
        reports.send_due_reports()
    rerun_until_done(clock)
    assert len(mail.outbox) == 3
    assert_exactly_once(queued)


def test_crash_while_queueing_writes_nothing_and_the_rerun_queues_once(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    shared_pair(acme, bazaar)
    reports_on(acme, "one@acme.example")
    with mock.patch.object(reports.ReportDelivery.objects, "bulk_create", crash), pytest.raises(Crash):
        reports.run_reports()
    assert ReportDelivery.objects.count() == 0
    assert Platform.objects.get(pk=acme.platform.pk).last_report_at is None  # the period was not taken

    reports.run_reports()
    reports.run_reports()
    (row,) = ReportDelivery.objects.all()
    assert row.period_start is None
    assert_exactly_once([row])


def test_a_claim_is_taken_over_only_after_the_timeout(
    queued: list[ReportDelivery], clock: time_machine.Traveller
) -> None:
    first = reports.claim_next("sender-a")
    assert first is not None and first.attempts == 1
    others = [reports.claim_next("sender-b"), reports.claim_next("sender-b")]
    assert first.pk not in {o.pk for o in others if o}
    assert reports.claim_next("sender-b") is None  # all three are claimed
    clock.shift(reports.claim_timeout() + timedelta(seconds=1))
    taken = reports.claim_next("sender-c")
    assert taken is not None and taken.attempts == 2 and taken.claimed_by == "sender-c"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections need PostgreSQL")
def test_several_senders_at_once_send_every_report_exactly_once(
    acme: KeyedPlatform, bazaar: KeyedPlatform
) -> None:
    shared_pair(acme, bazaar)
    reports_on(acme, *[f"contact{n}@acme.example" for n in range(40)])
    assert reports.queue_due_reports() == 40
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            barrier.wait()
            reports.send_due_reports()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_exactly_once(list(ReportDelivery.objects.all()))
    assert len(mail.outbox) == 40
