"""Benchmark: full recluster from PostgreSQL, and incremental recomputation after a 1,000-seller submission.

Not a test. Run:

    python tests/bench/bench_recluster.py --sizes 100000,1000000,5000000
    python tests/bench/bench_recluster.py --sizes 1000000,5000000 --engines memory,spark

For each size (number of sightings) a fresh database `exchange_bench_graph` is filled by COPY with sellers on
five platforms (~5 indicators each; 3% of sellers in small planted rings sharing indicators, a few hubs),
then, in a fresh process per size so peak memory is per size:

- full recluster (first build: every cluster new) and a second full run (no change): wall time split into
  read / link / write, and peak RSS;
- the floor: the same read (binary COPY of shared sightings) + scipy connected components of the
  seller-indicator graph, measured in the same process;
- incremental: a 1,000-seller submission through `exchange.ingest.do_submit` followed by
  `recluster_incremental` on its sellers (what the worker does), timed separately.

With `--engines memory,spark`, another fresh process per size, before the memory engine's, runs the Spark
engine (`recluster --engine spark`, local mode, `--master` to change) on the same database: a first build and
a second run, then its clusters are removed (the memory engine builds from the same state); it prints the Spark session's start, both runs' read / link /
write, the large-star/small-star rounds, the driver's peak RSS and the local Spark JVM's, and whether its
clusters equal the memory engine's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DB = "exchange_bench_graph"
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
ENV = {
    "DATABASE_URL": DB_URL,
    "SECRET_KEY": "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "EXCHANGE_PEPPERS": "1:YmVuY2gtcGVwcGVyLWJlbmNoLXBlcHBlci1iZW5jaC1wZXBwZXI=",
    "ALLOWED_HOSTS": "localhost",
    "EXCHANGE_TASK_MODE": "sync",
    "LOG_LEVEL": "WARNING",
}
KINDS = ["email", "phone", "bank_account", "store_name", "shipping_address", "device_id", "tax_id"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **ENV}, check=True
    )


def clusters_digest() -> str:
    """A digest of the live clusters' member sets (cluster ids differ between engines' first builds)."""
    import hashlib

    from graph.models import ClusterMember

    members: dict[int, list[int]] = {}
    for cluster_id, seller_id in ClusterMember.objects.values_list("cluster_id", "seller_id").iterator(
        chunk_size=20000
    ):
        members.setdefault(cluster_id, []).append(seller_id)
    canonical = sorted(tuple(sorted(m)) for m in members.values())
    return hashlib.sha256(repr(canonical).encode()).hexdigest()[:16]


def jvm_peak_rss_mib(session: Any) -> float:
    """The local Spark JVM's peak RSS (VmHWM): in local mode the executors run inside it."""
    pid = session.sparkContext._gateway.proc.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthesize(sightings: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(seller, indicator, kind) rows: mostly unique indicators, rings sharing some, and a few hubs."""
    rng = np.random.default_rng(seed)
    sellers = sightings // 5
    seller = np.repeat(np.arange(1, sellers + 1, dtype=np.int64), 5)
    kind = np.tile(np.arange(5, dtype=np.int64), sellers)
    indicator = np.arange(1, seller.size + 1, dtype=np.int64)
    # Rings: 3% of sellers in groups of 2-6 sharing one strong indicator (their email) or two weak ones.
    ring_sellers = rng.choice(sellers, size=int(sellers * 0.03), replace=False)
    groups = np.array_split(ring_sellers, max(1, ring_sellers.size // 4))
    for group in groups:
        rows = group * 5  # the seller's email row
        indicator[rows] = indicator[rows[0]]
        if rng.random() < 0.3:  # a weak pair too (store name + shipping address)
            indicator[group * 5 + 3] = indicator[group[0] * 5 + 3]
            indicator[group * 5 + 4] = indicator[group[0] * 5 + 4]
    # Hubs: a freight forwarder's address and a support phone on 0.5% of sellers each.
    for column in (4, 1):
        hub_sellers = rng.choice(sellers, size=max(30, sellers // 200), replace=False)
        indicator[hub_sellers * 5 + column] = indicator[hub_sellers[0] * 5 + column]
    unique, indicator = np.unique(indicator, return_inverse=True)
    return seller, indicator.astype(np.int64) + 1, kind, sellers, int(unique.size)


def fill(sightings: int) -> dict[str, float]:
    return fill_rows(*synthesize(sightings))


def fill_rows(
    seller: np.ndarray, indicator: np.ndarray, kind: np.ndarray, n_sellers: int, n_indicators: int
) -> dict[str, float]:
    """COPY sellers (on five platforms), indicators and sightings given as (seller, indicator, kind) rows."""
    import psycopg

    kind_of_indicator = np.zeros(n_indicators + 1, dtype=np.int64)
    kind_of_indicator[indicator] = kind
    holders = np.bincount(indicator, minlength=n_indicators + 1)  # what ingest maintains
    now = datetime.now(UTC)
    reported = now - timedelta(days=3)
    started = time.perf_counter()
    with psycopg.connect(DB_URL) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO accounts_platform (name, slug, active, default_region, report_recipients, "
            "report_cadence, stix_tlp, webhook_url, webhook_secret_nonce, created_at) "
            "SELECT 'P' || g, 'p' || g, true, 'DE', '[]', 'off', 'amber+strict', '', '', now() "
            "FROM generate_series(1, 5) g"
        )
        with cur.copy(
            "COPY exchange_seller (id, platform_id, seller_ref, status, reason_codes, first_reported_at, "
            "reported_at, expires_at, retraction_reason, retracted_by, created_at, updated_at) FROM STDIN"
        ) as copy:
            buffer = io.StringIO()
            for s in range(1, n_sellers + 1):
                buffer.write(
                    f"{s}\t{s % 5 + 1}\ts{s}\tconfirmed\t|counterfeit|\t{reported}\t{reported}\t"
                    f"{now + timedelta(days=300)}\t\t\t{now}\t{now}\n"
                )
                if s % 50000 == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        with cur.copy(
            "COPY exchange_indicator (id, kind, token, key_version, first_seen, linking, linking_reason, "
            "linking_changed_by, holders) FROM STDIN"
        ) as copy:
            buffer = io.StringIO()
            for i in range(1, n_indicators + 1):
                buffer.write(
                    f"{i}\t{KINDS[kind_of_indicator[i]]}\t{i:064x}\t1\t{reported}\tauto\t\t\t{holders[i]}\n"
                )
                if i % 100000 == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        with cur.copy(
            "COPY exchange_sighting (seller_id, indicator_id, first_seen, last_seen) FROM STDIN"
        ) as copy:
            stamp = str(reported)
            for start in range(0, seller.size, 200000):
                chunk = "".join(
                    f"{s}\t{i}\t{stamp}\t{stamp}\n"
                    for s, i in zip(
                        seller[start : start + 200000].tolist(),
                        indicator[start : start + 200000].tolist(),
                        strict=True,
                    )
                )
                copy.write(chunk)
        for table in ("exchange_seller", "exchange_indicator", "exchange_sighting", "accounts_platform"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - constant table names
            )
        conn.commit()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # The fill's gigabytes of WAL flushed now, not by a checkpoint running beside the measured recluster
        # (PostgreSQL starts one per max_wal_size of WAL and spreads its writes over the next minutes).
        conn.execute("CHECKPOINT")
    return {"fill_s": time.perf_counter() - started, "sellers": n_sellers, "indicators": n_indicators}


def measure_floor() -> dict[str, float]:
    """The full recluster's floor, in the calling (Django set-up) process: the same read of shared sightings
    (`floor_read_s`), then a pure in-memory pass of SciPy connected components over the seller-indicator graph
    (`floor_cc_s`): what any rebuild must at least do, with nothing written."""
    from django.db import connection
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from graph import clustering

    started = time.perf_counter()
    connection.ensure_connection()
    columns = clustering.read_shared(datetime.now(UTC))
    read_s = time.perf_counter() - started
    n = int(max(columns.seller.max(initial=0), 0)) + 1
    started = time.perf_counter()
    graph = coo_matrix(
        (np.ones(len(columns), dtype=np.int8), (columns.seller, columns.indicator + n)),
        shape=(n + int(columns.indicator.max(initial=0)) + 1,) * 2,
    )
    connected_components(graph, directed=False)
    return {"floor_read_s": read_s, "floor_cc_s": time.perf_counter() - started}


def measure(sightings: int) -> dict[str, Any]:
    """Runs in a fresh process per size (django set up against the filled database)."""
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()
    from django.conf import settings

    from accounts.models import Platform
    from exchange.ingest import do_submit
    from graph import clustering

    out: dict[str, Any] = {"sightings": sightings}
    started = time.perf_counter()
    first = clustering.recluster_full()
    out["full_first_s"] = time.perf_counter() - started
    out["full_first_parts"] = {k: round(v, 3) for k, v in first.seconds.items()}
    out["clusters"] = first.clusters
    out["clusters_digest"] = clusters_digest()
    out["cross_platform"] = first.cross_platform
    out["shared_rows"] = first.sightings
    started = time.perf_counter()
    second = clustering.recluster_full()
    out["full_again_s"] = time.perf_counter() - started
    out["full_again_parts"] = {k: round(v, 3) for k, v in second.seconds.items()}
    out["peak_rss_mib_full"] = round(peak_rss_mib())

    out.update(measure_floor())
    out["link_vs_cc"] = round(first.seconds["link"] / max(out["floor_cc_s"], 1e-9), 1)

    # Incremental: three 1,000-seller submissions, each sharing some indicators with existing sellers.
    platform = Platform.objects.get(slug="p1")
    times = []
    rng = np.random.default_rng(sightings)
    for batch in range(3):
        sellers = []
        for i in range(1000):
            indicators = [{"kind": "email", "hash": f"{rng.integers(1 << 62):064x}"} for _ in range(4)]
            if i % 20 == 0:  # every 20th seller shares a phone with four others of the batch: new clusters
                indicators.append({"kind": "phone", "hash": f"{batch:032x}{i // 100:032x}"})
            sellers.append(
                {
                    "seller_ref": f"inc-{batch}-{i}",
                    "status": "confirmed",
                    "reasons": ["counterfeit"],
                    "reported_at": datetime.now(UTC).isoformat(),
                    "indicators": indicators,
                }
            )
        body = json.dumps({"sellers": sellers}).encode()
        # Worker mode: the submission only enqueues its recomputation (as through the API); time it alone.
        settings.EXCHANGE_TASK_MODE = "worker"
        result = do_submit(platform, None, f"bench-{batch}", body, json.loads(body))
        ids = list(
            Platform.objects.get(slug="p1")
            .sellers.filter(seller_ref__startswith=f"inc-{batch}-")
            .values_list("id", flat=True)
        )
        started = time.perf_counter()
        summary = clustering.recluster_incremental(ids)
        times.append(time.perf_counter() - started)
        out.setdefault("incremental_scope", []).append(summary.sellers_in_scope)
        assert result.submission.sellers == 1000
    out["incremental_s"] = [round(t, 3) for t in times]
    out["peak_rss_mib"] = round(peak_rss_mib())
    return out


def measure_spark(sightings: int, master: str) -> dict[str, Any]:
    """The Spark engine on the filled database, in a fresh process before the memory engine's: a first build
    and a second run; then its clusters are removed, so the memory engine builds from the same state."""
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()
    from django.db import connection

    from graph import clustering
    from graph.linking.spark import SparkComponents, spark_session

    out: dict[str, Any] = {"sightings": sightings, "master": master}
    started = time.perf_counter()
    with spark_session(master) as session:
        out["start_s"] = time.perf_counter() - started
        for run in ("first", "again"):
            labeller = SparkComponents(session)
            started = time.perf_counter()
            summary = clustering.recluster_full(labeller=labeller, engine="spark")
            out[f"full_{run}_s"] = time.perf_counter() - started
            out[f"full_{run}_parts"] = {k: round(v, 3) for k, v in summary.seconds.items()}
            out[f"rounds_{run}"] = labeller.rounds
            if run == "first":
                out["clusters"] = summary.clusters
                out["clusters_digest"] = clusters_digest()
        out["jvm_peak_rss_mib"] = round(jvm_peak_rss_mib(session))
    out["peak_rss_mib"] = round(peak_rss_mib())
    with connection.cursor() as cursor:
        # Memberships and events have no foreign key for CASCADE to follow (graph.models): named.
        cursor.execute(
            "TRUNCATE graph_actorcluster, graph_clustermember, graph_clusterevent, graph_pendingmerge CASCADE"
        )
    return out


def run_one(
    size: int, *extra: str, script: str = __file__, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `script --one SIZE ...` in a fresh process and return the JSON it prints last (also echoed)."""
    proc = subprocess.run(
        [sys.executable, script, "--one", str(size), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(ENV if env is None else env)},
        check=False,
    )
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(proc.returncode)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"   {result}", file=sys.stderr)
    return result


