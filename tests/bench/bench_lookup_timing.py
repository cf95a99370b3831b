"""Does the time a lookup takes tell a partner what the exchange stores? (issue 12, item 4)

Not a test: ``python tests/bench/bench_lookup_timing.py [--samples 600] [--code-dir DIR]``.

A lookup of an indicator that only retracted sellers, or the caller's own sellers, hold must answer exactly as
one of an indicator the exchange has never seen ("no match"), and in the same time: otherwise the response
time reveals that someone reported it (the code used to skip a query for unknown tokens: p = 1e-21 over 300
samples). This script measures it end to end:

1. a throwaway PostgreSQL database (``exchange_reliab_lookup_timing``, dropped at start and at the end;
   ``synchronous_commit = off`` unless ``--durable-commits``: WAL flushes only add noise),
   migrated, with two platforms: ``holder`` reports ``--seeded`` sellers through the API and retracts them
   all; ``screen`` (the caller) reports ``--seeded`` sellers of its own; ``--background`` live sellers of
   ``holder`` with other indicators make the tables non-trivial;
2. gunicorn with DEBUG off (production settings, one gthread worker so one keep-alive connection is served
   by one process), serving the code in ``--code-dir`` (default: this checkout; point it at an export of an
   older commit, e.g. ``git archive main | tar -x -C /tmp/old``, to measure the code before a change);
3. ``--warmup`` lookups, then ``--samples`` lookups of each of (a) never-seen indicators (a fresh hash each
   time) and (b) indicators held only by retracted or own sellers, over one keep-alive connection,
   ``--indicators`` per request (default 1), in pairs (one of each, in random order within the pair); the
   latency is send -> response fully read;
4. medians, p90s and a two-sided Mann-Whitney U test (scipy.stats) of (a) against (b), and a Wilcoxon
   signed-rank test of the paired differences (which cancels the drift of a shared machine's load). A small
   p-value means the two are distinguishable by timing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scipy.stats import mannwhitneyu, wilcoxon  # noqa: E402

from tests.reliability.server import (  # noqa: E402
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

DATABASE = "exchange_reliab_lookup_timing"


class Api:
    """One keep-alive HTTP connection to the server (reopened only if the server closes it)."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key, self.reconnects = port, key, 0
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self, method: str, path: str, body: object | None = None, idempotency_key: str = ""
    ) -> tuple[int, bytes, float]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(2):
            try:
                start = time.perf_counter()
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, data, time.perf_counter() - start
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                if attempt:
                    raise
                self.reconnects += 1
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        raise AssertionError("unreachable")


def report(sellers: list[tuple[str, list[str]]]) -> dict[str, object]:
    return {
        "sellers": [
            {
                "seller_ref": ref,
                "status": "confirmed",
                "reasons": ["counterfeit"],
                "reported_at": "2026-01-01T00:00:00+00:00",
                "indicators": [{"kind": "email", "hash": h} for h in hashes],
            }
            for ref, hashes in sellers
        ]
    }


def submit_all(api: Api, sellers: list[tuple[str, list[str]]], batch: int = 500) -> None:
    for start in range(0, len(sellers), batch):
        status, body, _ = api.call(
            "POST", "/api/v1/submissions/", report(sellers[start : start + batch]), str(uuid.uuid4())
        )
        if status != 201:
            raise SystemExit(f"submission failed: {status} {body[:300]!r}")


