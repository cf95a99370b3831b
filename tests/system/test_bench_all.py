"""`make bench` keeps working: tests/bench/bench_all.py at a tiny size prints its one table, every figure beside
its floor. PostgreSQL only (the script starts gunicorn and a worker on its own databases)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the benchmark needs PostgreSQL"
)
def test_make_bench_prints_each_figure_beside_its_floor() -> None:
    server = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="", query=""))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_NAME", "DEBUG")}
    proc = subprocess.run(
        [sys.executable, "tests/bench/bench_all.py", "--rows", "1000", "--rate", "50", "--seconds", "2",
         "--recluster-sightings", "20000", "--server", server, "--db-suffix", f"_smoke_{os.getpid()}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    assert re.search(
        r"lookup, 10 indicators, 50/s.*\| [\d.]+ / [\d.]+ ms +\| GET /me/ [\d.]+ / [\d.]+ ms", table
    )
    assert re.search(r"ingest, 1,000-row CSV -> stored.*\| [\d,]+ sightings/s +\| COPY [\d,]+ rows/s", table)
    assert re.search(
        r"CPU per sighting, us.*\| client \d+, gunicorn \d+, its PostgreSQL \d+, clustering \d+", table
    )
    assert re.search(r"CPU-bound ceiling: \d+ cores.*\| [\d,]+ sightings/s", table)
    assert re.search(
        r"full recluster, 20,000 sightings, 7% shared.*\| [\d.]+ s \(.*\) +\| read \+ CC [\d.]+ s", table
    )
