"""Crash test of the background recomputation: kill -9 the Procrastinate worker while it recomputes
clusters, restart it, and check that the clusters it leaves equal a full recomputation.

    .venv/bin/python tests/reliability/crash_worker.py [--kills 5] [--batches 40] [--recovery retry-stalled]
        [--database exchange_reliab_worker] [--server postgres://postgres@127.0.0.1:5432]

gunicorn runs with EXCHANGE_TASK_MODE=worker, so every accepted submission enqueues a `recompute_clusters`
job in its own transaction. Two platforms submit batches that link to each other (shared strong and weak
indicators, so clusters grow and merge) while a killer watches `procrastinate_jobs` and sends SIGKILL to the
worker the moment a job is `doing`, then restarts it. After ingest the queue must drain; then the clusters
(as sets of (platform, seller_ref)) are compared with what `manage.py recluster` (a full rebuild) produces.

A job whose worker died stays `doing` and keeps its lock (`recompute`): every later recompute job waits
behind it. ``--recovery`` decides what happens at restart:

- ``retry-stalled`` (default): before the worker restarts, jobs left `doing` by the dead worker are put back
  to `todo` (procrastinate's `retry_job_by_id`), as a deployment's start script or a periodic task
  (`app.job_manager.get_stalled_jobs()` + `retry_job`) should do;
- ``none``: restart only, to show the stall (the script then reports the stuck jobs and fails).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange.client import ExchangeClient
from tests.reliability.server import (
    DEFAULT_SERVER,
    Worker,
    drop_database,
    fake_transport_hash,
    log,
    manage,
    worker_world,
)


def batch(platform: str, number: int, size: int, rng: random.Random) -> list[dict]:
    reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    sellers = []
    for n in range(size):
        indicators = [("email", f"{platform}-{number}-{n}@w.example")]
        if rng.random() < 0.6:  # a strong indicator shared across platforms: rings that grow and merge
            indicators.append(("phone", f"ring-{rng.randrange(size * 4)}"))
        if rng.random() < 0.5:  # two weak ones: link only together
            indicators += [
                ("store_name", f"store-{rng.randrange(60)}"),
                ("shipping_address", f"addr-{rng.randrange(60)}"),
            ]
        sellers.append(
            {
                "seller_ref": f"{platform}-{number}-{n}",
                "status": "confirmed",
                "reasons": ["counterfeit"],
                "reported_at": reported,
                "indicators": [{"kind": k, "hash": fake_transport_hash(k, v)} for k, v in indicators],
            }
        )
    return sellers


def submit_batches(url: str, key: str, slug: str, numbers: range, size: int, rng: random.Random) -> None:
    """Submit one platform's batches `numbers` through the reference client (retrying as a partner would)."""
    client = ExchangeClient(url, key, max_retries=8, backoff_base=0.2)
    for number in numbers:
        client.submit_batch(batch(slug, number, size, rng), idempotency_key=f"{slug}-{number}")


def jobs(url: str, status: str) -> list[int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM procrastinate_jobs WHERE status = %s AND queue_name = 'clusters'", [status]
        ).fetchall()
    return [r[0] for r in rows]


def retry_stalled(url: str) -> int:
    """Put back to `todo` the jobs a dead worker left `doing` (only call while no worker runs)."""
    import psycopg

    stalled = jobs(url, "doing")
    with psycopg.connect(url, autocommit=True) as conn:
        for job_id in stalled:
            conn.execute("SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", [job_id])
    return len(stalled)


def clusters(url: str) -> set[frozenset[str]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT m.cluster_id, p.slug || ':' || s.seller_ref
              FROM graph_clustermember m JOIN graph_actorcluster c ON c.id = m.cluster_id
              JOIN exchange_seller s ON s.id = m.seller_id JOIN accounts_platform p ON p.id = s.platform_id
             WHERE c.dissolved_at IS NULL
            """
        ).fetchall()
    members: dict[int, set[str]] = {}
    for cluster_id, member in rows:
        members.setdefault(cluster_id, set()).add(member)
    return {frozenset(m) for m in members.values()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40, help="batches per platform")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--recovery", choices=["retry-stalled", "none"], default="retry-stalled")
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--database", default="exchange_reliab_worker")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    world = worker_world(args.database, args.server, "crash_worker_", "north", "south")
    url, env, keys, logdir, server = world.url, world.env, world.keys, world.logdir, world.server
    worker = Worker(env, logdir / "worker.log")
    server.start()
    worker.start()
    kills, requeued, ok = 0, 0, False
    started = time.monotonic()
    try:
        threads = [
            threading.Thread(
                target=submit_batches,
                args=(server.url, keys[slug], slug, range(args.batches), args.batch_size, rng),
            )
            for slug in keys
        ]
        for t in threads:
            t.start()
        # Kill during ingest and while the backlog of recompute jobs is worked off.
        while kills < args.kills and (any(t.is_alive() for t in threads) or jobs(url, "todo")):
            if jobs(url, "doing"):  # a recomputation is running right now: kill it mid-way
                time.sleep(rng.uniform(0, 0.05))
                worker.kill9()
                kills += 1
                stuck = jobs(url, "doing")
                if args.recovery == "retry-stalled":
                    requeued += retry_stalled(url)
                log(f"kill -9 worker #{kills}: {len(stuck)} job(s) left 'doing'")
                time.sleep(rng.uniform(0.2, 1.0))
                worker.start()
            time.sleep(0.01)
        for t in threads:
            t.join()
        log(f"ingest and kills done after {time.monotonic() - started:.0f} s; waiting for the queue to drain")
        deadline = time.monotonic() + args.drain_timeout
        while (jobs(url, "todo") or jobs(url, "doing")) and time.monotonic() < deadline:
            time.sleep(0.5)
        todo, doing = jobs(url, "todo"), jobs(url, "doing")
        if todo or doing:
            log(
                f"queue did NOT drain in {args.drain_timeout:.0f} s: {len(todo)} todo behind {len(doing)} doing {doing}"
            )
        else:
            incremental = clusters(url)
            worker.stop()
            manage(env, "recluster")
            full = clusters(url)
            ok = incremental == full
            log(
                f"clusters after crashes: {len(incremental)}; after a full recompute: {len(full)}; "
                f"{'equal' if ok else f'DIFFERENT ({len(incremental ^ full)} differ)'}"
            )
    finally:
        worker.stop()
        server.stop()
        if not args.keep_db:
            drop_database(url)
    print(
        f"crash_worker: {'OK' if ok else 'FAILED'}; {kills} kill -9 of the worker mid-recomputation, "
        f"{requeued} stalled job(s) re-queued (recovery={args.recovery}); {2 * args.batches} batches; "
        f"{time.monotonic() - started:.0f} s; logs in {logdir}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
