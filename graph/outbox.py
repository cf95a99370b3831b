"""The crash-safe outbox that report emails (graph/reports.py) and webhook events (graph/webhooks.py) share.

Rows (`graph.models.OutboxRow`) are written in the transaction of what they report, so they exist exactly
when it committed. A sender then:

1. claims one due row with a conditional UPDATE (pending and due, or claimed by a sender that did not finish
   within the claim timeout: it crashed or hangs, and its claim is taken over); of several senders racing
   for a row exactly one wins, the others move on;
2. delivers it (the caller's `deliver`);
3. marks it sent; or, when delivery raised, schedules the next attempt with exponential backoff (never before
   a `RetryLater.not_before` the receiver asked for) and after the policy's last attempt marks it failed,
   which the admin shows with the last error.

A sender killed between 2 and 3 leaves the row claimed; it is taken over after the claim timeout and sent
again: at least once, never lost. Each kind of row carries what lets its receiver drop the duplicate (the
email's Message-ID, the event's id).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, QuerySet
from django.utils import timezone

from graph.models import DeliveryStatus, OutboxRow, ReportDelivery, WebhookDelivery, due_rows

logger = logging.getLogger("exchange.outbox")


@dataclass(frozen=True)
class RetryPolicy:
    first: timedelta  # the wait after the first failed attempt; it doubles with each further one
    longest: timedelta
    max_attempts: int

    def delay(self, attempts: int) -> timedelta:
        """After `attempts` failed attempts: first, 2 x first, 4 x first, ... at most `longest`."""
        return min(self.first * 2 ** max(attempts - 1, 0), self.longest)


class DeliveryFailed(Exception):
    """A failed attempt, with the row's `fields` to record with it (e.g. the HTTP status)."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.fields = fields


class RetryLater(DeliveryFailed):
    """Try again, not before `not_before` when the receiver said when (Retry-After)."""

    def __init__(self, message: str, not_before: datetime | None = None, **fields: object) -> None:
        super().__init__(message, **fields)
        self.not_before = not_before


class GiveUp(DeliveryFailed):
    """No retry can make this delivery succeed (e.g. the receiver was removed): failed at once."""


@dataclass
class DrainSummary:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: DrainSummary) -> None:
        """Count `other`'s numbers in (a pass's into a run's, or a drain's into a wider summary)."""
        for counted in fields(other):
            setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))

    def __bool__(self) -> bool:
        return any(getattr(self, counted.name) for counted in fields(self))

    def __str__(self) -> str:
        return f"sent {self.sent}, to retry {self.retried}, failed {self.failed}"


def sender_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:100]


def claim_next[R: OutboxRow](
    rows: QuerySet[R], worker: str, claim_timeout: timedelta, now: datetime | None = None
) -> R | None:
    """Claim one due row of `rows` (the UPDATE re-checks the condition under the row lock)."""
    for _ in range(50):
        now = now or timezone.now()
        due = due_rows(rows, now, claim_timeout)
        candidate = due.order_by("next_attempt_at", "id").values_list("pk", flat=True).first()
        if candidate is None:
            return None
        if due.filter(pk=candidate).update(
            status=DeliveryStatus.SENDING, claimed_at=now, claimed_by=worker, attempts=F("attempts") + 1
        ):
            return rows.get(pk=candidate)
    return None


def mark_sent(row: OutboxRow, now: datetime | None = None, **fields: object) -> None:
    type(row)._default_manager.filter(pk=row.pk).exclude(status=DeliveryStatus.SENT).update(
        status=DeliveryStatus.SENT, sent_at=now or timezone.now(), last_error="", **fields
    )