def seed(port: int, keys: dict[str, str], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Returns (hashes only retracted sellers hold, hashes only the caller's own sellers hold)."""
    holder, screen = Api(port, keys["holder"]), Api(port, keys["screen"])
    retracted = [fake_transport_hash("email", f"retracted-{n}") for n in range(args.seeded)]
    own = [fake_transport_hash("email", f"own-{n}") for n in range(args.seeded)]
    background = [
        (f"live-{n}", [fake_transport_hash("email", f"live-{n}-{i}") for i in range(3)])
        for n in range(args.background)
    ]
    log(f"seeding {args.background} live sellers, {args.seeded} retracted and {args.seeded} own")
    submit_all(holder, background)
    submit_all(holder, [(f"gone-{n}", [h]) for n, h in enumerate(retracted)])
    submit_all(screen, [(f"mine-{n}", [h]) for n, h in enumerate(own)])
    for n in range(args.seeded):
        status, body, _ = holder.call(
            "POST", f"/api/v1/sellers/gone-{n}/retract/", {"reason": "appeal upheld"}
        )
        if status != 200:
            raise SystemExit(f"retraction failed: {status} {body[:300]!r}")
    return retracted, own


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    api: Api, retracted: list[str], own: list[str], args: argparse.Namespace
) -> tuple[dict[str, list[float]], list[float]]:
    """Lookups in pairs, one of each case in random order within the pair and the pairs in sequence, so
    that the two cases see the same load over time. Returns the times per case and, per pair, (b) - (a)."""
    rng = random.Random(args.seed)
    stored, retracted_set = retracted + own, set(retracted)
    times: dict[str, list[float]] = {"unknown": [], "retracted": [], "own": [], "mixed": [], "me": []}
    differences = []
    for n in range(args.warmup // 2 + args.samples):
        pair = ["unknown", "stored"]
        rng.shuffle(pair)
        took = {}
        for case in pair:
            if case == "unknown":
                digests = [
                    fake_transport_hash("email", f"never-{uuid.uuid4()}") for _ in range(args.indicators)
                ]
                kind = "unknown"
            else:
                digests = rng.sample(stored, args.indicators)
                mixed = len({d in retracted_set for d in digests}) > 1
                kind = "mixed" if mixed else "retracted" if digests[0] in retracted_set else "own"
            lookup = {"indicators": [{"kind": "email", "hash": digest} for digest in digests]}
            status, body, seconds = api.call("POST", "/api/v1/lookups/", lookup)
            if status != 200 or any(result["match"] for result in json.loads(body)["results"]):
                raise SystemExit(f"lookup answered {status} {body[:300]!r}")
            took[case] = seconds
            if n >= args.warmup // 2:
                times[kind].append(seconds)
        if n >= args.warmup // 2:
            differences.append(took["stored"] - took["unknown"])
            # The floor, on the same connection: an authenticated request that reads nothing else.
            status, body, seconds = api.call("GET", "/api/v1/me/")
            if status != 200:
                raise SystemExit(f"/me answered {status} {body[:300]!r}")
            times["me"].append(seconds)
    return times, differences


def summarise(times: dict[str, list[float]], differences: list[float]) -> None:
    unknown, stored = times["unknown"], times["retracted"] + times["own"] + times["mixed"]
    print(f"{'case':<34}{'n':>6}{'median ms':>12}{'p90 ms':>10}")
    rows = [
        ("(a) unknown indicator", unknown),
        ("(b) held by retracted or own only", stored),
        ("    (b1) retracted sellers only", times["retracted"]),
        ("    (b2) caller's own sellers only", times["own"]),
        ("    (b3) some of each in one lookup", times["mixed"]),
        ("floor: GET /api/v1/me/", times["me"]),
    ]
    for label, values in rows:
        if not values:
            continue
        median, p90 = statistics.median(values) * 1e3, percentile(values, 0.9) * 1e3
        print(f"{label:<34}{len(values):>6}{median:>12.3f}{p90:>10.3f}")
    test = mannwhitneyu(unknown, stored, alternative="two-sided")
    print(f"Mann-Whitney U (a) vs (b), two-sided: U = {test.statistic:.0f}, p = {test.pvalue:.3g}")
    # The paired test removes the machine's load drift, which the rank test on all samples cannot.
    paired = wilcoxon(differences, alternative="two-sided")
    print(
        f"median of paired differences (b) - (a): {statistics.median(differences) * 1e6:+.0f} us, "
        f"Wilcoxon signed-rank p = {paired.pvalue:.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=600, help="lookups per case (a) and (b)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--indicators", type=int, default=1, help="indicators per lookup, all of one case")
    parser.add_argument("--seeded", type=int, default=200, help="retracted sellers, and own sellers")
    parser.add_argument("--background", type=int, default=5000, help="live sellers with other indicators")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--durable-commits",
        action="store_true",
        help="keep synchronous_commit on (default: off for the bench database, for less noise)",
    )
    parser.add_argument("--code-dir", type=Path, default=ROOT, help="checkout whose code gunicorn serves")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL (no database)")
    parser.add_argument("--keep-database", action="store_true", help="leave the database for EXPLAIN")
    args = parser.parse_args()

    url = database_url(DATABASE, args.server)
    env = production_env(url, task_mode="sync")
    env["PYTHONPATH"] = str(args.code_dir.resolve())
    reset_database(url)
    if not args.durable_commits:
        # Each lookup commits twice (quota, audit row): WAL flushes add to its time and variance on a shared
        # machine without being what is measured. Only this throwaway database is affected.
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{DATABASE}" SET synchronous_commit = off')
    logfile = Path(tempfile.gettempdir()) / f"bench_lookup_timing_{uuid.uuid4().hex[:6]}.log"
    server = Gunicorn(env, free_port(), logfile, workers=1, threads=2)
    server.args += ["--chdir", str(args.code_dir.resolve())]
    try:
        keys = setup(env, "holder", "screen")
        log(f"serving {args.code_dir} on {server.url} (log: {logfile})")
        server.start()
        port = int(server.url.rsplit(":", 1)[1])
        retracted, own = seed(port, keys, args)
        log(f"{2 * args.samples} lookups in random order over one connection")
        api = Api(port, keys["screen"])
        times, differences = measure(api, retracted, own, args)
        print(
            f"code: {args.code_dir.resolve()}  indicators per lookup: {args.indicators}  reconnects: {api.reconnects}"
        )
        summarise(times, differences)
    finally:
        server.stop()
        if not args.keep_database:
            drop_database(url)


if __name__ == "__main__":
    main()
