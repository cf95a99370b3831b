"""Capacity of one machine, measured across sizes and extrapolated with the measured growth (docs/scaling.md).

Not a test. Run:

    python tests/bench/bench_capacity.py --sizes 250000,1000000,5000000 --shared 0.07

For each size (number of sightings) a fresh PostgreSQL database `exchange_bench_capacity` is filled by COPY
(tests/bench/bench_recluster.py's loader) with sellers on five platforms, 5 indicators each, and a chosen
fraction of sightings on indicators that several sellers hold (rings of 3-6 sharing a strong indicator, half of
them also a weak pair; pairs sharing a phone; two hubs), then measured in a fresh process:

- disk: heap and index bytes of sightings, indicators and sellers (pg_total_relation_size), per sighting;
- the lookup's index: the depth of the token B-tree (pageinspect's bt_metap) and the latency of the lookup's
  one query (exchange.lookups.LIVE_HOLDERS_SQL) for 10 stored tokens, warm, p50/p99 over 2,000 queries,
  beside a floor: `SELECT 1` on the same connection;
- the full recluster (graph.clustering.recluster_full), first build then an unchanged rebuild: wall time split
  read/link/write, the process's peak RSS above its RSS before the rebuild, and the floor measured after them
  in the same process (`bench_recluster.measure_floor`: the same read plus SciPy connected components).

It then fits a line through the sizes (least squares: bytes per sighting, seconds and MiB per shared sighting)
and prints what it predicts at 100M and 1B sightings with the same shared fraction. The database is left for
EXPLAIN; `--drop` removes it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_recluster  # noqa: E402 - after the path set-up

DB = "exchange_bench_capacity"
ADMIN_URL = bench_recluster.ADMIN_URL
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
ENV = {**bench_recluster.ENV, "DATABASE_URL": DB_URL}
TABLES = ("exchange_sighting", "exchange_indicator", "exchange_seller")
TARGETS = (100_000_000, 1_000_000_000)


def synthesize(sightings: int, shared: float, seed: int = 11) -> tuple[Any, Any, Any, int, int]:
    """(seller, indicator, kind) rows, 5 per seller, about ``shared`` of them on indicators held by >= 2.

    Each ring seller shares 1 or 3 of its 5 rows (the ring's email, and for half the rings also store name and
    shipping address), each pair seller 1 (a phone), each hub seller 1: the mix is sized to the target."""
    rng = np.random.default_rng(seed)
    sellers = sightings // 5
    seller = np.repeat(np.arange(1, sellers + 1, dtype=np.int64), 5)
    kind = np.tile(np.arange(5, dtype=np.int64), sellers)
    indicator = np.arange(1, seller.size + 1, dtype=np.int64)
    order = rng.permutation(sellers)
    hub_share, pair_share = 0.01, 0.02  # of sightings: two hubs, pairs sharing a phone
    ring_rows_per_seller = 2.0  # 1 or 3 shared rows per ring seller, half each
    ring_sellers = int(max(shared - hub_share - pair_share, 0.0) * sightings / ring_rows_per_seller)
    pair_sellers = int(pair_share * sightings) // 2 * 2
    hub_sellers = int(hub_share * sightings)
    ring, rest = order[:ring_sellers], order[ring_sellers:]
    pairs, rest = rest[:pair_sellers], rest[pair_sellers:]
    hubs = rest[:hub_sellers]
    start = 0
    while start < ring.size:
        group = ring[start : start + int(rng.integers(3, 7))]
        start += group.size
        indicator[group * 5] = indicator[group[0] * 5]  # email: strong
        if rng.random() < 0.5:  # store name + shipping address: a weak pair
            indicator[group * 5 + 3] = indicator[group[0] * 5 + 3]
            indicator[group * 5 + 4] = indicator[group[0] * 5 + 4]
    indicator[pairs[1::2] * 5 + 1] = indicator[pairs[0::2] * 5 + 1]  # phone: strong
    for column, half in ((4, hubs[: hubs.size // 2]), (1, hubs[hubs.size // 2 :])):
        if half.size:
            indicator[half * 5 + column] = indicator[half[0] * 5 + column]
    unique, indicator = np.unique(indicator, return_inverse=True)
    return seller, indicator.astype(np.int64) + 1, kind, sellers, int(unique.size)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc; ru_maxrss is only the high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mib()


def measure(sightings: int, n_indicators: int) -> dict[str, Any]:
    """In a fresh process per size: disk, the lookup's query, and a full recluster."""
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()
    from django.db import connection

    from exchange.lookups import LIVE_HOLDERS_SQL
    from graph import clustering

    out: dict[str, Any] = {"sightings": sightings}
    # The recluster first, while the process holds only Django: its peak RSS is then the rebuild's own.
    before = current_rss_mib()
    started = time.perf_counter()
    summary = clustering.recluster_full()
    out["recluster_s"] = round(time.perf_counter() - started, 3)
    out["recluster_parts"] = {k: round(v, 3) for k, v in summary.seconds.items()}
    out["shared_sightings"] = summary.sightings
    out["clusters"] = summary.clusters
    started = time.perf_counter()
    again = clustering.recluster_full()
    out["again_s"] = round(time.perf_counter() - started, 3)
    out["again_parts"] = {k: round(v, 3) for k, v in again.seconds.items()}
    out["rss_before_mib"] = round(before)
    out["peak_rss_mib"] = round(peak_rss_mib())
    out.update({k: round(v, 3) for k, v in bench_recluster.measure_floor().items()})
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                "SELECT pg_relation_size(%s), pg_indexes_size(%s), pg_total_relation_size(%s)",
                [table, table, table],
            )
            heap, indexes, total = cursor.fetchone()
            out[table] = {"heap": heap, "indexes": indexes, "total": total}
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        cursor.execute("SELECT level FROM bt_metap('indicator_unique_token')")
        out["token_btree_levels"] = cursor.fetchone()[0] + 1
        rng = np.random.default_rng(sightings)
        now = datetime.now(UTC)
        timings: list[float] = []
        floor: list[float] = []
        for round_ in range(2200):
            tokens = [f"{int(i):064x}" for i in rng.integers(1, n_indicators + 1, size=10)]
            started = time.perf_counter()
            cursor.execute(LIVE_HOLDERS_SQL, {"tokens": tokens, "now": now, "platform": 1})
            cursor.fetchall()
            elapsed = time.perf_counter() - started
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            if round_ >= 200:  # warm-up
                timings.append(elapsed)
                floor.append(time.perf_counter() - started)
    out["lookup_ms"] = [round(float(np.percentile(timings, q)) * 1000, 3) for q in (50, 99)]
    out["floor_ms"] = [round(float(np.percentile(floor, q)) * 1000, 3) for q in (50, 99)]
    return out


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x (b alone when there is one point)."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    b, a = np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), 1)
    return float(a), float(b)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="250000,1000000,5000000")
    parser.add_argument(
        "--shared", type=float, default=0.07, help="fraction of sightings on shared indicators"
    )
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    bench_recluster.DB_URL = DB_URL  # the loader writes to this benchmark's own database
    bench_recluster.DB = DB
    bench_recluster.ENV = ENV
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"== {size:,} sightings: filling {DB} by COPY", file=sys.stderr)
        bench_recluster.reset_database()
        seller, indicator, kind, n_sellers, n_indicators = synthesize(size, args.shared)
        info = bench_recluster.fill_rows(seller, indicator, kind, n_sellers, n_indicators)
        print(f"   filled in {info['fill_s']:.1f}s; measuring", file=sys.stderr)
        rows.append(bench_recluster.run_one(size, str(n_indicators), script=__file__, env=ENV))
    if args.drop:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    print()
    print(
        f"{'sightings':>11} {'shared':>7} {'disk':>10} {'B/sighting':>10} {'btree':>5} "
        f"{'lookup p50/p99 ms':>17} {'floor p50/p99':>13} {'recluster s':>11} {'(read/link/write)':>17} "
        f"{'again s':>7} {'(read/link/write)':>17} {'floor read+CC':>13} {'peak MiB':>8}"
    )
    for r in rows:
        disk = sum(r[t]["total"] for t in TABLES)
        p = r["recluster_parts"]
        parts = f"{p['read']:.2f}/{p['link']:.2f}/{p['write']:.2f}"
        a = r["again_parts"]
        again = f"{a['read']:.2f}/{a['link']:.2f}/{a['write']:.2f}"
        floor = f"{r['floor_read_s']:.2f}+{r['floor_cc_s']:.2f}"
        print(
            f"{r['sightings']:>11,} {r['shared_sightings'] / r['sightings']:>7.1%} {human_bytes(disk):>10} "
            f"{disk / r['sightings']:>10.0f} {r['token_btree_levels']:>5} "
            f"{'/'.join(f'{v:.2f}' for v in r['lookup_ms']):>17} "
            f"{'/'.join(f'{v:.2f}' for v in r['floor_ms']):>13} {r['recluster_s']:>11.2f} {parts:>17} "
            f"{r['again_s']:>7.2f} {again:>17} {floor:>13} {r['peak_rss_mib']:>8}"
        )
    sizes = [float(r["sightings"]) for r in rows]
    shared = [float(r["shared_sightings"]) for r in rows]
    disk_fit = fit(sizes, [float(sum(r[t]["total"] for t in TABLES)) for r in rows])
    time_fit = fit(shared, [float(r["recluster_s"]) for r in rows])
    rss_fit = fit(shared, [float(r["peak_rss_mib"] - r["rss_before_mib"]) for r in rows])
    fraction = shared[-1] / sizes[-1]
    print()
    print(
        f"fitted: disk {disk_fit[1]:.0f} B per sighting; recluster {time_fit[1] * 1e6:.2f} s and "
        f"{rss_fit[1] * 1e6:.0f} MiB per million shared sightings (shared fraction {fraction:.1%})"
    )
    for target in TARGETS:
        target_shared = target * fraction
        print(
            f"  at {target:>13,} sightings: disk {human_bytes(disk_fit[0] + disk_fit[1] * target):>10}, "
            f"recluster ~{time_fit[0] + time_fit[1] * target_shared:,.0f} s and "
            f"~{human_bytes((rss_fit[0] + rss_fit[1] * target_shared) * 2**20)} above the process's base "
            f"({target_shared:,.0f} shared sightings)"
        )


if __name__ == "__main__":
    main()
