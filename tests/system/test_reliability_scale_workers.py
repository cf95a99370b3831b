"""A short run of the work-scaling check (tests/reliability/scale_workers.py): three Procrastinate workers share
the queue, one is stopped halfway and the others take over, recomputations never overlap, and the clusters
equal a full rebuild. PostgreSQL only (the script runs its own server and workers against its own database)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.reliability import scale_workers

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the workers need PostgreSQL"
)
def test_workers_share_the_queue_and_recompute_one_at_a_time() -> None:
    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="", query=""))
    argv = ["--workers", "3", "--batches", "8", "--batch-size", "40", "--seed", "11"]
    assert (
        scale_workers.main([*argv, "--server", server, "--database", f"exchange_reliab_scale_{os.getpid()}"])
        == 0
    )
