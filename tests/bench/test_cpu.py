"""tests/bench/cpu.py counts the CPU a benchmark's parts spend, including processes that exited meanwhile (a
worker's child, a closed connection's PostgreSQL backend): real processes, real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.bench import cpu

BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end:\n    pass\n"
# A group leader that, once told, runs a child burning 0.4 s of CPU, reaps it, says so, and waits.
LEADER = (
    "import subprocess, sys\n"
    "sys.stdin.readline()\n"
    f"subprocess.run([sys.executable, '-c', {BURN!r}], check=True)\n"
    "print('done', flush=True)\n"
    "sys.stdin.readline()\n"
)


def test_a_process_group_counts_its_children_that_exited() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert leader.stdin is not None and leader.stdout is not None
    try:
        before = cpu.snapshot({"group": leader.pid})
        leader.stdin.write("go\n")
        leader.stdin.flush()
        assert leader.stdout.readline().strip() == "done"
        spent = cpu.spent(before, cpu.snapshot({"group": leader.pid}))
    finally:
        leader.stdin.write("stop\n")
        leader.stdin.flush()
        leader.wait(10)
    assert 0.35 <= spent["group"] < 5
    assert spent["children"] == 0  # nothing of this process's own was waited for


def test_a_waited_child_counts_as_this_process_children() -> None:
    before = cpu.snapshot({})
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert cpu.spent(before, cpu.snapshot({}))["children"] >= 0.35


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="counts PostgreSQL's processes"
)
def test_postgresql_counts_a_closed_connections_backend() -> None:
    import psycopg

    before = cpu.snapshot({})
    with psycopg.connect(os.environ["DATABASE_URL"].split("?")[0], autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM generate_series(1, 5000000)").fetchone()
    # A backend that has just exited is briefly in neither count, until the postmaster reaps it.
    deadline = time.monotonic() + 5
    while (spent := cpu.spent(before, cpu.snapshot({}))["postgres"]) < 0.2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spent >= 0.2


SERVE = (
    "import os, sys, psycopg\n"
    "with psycopg.connect(os.environ['BENCH_URL'], autocommit=True) as conn:\n"
    "    print('connected', flush=True)\n"
    "    sys.stdin.readline()\n"
    "    conn.execute('SELECT count(*) FROM generate_series(1, 5000000)').fetchone()\n"
    "    print('done', flush=True)\n"
    "    sys.stdin.readline()\n"
)


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="counts PostgreSQL's processes"
)
def test_a_groups_postgresql_backends_are_counted_as_its_own() -> None:
    """The backend serving a group's connection (over TCP, as the benchmarks connect) is the group's; a query
    from another connection is not."""
    import psycopg

    url = os.environ["DATABASE_URL"].split("?")[0].replace("@localhost", "@127.0.0.1")
    group = subprocess.Popen(
        [sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "BENCH_URL": url},
    )  # fmt: skip
    assert group.stdin is not None and group.stdout is not None
    try:
        assert group.stdout.readline().strip() == "connected"
        before = cpu.snapshot({"group": group.pid})
        with psycopg.connect(url, autocommit=True) as other:  # this process's query: not the group's
            other.execute("SELECT count(*) FROM generate_series(1, 5000000)").fetchone()
            middle = cpu.snapshot({"group": group.pid})
        group.stdin.write("go\n")
        group.stdin.flush()
        assert group.stdout.readline().strip() == "done"
        after = cpu.snapshot({"group": group.pid})
    finally:
        group.stdin.write("stop\n")
        group.stdin.flush()
        group.wait(10)
    assert cpu.spent(before, middle)["group PostgreSQL"] < 0.1
    assert cpu.spent(middle, after)["group PostgreSQL"] >= 0.2
