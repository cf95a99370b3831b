"""Crash test: kill -9 the API server during bulk ingest, restart it, let the partner client retry with
the same Idempotency-Key, and reconcile: zero lost, zero duplicated sightings, over repeated trials.

    .venv/bin/python tests/reliability/crash_ingest.py [--trials 5] [--kills 4] [--batches 30]
        [--batch-size 100] [--database exchange_reliab_crash] [--server postgres://postgres@127.0.0.1:5432]

Each trial ingests ``--batches`` batches through the reference client (`exchange.client.ExchangeClient`,
with its retries) while a killer thread sends SIGKILL to gunicorn's whole process group (master and
workers) ``--kills`` times at random moments and restarts it. A batch whose retries all fail is resumed with
the same Idempotency-Key, as a partner's job would after a crash. Then the database is reconciled against
what was sent: every seller and every (seller, indicator) sighting present exactly once, one Submission
row per idempotency key, and every batch's answer (first or replayed) naming that row. Exit status 0 only if
every trial reconciles. The database is dropped at the end unless ``--keep-db``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange.client import ExchangeClient
from exchange.client.api import ExchangeError
from tests.reliability.server import (
    DEFAULT_SERVER,
    Gunicorn,
    database_url,
    drop_database,
    fake_transport_hash,
    free_port,
    log,
    production_env,
    reset_database,
    setup,
)

KINDS = ("email", "phone", "bank_account", "store_name")


def batch_payload(trial: int, batch: int, size: int, rng: random.Random) -> list[dict]:
    reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    sellers = []
    for n in range(size):
        ref = f"t{trial}-b{batch}-s{n}"
        # Unique indicators plus a few shared ones, so batches also upsert existing indicators.
        values = [("email", f"{ref}@crash.example"), ("phone", f"+4930{trial:02d}{batch:03d}{n:04d}")]
        values.append(("bank_account", f"DE:1000:{rng.randrange(20)}"))
        values.append(("store_name", f"store {rng.randrange(50)}"))
        sellers.append(
            {
                "seller_ref": ref,
                "status": "confirmed",
                "reasons": ["counterfeit"],
                "reported_at": reported,
                "indicators": [{"kind": k, "hash": fake_transport_hash(k, v)} for k, v in values],
            }
        )
    return sellers


class Killer(threading.Thread):
    """Kills the server `kills` times at random moments while ingest runs, restarting it after a pause."""

    def __init__(self, server: Gunicorn, kills: int, window: tuple[float, float], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.server, self.kills, self.window, self.rng = server, kills, window, rng
        self.done = threading.Event()
        self.killed = 0

    def run(self) -> None:
        for _ in range(self.kills):
            if self.done.wait(self.rng.uniform(*self.window)):
                return
            self.server.kill9()
            self.killed += 1
            log(f"  kill -9 #{self.killed}")
            time.sleep(self.rng.uniform(0.2, 1.5))  # down for a moment: the client meets refused connections
            self.server.start()


class CountingOpener:
    """Wraps the client's opener to count what the retries met: 201 (first), 201 replay (the first answer
    again, for a batch whose first attempt was stored but whose answer was lost), and failed attempts."""

    def __init__(self, opener: object) -> None:
        self.opener = opener
        self.statuses: Counter[str] = Counter()

    def open(self, request: object, timeout: float) -> object:
        try:
            response = self.opener.open(request, timeout=timeout)  # type: ignore[attr-defined]
        except Exception as exc:
            self.statuses[type(exc).__name__] += 1
            raise
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        self.statuses[f"{response.status}{' replay' if replayed else ''}"] += 1
        return response


def reconcile(
    url: str, slug: str, trial: int, sent: dict[str, list[dict]], answers: dict[str, dict]
) -> list[str]:
    import psycopg

    problems = []
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT s.seller_ref, count(g.id), count(DISTINCT g.indicator_id)
              FROM exchange_seller s JOIN accounts_platform p ON p.id = s.platform_id
              LEFT JOIN exchange_sighting g ON g.seller_id = s.id
             WHERE p.slug = %s AND s.seller_ref LIKE %s GROUP BY s.seller_ref
            """,
            [slug, f"t{trial}-%"],
        ).fetchall()
        stored = {ref: (n, distinct) for ref, n, distinct in rows}
        submissions: dict[str, str] = dict(
            conn.execute(
                """
                SELECT u.idempotency_key, u.ref FROM exchange_submission u JOIN accounts_platform p ON p.id = u.platform_id
                 WHERE p.slug = %s AND idempotency_key LIKE %s
                """,
                [slug, f"crash-t{trial}-%"],
            ).fetchall()
        )
    expected = {s["seller_ref"]: len(s["indicators"]) for batch in sent.values() for s in batch}
    lost = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = sorted(ref for ref, n in expected.items() if ref in stored and stored[ref] != (n, n))
    if lost:
        problems.append(f"{len(lost)} sellers lost, e.g. {lost[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected sellers, e.g. {extra[:3]}")
    if wrong:
        problems.append(f"{len(wrong)} sellers with lost or duplicated sightings, e.g. {wrong[:3]}")
    if set(submissions) != set(sent):
        problems.append(f"submissions {len(submissions)} != batches {len(sent)}")
    mismatched = [k for k, a in answers.items() if submissions.get(k) != a.get("submission")]
    if mismatched:
        problems.append(f"{len(mismatched)} answers name another submission than the stored one")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kills", type=int, default=4, help="kill -9 per trial")
    parser.add_argument("--batches", type=int, default=30, help="batches per trial")
    parser.add_argument("--batch-size", type=int, default=100, help="sellers per batch (4 indicators each)")
    parser.add_argument("--database", default="exchange_reliab_crash")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL (no database)")
    parser.add_argument("--task-mode", default="sync", choices=["sync", "worker"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    url = database_url(args.database, args.server)
    reset_database(url)
    env = production_env(url, task_mode=args.task_mode)
    keys = setup(env, "crashmarket")
    logdir = Path(tempfile.mkdtemp(prefix="crash_ingest_"))
    server = Gunicorn(env, free_port(), logdir / "gunicorn.log")
    server.start()
    client = ExchangeClient(
        server.url, keys["crashmarket"], timeout=30, max_retries=8, backoff_base=0.1, backoff_max=1.0
    )
    counting = CountingOpener(client._opener)
    client._opener = counting  # type: ignore[assignment]
    survived, total_kills, total_batches, resumed = 0, 0, 0, 0
    started = time.monotonic()
    try:
        for trial in range(1, args.trials + 1):
            sent = {
                f"crash-t{trial}-b{b}": batch_payload(trial, b, args.batch_size, rng)
                for b in range(args.batches)
            }
            answers: dict[str, dict] = {}
            # Kill while the batches are in flight: spread the kills over the expected ingest time.
            killer = Killer(server, args.kills, (0.3, max(0.6, args.batches * 0.1)), rng)
            killer.start()
            for key, sellers in sent.items():
                for _attempt in range(20):
                    try:
                        answers[key] = client.submit_batch(sellers, idempotency_key=key)
                        break
                    except ExchangeError as exc:  # retries exhausted while the server was down: resume
                        resumed += 1
                        log(f"  resume {key} after: {exc}")
                        time.sleep(1)
                else:
                    raise SystemExit(f"batch {key} never went through")
            killer.done.set()
            killer.join()
            if server.proc is None or server.proc.poll() is not None:
                server.start()
            total_kills += killer.killed
            total_batches += len(sent)
            problems = reconcile(url, "crashmarket", trial, sent, answers)
            # A partner that is unsure resends: every resend must be a replay (the first answer) with no second effect.
            for key in rng.sample(sorted(sent), max(1, len(sent) // 5)):
                assert client.submit_batch(sent[key], idempotency_key=key) == answers[key], key
            met = dict(counting.statuses)
            counting.statuses.clear()
            status = "OK" if not problems else "FAILED: " + "; ".join(problems)
            log(f"trial {trial}: {len(sent)} batches, {killer.killed} kills, attempts {met}: {status}")
            survived += not problems
    finally:
        server.stop()
        if not args.keep_db:
            drop_database(url)
    sellers = total_batches * args.batch_size
    print(
        f"crash_ingest: {survived}/{args.trials} trials reconciled; {total_kills} kill -9 of gunicorn; "
        f"{total_batches} batches, {sellers} sellers, {sellers * 4} sightings; {resumed} client resumes; "
        f"{time.monotonic() - started:.0f} s; logs in {logdir}"
    )
    return 0 if survived == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