def print_engines(rows: list[dict[str, Any]], spark_rows: list[dict[str, Any]]) -> None:
    """Both engines' full rebuilds per size: the Spark engine's against the memory engine's."""
    print()
    print(
        f"{'sightings':>10} {'engine':>7} {'start s':>8} {'1st build s':>11} {'(read/link/write)':>20} "
        f"{'again s':>8} {'(read/link/write)':>20} {'CC rounds':>14} {'driver MiB':>10} {'JVM MiB':>8} "
        f"{'same clusters':>13}"
    )
    for memory, spark in zip(rows, spark_rows, strict=True):
        for engine, r in (("memory", memory), ("spark", spark)):
            first, again = r["full_first_parts"], r["full_again_parts"]
            rounds = ",".join(str(n) for n in r.get("rounds_first", [])) or "-"
            same = (
                "-"
                if engine == "memory"
                else ("yes" if r["clusters_digest"] == memory["clusters_digest"] else "NO")
            )
            print(
                f"{r['sightings']:>10} {engine:>7} {r.get('start_s', 0.0):>8.2f} {r['full_first_s']:>11.2f} "
                f"{f'{first["read"]:.2f}/{first["link"]:.2f}/{first["write"]:.2f}':>20} "
                f"{r['full_again_s']:>8.2f} {f'{again["read"]:.2f}/{again["link"]:.2f}/{again["write"]:.2f}':>20} "
                f"{rounds:>14} {r.get('peak_rss_mib_full', r['peak_rss_mib']):>10} "
                f"{r.get('jvm_peak_rss_mib', '-'):>8} {same:>13}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument(
        "--engines", default="memory", help="memory, or memory,spark to time the Spark engine beside it"
    )
    parser.add_argument("--master", default="local[*]", help="the Spark engine's master URL")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",")]
    if set(engines) - {"memory", "spark"} or "memory" not in engines:
        parser.error("--engines takes memory or memory,spark")
    if args.one:
        print(
            json.dumps(measure_spark(args.one, args.master) if args.engine == "spark" else measure(args.one))
        )
        return
    rows = []
    spark_rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"== {size} sightings: filling {DB} by COPY", file=sys.stderr)
        reset_database()
        info = fill(size)
        print(
            f"   filled in {info['fill_s']:.1f}s ({info['sellers']} sellers, {info['indicators']} indicators)",
            file=sys.stderr,
        )
        if "spark" in engines:
            print(f"   the Spark engine ({args.master})", file=sys.stderr)
            spark_rows.append(run_one(size, "--engine", "spark", "--master", args.master))
        rows.append(run_one(size))
    print()
    print(
        f"{'sightings':>10} {'shared':>8} {'clusters':>8} {'full 1st s':>10} {'(read/link/write)':>20} "
        f"{'full again s':>12} {'floor read+CC s':>15} {'link/CC':>8} {'peak MiB':>8} {'incremental s (x3)':>20}"
    )
    for r in rows:
        p = r["full_first_parts"]
        print(
            f"{r['sightings']:>10} {r['shared_rows']:>8} {r['clusters']:>8} {r['full_first_s']:>10.2f} "
            f"{f'{p["read"]:.2f}/{p["link"]:.2f}/{p["write"]:.2f}':>20} {r['full_again_s']:>12.2f} "
            f"{f'{r["floor_read_s"]:.2f}+{r["floor_cc_s"]:.3f}':>15} {r['link_vs_cc']:>8} "
            f"{r['peak_rss_mib']:>8} {', '.join(str(t) for t in r['incremental_s']):>20}"
        )
    if spark_rows:
        print_engines(rows, spark_rows)


if __name__ == "__main__":
    main()
