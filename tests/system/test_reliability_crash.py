"""Short runs of the crash tests (tests/reliability/crash_ingest.py, crash_lookup.py and crash_webhooks.py):
kill -9 gunicorn during ingest or lookups, or the webhook sender mid-delivery, restart, reconcile. PostgreSQL
only (each script runs its own server against its own database)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.reliability import crash_ingest, crash_lookup, crash_webhooks

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the crash test needs PostgreSQL"
)
def test_kill_9_during_ingest_loses_and_duplicates_nothing():
    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="", query=""))
    argv = ["--trials", "2", "--kills", "2", "--batches", "10", "--batch-size", "50", "--seed", "7"]
    assert (
        crash_ingest.main([*argv, "--server", server, "--database", f"exchange_reliab_ci_{os.getpid()}"]) == 0
    )


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the crash test needs PostgreSQL"
)
def test_kill_9_during_lookups_leaves_no_answered_lookup_unaudited_and_no_charge_unaudited():
    """Issue 17: the quota charge, the read and the audit entry are one statement (exchange/lookups.py
    LOOKUP_SQL), so a crash at any moment leaves the day's quota count equal to the audited indicators and
    every answered lookup audited (tests/reliability/crash_lookup.py)."""
    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="", query=""))
    argv = ["--trials", "2", "--kills", "2", "--seconds", "4", "--threads", "3", "--seed", "7"]
    assert (
        crash_lookup.main([*argv, "--server", server, "--database", f"exchange_reliab_lk_{os.getpid()}"]) == 0
    )


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the crash test needs PostgreSQL"
)
def test_kill_9_during_webhook_delivery_delivers_every_event_at_least_once():
    """The webhook outbox (graph/webhooks.py through graph/outbox.py): a sender killed while a delivery is
    read but not answered, or at any moment, loses no event; the receiver deduplicates the resent ones by id."""
    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="", query=""))
    argv = ["--kills", "4", "--batches", "2", "--batch-size", "30", "--seed", "7"]
    assert (
        crash_webhooks.main([*argv, "--server", server, "--database", f"exchange_reliab_wh_{os.getpid()}"])
        == 0
    )