def mark_attempt_failed(
    row: OutboxRow,
    error: Exception,
    policy: RetryPolicy,
    now: datetime | None = None,
) -> bool:
    """Back off (not before a RetryLater's `not_before`), or give up after the policy's last attempt or on
    GiveUp. Only the claim's own sender may do so. Returns True when the row is now failed for good."""
    now = now or timezone.now()
    final = row.attempts >= policy.max_attempts or isinstance(error, GiveUp)
    next_attempt = now + policy.delay(row.attempts)
    if isinstance(error, RetryLater) and error.not_before is not None:
        next_attempt = max(next_attempt, min(error.not_before, now + policy.longest))
    message = str(error) if isinstance(error, DeliveryFailed) else f"{type(error).__name__}: {error}"
    fields = error.fields if isinstance(error, DeliveryFailed) else {}
    type(row)._default_manager.filter(
        pk=row.pk, status=DeliveryStatus.SENDING, claimed_by=row.claimed_by
    ).update(
        status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
        next_attempt_at=now if final else next_attempt,
        last_error=message[:2000],
        **fields,
    )
    return final


def retry_now(rows: QuerySet[Any]) -> int:
    """Put failed or waiting rows back to be sent at the next run, with a fresh count of attempts (the
    admin's "Retry now"). Sent rows are never resent, a row being sent right now is left to its sender, and a
    row whose message the retention purge cleared has nothing left to send."""
    return rows.filter(
        status__in=[DeliveryStatus.FAILED, DeliveryStatus.PENDING], cleared_at__isnull=True
    ).update(status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), attempts=0)


def clear_contents(cutoff: datetime, now: datetime | None = None) -> dict[str, int]:
    """Clear the message of every finished row (sent, or failed for good) written before `cutoff`, in every
    outbox (`OutboxRow.CONTENT_FIELDS`); return how many per outbox. The retention purge's receiver
    (`exchange.hooks.announce_purge`, in the purge's transaction): a report email or a webhook event names the
    platform's sellers, and a purged report must not live on in the copy of a message about it. Rows still to
    be sent keep theirs; what a row was (its kind, recipient, period, status and times) stays for the admin."""
    now = now or timezone.now()
    cleared: dict[str, int] = {}
    for model in (ReportDelivery, WebhookDelivery):
        rows = model.objects.filter(
            status__in=[DeliveryStatus.SENT, DeliveryStatus.FAILED],
            created_at__lt=cutoff,
            cleared_at__isnull=True,
        )
        cleared[model.__name__] = rows.update(cleared_at=now, **dict.fromkeys(model.CONTENT_FIELDS, ""))
    logger.info("event=outbox_cleared %s", " ".join(f"{name}={count}" for name, count in cleared.items()))
    return cleared


def drain[R: OutboxRow](
    rows: QuerySet[R],
    deliver: Callable[[R], dict[str, object] | None],
    *,
    policy: RetryPolicy,
    claim_timeout: timedelta,
    mark_sent: Callable[..., None] = mark_sent,
    should_stop: Callable[[], bool] = lambda: False,
    logger: logging.Logger,
    event: str,
) -> DrainSummary:
    """Deliver every due row of `rows`, one claim at a time, until none is left (or `should_stop()`).

    `deliver` may return fields to record with the row marked sent. Any Exception from it is a failed
    attempt (RetryLater and GiveUp say more); a BaseException (the process is being killed) leaves the claim
    to be taken over. Logs `event=<event>_sent|_retry|_failed`."""
    summary = DrainSummary()
    worker = sender_name()
    while not should_stop():
        row = claim_next(rows, worker, claim_timeout)
        if row is None:
            break
        try:
            fields = deliver(row)
        except Exception as exc:
            if mark_attempt_failed(row, exc, policy):
                summary.failed += 1
                logger.error("event=%s_failed delivery_id=%s attempts=%s", event, row.pk, row.attempts)
            else:
                summary.retried += 1
                logger.warning("event=%s_retry delivery_id=%s attempts=%s", event, row.pk, row.attempts)
            continue
        if fields:
            mark_sent(row, **fields)
        else:
            mark_sent(row)
        summary.sent += 1
        logger.info("event=%s_sent delivery_id=%s", event, row.pk)
    return summary
