"""Crash test: kill -9 the API server while partners screen lookups, restart it, and reconcile the quota and
the audit log: no lookup is answered without its audit entry, and no charge is recorded without one.

    .venv/bin/python tests/reliability/crash_lookup.py [--trials 3] [--kills 3] [--threads 4] [--seconds 6]
        [--database exchange_reliab_lookup] [--server postgres://postgres@127.0.0.1:5432]

One platform reports sellers (some linked across two of its batches' shared indicators, so lookups find
clusters), another screens them: ``--threads`` client threads, each with the reference client
(`exchange.client.ExchangeClient`, no retries, so one call is one request) send lookups of 1 to 10
indicators, half known, for ``--seconds`` per trial, while a killer thread sends SIGKILL to gunicorn's whole
process group ``--kills`` times at random moments and restarts it. Every answer (200) is recorded with its size.
Then the database is reconciled:

- every answered lookup has its audit entry: entries >= answers, and for each lookup size at least as many
  entries of that size as answers of it (an answer whose entry is missing would show as a shortfall);
- nothing is charged unaudited or audited uncharged: the day's ``LookupUsage`` count for the key equals the sum
  of the audited lookups' indicators, exactly;
- no entry without a request: entries <= requests sent.

Exit status 0 only if every trial reconciles. The database is dropped at the end unless ``--keep-db``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange.client import ExchangeClient
from exchange.client.api import ExchangeError
from tests.reliability.crash_ingest import Killer
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


def reported_sellers(count: int) -> list[dict]:
    """`count` sellers in pairs sharing a phone (so each pair is a cluster), each with its own email."""
    from datetime import UTC, datetime, timedelta

    reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    return [
        {
            "seller_ref": f"r{n}",
            "status": "confirmed",
            "reasons": ["counterfeit"],
            "reported_at": reported,
            "indicators": [
                {"kind": "email", "hash": fake_transport_hash("email", f"r{n}@crash.example")},
                {"kind": "phone", "hash": fake_transport_hash("phone", f"+4930{n // 2:06d}")},
            ],
        }
        for n in range(count)
    ]


class Screener(threading.Thread):
    """Sends lookups until `done`: 1-10 indicators, half of them reported emails, half never seen."""

    def __init__(self, client: ExchangeClient, sellers: int, done: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.sellers, self.done = client, sellers, done
        self.rng = random.Random(seed)
        self.sent = 0
        self.answered: Counter[int] = Counter()  # lookup size -> answers (200)
        self.failed: Counter[str] = Counter()

    def run(self) -> None:
        while not self.done.is_set():
            size = self.rng.randint(1, 10)
            indicators = [
                {"kind": "email", "hash": fake_transport_hash("email", self._value(i))} for i in range(size)
            ]
            self.sent += 1
            try:
                answer = self.client.lookup(indicators)
            except ExchangeError as exc:
                self.failed[type(exc).__name__] += 1
                time.sleep(0.05)  # the server is down: do not spin
                continue
            assert len(answer["results"]) == size, answer
            self.answered[size] += 1

    def _value(self, i: int) -> str:
        if i % 2 == 0:
            return f"r{self.rng.randrange(self.sellers)}@crash.example"
        return f"never-{self.rng.random()}@crash.example"


def reconcile(url: str, prefix: str, sent: int, answered: Counter[int]) -> tuple[list[str], Counter[int]]:
    import psycopg

    with psycopg.connect(url) as conn:
        audited: Counter[int] = Counter(
            dict(
                conn.execute(
                    """
                    SELECT (details->>'indicators')::int, count(*) FROM accounts_auditentry
                     WHERE action = 'lookup' AND actor = %s GROUP BY 1
                    """,
                    [prefix],
                ).fetchall()
            )
        )
        charged_row = conn.execute(
            """
            SELECT coalesce(sum(u.count), 0) FROM exchange_lookupusage u
              JOIN accounts_apikey k ON k.id = u.api_key_id WHERE k.lookup = %s
            """,
            [prefix.split("_")[1]],
        ).fetchone()
    charged = charged_row[0] if charged_row else 0
    problems = []
    unaudited = {size: n - audited[size] for size, n in answered.items() if audited[size] < n}
    if unaudited:
        problems.append(f"answered lookups without an audit entry, by size: {unaudited}")
    audited_indicators = sum(size * n for size, n in audited.items())
    if charged != audited_indicators:
        problems.append(f"quota charged {charged} indicators, audit entries count {audited_indicators}")
    if audited.total() > sent:
        problems.append(f"{audited.total()} audit entries for {sent} requests")
    return problems, audited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 per trial")
    parser.add_argument("--threads", type=int, default=4, help="screening client threads")
    parser.add_argument("--seconds", type=float, default=6.0, help="screening time per trial")
    parser.add_argument("--sellers", type=int, default=200, help="reported sellers (in linked pairs)")
    parser.add_argument("--database", default="exchange_reliab_lookup")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL (no database)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    url = database_url(args.database, args.server)
    reset_database(url)
    env = production_env(url)
    keys = setup(env, "reporter", "screener")
    logdir = Path(tempfile.mkdtemp(prefix="crash_lookup_"))
    server = Gunicorn(env, free_port(), logdir / "gunicorn.log")
    server.start()
    reporter = ExchangeClient(server.url, keys["reporter"], timeout=30)
    reporter.submit_batch(reported_sellers(args.sellers), idempotency_key="crash-lookup-sellers")
    survived, total_kills, total_sent = 0, 0, 0
    all_answered, all_failed = Counter[int](), Counter[str]()
    started = time.monotonic()
    try:
        # The key's non-secret part ("bax_<lookup>"), which its audit entries name.
        prefix = "_".join(keys["screener"].split("_")[:2])
        for trial in range(1, args.trials + 1):
            done = threading.Event()
            screeners = [
                Screener(
                    ExchangeClient(server.url, keys["screener"], timeout=10, max_retries=0),
                    args.sellers,
                    done,
                    rng.randrange(2**32),
                )
                for _ in range(args.threads)
            ]
            killer = Killer(server, args.kills, (0.3, max(0.6, args.seconds / (args.kills + 1))), rng)
            for thread in [*screeners, killer]:
                thread.start()
            time.sleep(args.seconds)
            killer.done.set()
            killer.join()
            if server.proc is None or server.proc.poll() is not None:
                server.start()
            done.set()
            for screener in screeners:
                screener.join()
            sent = sum(s.sent for s in screeners)
            answered = sum((s.answered for s in screeners), Counter[int]())
            failed = sum((s.failed for s in screeners), Counter[str]())
            total_sent += sent
            all_answered += answered
            all_failed += failed
            total_kills += killer.killed
            # Cumulative over trials: the database holds every trial's entries.
            problems, audited = reconcile(url, prefix, total_sent, all_answered)
            status = "OK" if not problems else "FAILED: " + "; ".join(problems)
            log(
                f"trial {trial}: {sent} lookups sent, {answered.total()} answered, failed {dict(failed)}, "
                f"{killer.killed} kills, {audited.total()} audited in all: {status}"
            )
            survived += not problems
    finally:
        server.stop()
        if not args.keep_db:
            drop_database(url)
    print(
        f"crash_lookup: {survived}/{args.trials} trials reconciled; {total_kills} kill -9 of gunicorn; "
        f"{total_sent} lookups sent, {all_answered.total()} answered, "
        f"{all_failed.total()} failed while the server was down; "
        f"{time.monotonic() - started:.0f} s; logs in {logdir}"
    )
    return 0 if survived == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
