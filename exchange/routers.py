"""Read scaling: partner reads on a PostgreSQL replica (DATABASE_REPLICA_URL), everything else on the primary.

Reads go to the replica only inside an explicit scope, never by default: `on_replica(read)` runs one read
(a lookup's holder query, a partner's seller or cluster page) there. Outside it, and for every write anywhere,
the router answers the primary, so authentication and API-key checks (a revoked key stops at once), quota
counters, audit entries, submissions, retractions, the admin, reclustering, the worker and /readyz never see
replication lag. A view reads first, on the replica, and then charges and audits on the primary: it never
reads on the replica expecting its own writes.

A replica lags the primary by a moment (usually milliseconds): a lookup answers from what the replica has
replayed, and a partner that has just submitted may see its new seller's cluster a moment late. The
submission's own answer comes from the primary. A detail page the replica does not have (yet) is looked up
on the primary before it is a 404, so a seller a partner has just reported is not "not found".

When the replica fails (down, unreachable, a query cancelled by replay), the read is run again on the primary
and this process reads from the primary for `RETRY_SECONDS` before it tries the replica again: one
`event=replica_unavailable` log line per failure, not one per request, and no 5xx for a replica outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError
from django.http import Http404

from exchange import metrics

logger = logging.getLogger("exchange.replica")

REPLICA = "replica"
# After a replica failure this process reads from the primary for this long before trying the replica again,
# so an outage costs one connect timeout per process and interval, not one per request.
RETRY_SECONDS = 30.0

# The alias reads go to in the current scope (thread or task): the primary unless `reading_from_replica`.
_read_alias: ContextVar[str] = ContextVar("exchange_read_alias", default=DEFAULT_DB_ALIAS)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def read_alias() -> str:
    """The alias this scope reads from: raw SQL uses `connections[read_alias()]` where the ORM is routed."""
    return _read_alias.get()


@contextmanager
def reading_from_replica() -> Iterator[None]:
    """Route this scope's reads to the replica (no-op without one). No fallback: see `on_replica`."""
    if not replica_configured():
        yield
        return
    token = _read_alias.set(REPLICA)
    try:
        yield
    finally:
        _read_alias.reset(token)


class ReplicaRouter:
    """Installed by settings when DATABASE_REPLICA_URL is set."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        # Out of scope the primary even for an instance loaded from the replica (Django would follow it).
        return _read_alias.get()

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # One database seen through two connections: a row read on the replica may be related to one
        # read on the primary (e.g. an audit entry naming the caller's platform).
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS  # the replica replays the primary's schema


class _ReplicaHealth:
    """This process's view of the replica: usable, or failed at a (monotonic) time and skipped until
    `RETRY_SECONDS` later. A lock keeps concurrent threads from logging one failure twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed_at: float | None = None

    def usable(self) -> bool:
        failed_at = self._failed_at
        return failed_at is None or time.monotonic() - failed_at >= RETRY_SECONDS

    def failed(self, error: BaseException) -> None:
        with self._lock:
            first = self._failed_at is None or time.monotonic() - self._failed_at >= RETRY_SECONDS
            self._failed_at = time.monotonic()
        if first:
            # The exception's class only: its text can name hosts, users or a query's parameters.
            logger.warning(
                "event=replica_unavailable error=%s fallback=primary retry_in_s=%d",
                type(error).__name__,
                RETRY_SECONDS,
            )

    def answered(self) -> None:
        if self._failed_at is None:
            return
        with self._lock:
            recovered, self._failed_at = self._failed_at is not None, None
        if recovered:
            logger.info("event=replica_available")


health = _ReplicaHealth()


def on_replica[T](read: Callable[[], T], *, confirm_absence: bool = False) -> T:
    """Run `read` (reads only: it may run twice) on the replica, or on the primary when there is no replica,
    it is marked failed, or it fails now. With `confirm_absence`, an Http404 from the replica is checked on
    the primary: the replica may not have replayed an object the primary already has."""
    if not replica_configured():
        return read()
    if not health.usable():
        metrics.replica_fell_back()
        return read()
    try:
        with reading_from_replica():
            result = read()
    except (DatabaseError, InterfaceError) as error:
        health.failed(error)
        metrics.replica_fell_back()
        return read()
    except Http404:
        health.answered()
        if not confirm_absence:
            raise
        return read()
    health.answered()
    return result
