"""Load test: a real gunicorn on PostgreSQL under sustained ingest plus lookups, for several minutes.

    .venv/bin/python tests/reliability/load_test.py [--duration 180] [--ingest-threads 2] [--lookup-threads 4]
        [--batch-size 100] [--workers 2] [--threads 2] [--task-mode sync|worker]
        [--database exchange_reliab_load] [--server postgres://postgres@127.0.0.1:5432]

Closed-loop client threads, each with its own keep-alive connection: ingest threads POST batches of
``--batch-size`` sellers (4 indicators each; ~5% of the phones and bank accounts shared, so clusters form)
to /api/v1/submissions/ as platform "loadnorth"; lookup threads POST 10 indicators (half of them reported)
to /api/v1/lookups/ as platform "loadsouth". With ``--task-mode worker`` a Procrastinate worker recomputes
clusters in the background (as in production); ``sync`` recomputes inside each request.

Printed every 30 s and at the end: requests/s, sellers/s and looked-up indicators/s, latency p50/p95/p99/max
per endpoint, and the error rate (any answer other than 200/201, or a transport error).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.server import (
    DEFAULT_SERVER,
    Gunicorn,
    Worker,
    database_url,
    drop_database,
    fake_transport_hash,
    free_port,
    log,
    production_env,
    reset_database,
    setup,
)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.units: Counter[str] = Counter()

    def record(self, endpoint: str, seconds: float, outcome: str, units: int = 0) -> None:
        with self.lock:
            self.latency[endpoint].append(seconds)
            self.outcomes[endpoint][outcome] += 1
            if outcome in ("200", "201"):
                self.units[endpoint] += units

    def report(self, elapsed: float, title: str) -> str:
        lines = [f"{title} ({elapsed:.0f} s)"]
        with self.lock:
            for endpoint in sorted(self.latency):
                values = sorted(self.latency[endpoint])
                n = len(values)
                errors = n - self.outcomes[endpoint]["200"] - self.outcomes[endpoint]["201"]

                def pct(p: float, values: list[float] = values, n: int = n) -> float:
                    return values[min(n - 1, int(p * n))] * 1000

                unit = "sellers" if endpoint == "submissions" else "indicators"
                lines.append(
                    f"  {endpoint:<12} {n:6d} req {n / elapsed:7.1f} req/s {self.units[endpoint] / elapsed:8.0f} {unit}/s"
                    f"  p50 {pct(0.5):6.0f} ms  p95 {pct(0.95):6.0f} ms  p99 {pct(0.99):6.0f} ms"
                    f"  max {values[-1] * 1000:6.0f} ms  errors {errors} ({100 * errors / max(n, 1):.2f}%)"
                    + (f" {dict(self.outcomes[endpoint])}" if errors else "")
                )
        return "\n".join(lines)


def ingest_loop(url: str, key: str, thread: int, size: int, stop: threading.Event, stats: Stats) -> None:
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(thread)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    number = 0
    while not stop.is_set():
        reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        sellers = []
        for n in range(size):
            ref = f"i{thread}-{number}-{n}"
            indicators = [
                ("email", ref),
                ("phone", f"{rng.randrange(10**6) if rng.random() > 0.05 else rng.randrange(500)}"),
            ]
            indicators += [
                ("bank_account", f"b{rng.randrange(10**6) if rng.random() > 0.05 else rng.randrange(500)}")
            ]
            indicators += [("store_name", f"s{rng.randrange(10**5)}")]
            sellers.append(
                {
                    "seller_ref": ref,
                    "status": "confirmed",
                    "reasons": ["counterfeit"],
                    "reported_at": reported,
                    "indicators": [{"kind": k, "hash": fake_transport_hash(k, v)} for k, v in indicators],
                }
            )
        body = json.dumps({"sellers": sellers})
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        outcome, started = "transport", time.perf_counter()
        try:
            conn.request("POST", "/api/v1/submissions/", body, headers)
            response = conn.getresponse()
            response.read()
            outcome = str(response.status)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        stats.record("submissions", time.perf_counter() - started, outcome, size)
        number += 1


def lookup_loop(url: str, key: str, thread: int, stop: threading.Event, stats: Stats) -> None:
    host, port = url.removeprefix("http://").split(":")
    rng = random.Random(1000 + thread)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    while not stop.is_set():
        indicators = [
            {
                "kind": "email",
                "hash": fake_transport_hash(
                    "email", f"i{rng.randrange(2)}-{rng.randrange(20)}-{rng.randrange(100)}"
                ),
            }
            for _ in range(5)
        ]
        indicators += [
            {"kind": "email", "hash": fake_transport_hash("email", f"unknown-{rng.random()}")}
            for _ in range(5)
        ]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        outcome, started = "transport", time.perf_counter()
        try:
            conn.request("POST", "/api/v1/lookups/", json.dumps({"indicators": indicators}), headers)
            response = conn.getresponse()
            response.read()
            outcome = str(response.status)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        stats.record("lookups", time.perf_counter() - started, outcome, len(indicators))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--ingest-threads", type=int, default=2)
    parser.add_argument("--lookup-threads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--task-mode", choices=["sync", "worker"], default="worker")
    parser.add_argument("--database", default="exchange_reliab_load")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--max-error-rate", type=float, default=0.001, help="exit 1 above this fraction")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    url = database_url(args.database, args.server)
    reset_database(url)
    env = production_env(url, task_mode=args.task_mode)
    keys = setup(env, "loadnorth", "loadsouth")
    logdir = Path(tempfile.mkdtemp(prefix="load_test_"))
    server = Gunicorn(env, free_port(), logdir / "gunicorn.log", workers=args.workers, threads=args.threads)
    worker = Worker(env, logdir / "worker.log") if args.task_mode == "worker" else None
    server.start()
    if worker:
        worker.start()
    stats, stop = Stats(), threading.Event()
    threads = [
        threading.Thread(
            target=ingest_loop, args=(server.url, keys["loadnorth"], t, args.batch_size, stop, stats)
        )
        for t in range(args.ingest_threads)
    ] + [
        threading.Thread(target=lookup_loop, args=(server.url, keys["loadsouth"], t, stop, stats))
        for t in range(args.lookup_threads)
    ]
    log(
        f"load: {args.ingest_threads} ingest + {args.lookup_threads} lookup threads for {args.duration:.0f} s against "
        f"gunicorn {args.workers}x{args.threads} on PostgreSQL (task mode {args.task_mode})"
    )
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        while (elapsed := time.monotonic() - started) < args.duration:
            time.sleep(min(30, args.duration - elapsed))
            log(stats.report(time.monotonic() - started, "so far"))
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        if worker:
            worker.stop()
        server.stop()
        if not args.keep_db:
            drop_database(url)
    print(
        stats.report(
            elapsed,
            f"load_test: {args.ingest_threads} ingest + {args.lookup_threads} lookup threads, gunicorn "
            f"{args.workers}x{args.threads}, task mode {args.task_mode}",
        )
    )
    total = sum(sum(c.values()) for c in stats.outcomes.values())
    errors = total - sum(c["200"] + c["201"] for c in stats.outcomes.values())
    print(
        f"  overall: {total} requests, {total / elapsed:.1f} req/s, error rate {100 * errors / max(total, 1):.3f}%"
    )
    return 0 if errors <= args.max_error_rate * total else 1


if __name__ == "__main__":
    raise SystemExit(main())
