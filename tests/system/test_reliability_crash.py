"""A short run of the crash test (tests/reliability/crash_ingest.py): kill -9 gunicorn during ingest, restart,
let the client retry, reconcile. PostgreSQL only (the script runs its own server against its own database)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.reliability import crash_ingest

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
