"""Work scaling: several Procrastinate workers share the queue, and cluster recomputation stays one writer at
a time.

    .venv/bin/python tests/reliability/scale_workers.py [--workers 3] [--batches 12] [--batch-size 60]
        [--database exchange_reliab_scale] [--server postgres://postgres@127.0.0.1:5432]

Each worker is its own process with its own connections to PostgreSQL over TCP, as a worker on another machine
would be (nothing is shared but the database). gunicorn runs with EXCHANGE_TASK_MODE=worker, so every accepted
submission enqueues a `recompute_clusters` job in its own transaction; two platforms submit linking batches
at the same time, and a full `manage.py recluster` runs in the middle of it. Halfway, the worker that has done
the most work is stopped (SIGTERM: it finishes its job and leaves, as when a machine is drained), while jobs keep
coming. Then, once the queue has drained:

- every job succeeded, and ran exactly once (one `started` event each);
- the others took over: the jobs ran on more than one worker (each worker's log names the jobs it finished;
  while all are up one worker tends to do every job, because the shared lock lets only one run at a time and
  the worker that just finished asks first);
- no two recomputations overlapped in time (the jobs' `started`..`succeeded` intervals, from
  `procrastinate_events`), which the jobs' shared Procrastinate lock `recompute` guarantees between workers
  and the PostgreSQL advisory lock in graph.clustering guarantees against the command;
- the clusters the workers left equal a full rebuild's.
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.crash_worker import clusters, jobs, submit_batches
from tests.reliability.server import (
    DEFAULT_SERVER,
    ROOT,
    Worker,
    drop_database,
    log,
    manage,
    worker_world,
)


def job_facts(url: str) -> tuple[list[tuple[int, str, str]], dict[int, list[tuple[str, float]]]]:
    """(id, status, task name) of every `recompute`-locked job (the hourly expiry refresh shares the lock), and
    each job's events as (type, epoch)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, status::text, task_name FROM procrastinate_jobs WHERE lock = 'recompute' ORDER BY id"
        ).fetchall()
        events: dict[int, list[tuple[str, float]]] = {}
        for job_id, kind, at in conn.execute(
            "SELECT e.job_id, e.type::text, extract(epoch FROM e.at)::float8 FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id WHERE j.lock = 'recompute' ORDER BY e.id"
        ):
            events.setdefault(job_id, []).append((kind, at))
    return rows, events


def finished_per_worker(logs: list[Path]) -> list[int]:
    """How many recompute jobs each worker finished, from its log's `event=task_done` lines."""
    return [
        sum("event=task_done task=recompute_clusters" in line for line in path.read_text().splitlines())
        if path.exists()
        else 0
        for path in logs
    ]


def overlaps(events: dict[int, list[tuple[str, float]]]) -> list[tuple[int, int]]:
    """Pairs of jobs whose started..succeeded intervals overlap (in start order, each with its successor)."""
    spans = []
    for job_id, seen in events.items():
        starts = [at for kind, at in seen if kind == "started"]
        ends = [at for kind, at in seen if kind in ("succeeded", "failed")]
        if starts and ends:
            spans.append((starts[0], ends[-1], job_id))
    spans.sort()
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12, help="batches per platform")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--drain-timeout", type=float, default=180)
    parser.add_argument("--database", default="exchange_reliab_scale")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    world = worker_world(args.database, args.server, "scale_workers_", "east", "west")
    url, env, keys, logdir, server = world.url, world.env, world.keys, world.logdir, world.server
    logs = [logdir / f"worker-{n}.log" for n in range(args.workers)]
    workers = [Worker(env, path) for path in logs]
    problems: list[str] = []
    started = time.monotonic()
    try:
        server.start()
        for worker in workers:
            worker.start()

        def ingest(slug: str, numbers: range) -> None:
            submit_batches(server.url, keys[slug], slug, numbers, args.batch_size, rng)

        half = args.batches // 2
        threads = [threading.Thread(target=ingest, args=(slug, range(half))) for slug in keys]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # A full rebuild while the workers recompute: it waits for the advisory lock, or they wait for it.
        rebuild = subprocess.run(
            [sys.executable, "manage.py", "recluster"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if rebuild.returncode:
            problems.append(f"manage.py recluster failed during ingest: {rebuild.stderr[-500:]}")
        for t in threads:
            t.join()
        deadline = time.monotonic() + args.drain_timeout
        while not any(done := finished_per_worker(logs)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the busiest worker is the one to stop: wait until one has finished a job
        busiest = max(range(len(workers)), key=done.__getitem__)
        log(
            f"jobs finished per worker so far: {done}; stopping worker {busiest} (SIGTERM) while ingest goes on"
        )
        threads = [threading.Thread(target=ingest, args=(slug, range(half, args.batches))) for slug in keys]
        for t in threads:
            t.start()
        workers[busiest].stop()
        for t in threads:
            t.join()
        log(f"ingest done after {time.monotonic() - started:.0f} s; waiting for the queue to drain")
        deadline = time.monotonic() + args.drain_timeout
        while (jobs(url, "todo") or jobs(url, "doing")) and time.monotonic() < deadline:
            time.sleep(0.3)
        rows, events = job_facts(url)
        incremental = clusters(url)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
    try:
        manage(env, "recluster")
        full = clusters(url)
    finally:
        if not args.keep_db:
            drop_database(url)

    expected = 2 * args.batches
    recomputes = sum(1 for _, _, task in rows if task == "graph.tasks.recompute_clusters")
    not_done = [(job_id, status) for job_id, status, _ in rows if status != "succeeded"]
    ran_twice = [job_id for job_id, seen in events.items() if sum(k == "started" for k, _ in seen) != 1]
    per_worker = finished_per_worker(logs)
    spread = sum(1 for n in per_worker if n)
    clashes = overlaps(events)
    if recomputes < expected:
        problems.append(f"{recomputes} recompute jobs for {expected} accepted batches")
    if not_done:
        problems.append(f"jobs not succeeded: {not_done[:5]}")
    if ran_twice:
        problems.append(f"jobs not started exactly once: {ran_twice[:5]}")
    if spread < 2:
        problems.append(f"the jobs ran on {spread} worker(s) of {args.workers}: {per_worker}")
    if sum(per_worker) != recomputes:
        problems.append(f"the workers' logs name {sum(per_worker)} finished jobs, the queue {recomputes}")
    if clashes:
        problems.append(f"recomputations overlapped in time: {clashes[:5]}")
    if incremental != full:
        problems.append(f"clusters differ from a full rebuild ({len(incremental ^ full)} differ)")
    print(
        f"scale_workers: {'OK' if not problems else 'FAILED'}; {recomputes} recompute jobs for {expected} "
        f"batches on {spread} of {args.workers} workers ({per_worker}), {len(clashes)} overlapping; "
        f"{len(incremental)} clusters, {'equal to' if incremental == full else 'NOT equal to'} a full rebuild; "
        f"{time.monotonic() - started:.0f} s; logs in {logdir}"
    )
    for problem in problems:
        print(f"  - {problem}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
