"""Benchmark the exchange's store of fuzzy name encodings (exchange.similarity, kind person_name) on PostgreSQL.

Not a test: ``python tests/bench/bench_fuzzy_store.py --sizes 100000,1000000`` (default ``--sizes 100000``).
It creates (and drops) the database ``exchange_bench_similar`` on 127.0.0.1 as user postgres.

Data (seeded): N stored encodings, each 1,024 random bits with about 25% set (what an encoded name sets; the
bits of real names are less uniform, so real candidate counts are higher), each its own group, COPYed into
SimilarItem and Indicator. Queries: ``--queries`` near copies (a stored encoding with 3% of its bits flipped:
Dice about 0.9) and as many unrelated encodings.

Printed per size:

- ``index``: the first use's build of the process's in-memory index (100 Hamming-LSH band keys per encoding),
  its time and the bytes its arrays hold;
- ``match``: `exchange.similarity.matching_items` per name as a lookup runs it, p50/p99 in ms;
- ``submit``: `store_items` for 1,000 new sellers with one name each (half near copies of stored names), in a
  transaction rolled back afterwards;
- the floor in the same run: exchange.fuzzy_blocking.BlockingIndex (the same LSH over a numpy matrix, built
  once) matching the same 1,000 new encodings, without the store around it.

Issue 14's target: 1,000 new sellers matched against 1 million stored encodings in about a second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_similarity import (  # noqa: E402
    DB_URL,
    ENV,
    bench_sellers,
    drop_database,
    percentiles,
    reset_database,
    timed_store,
)

KIND = "person_name"


def encodings(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 128) uint8: 1,024 bits each, about 25% set."""
    return np.packbits(rng.random((n, 1024)) < 0.25, axis=1)


def near_copies(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(rows, axis=1)
    return np.packbits(bits ^ (rng.random(bits.shape) < 0.03), axis=1)


def fill(stored: np.ndarray) -> float:
    """COPY the encodings into Indicator (a group each) and SimilarItem."""
    import psycopg

    started = time.perf_counter()
    n = stored.shape[0]
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(DB_URL) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY exchange_indicator (id, kind, token, key_version, first_seen, linking, linking_reason, "
            "linking_changed_by, holders) FROM STDIN"
        ) as copy:
            for start in range(0, n, 100_000):
                copy.write(
                    "".join(
                        f"{i + 1}\t{KIND}\t{i + 1:064x}\t1\t{now}\tauto\t\t\t1\n"
                        for i in range(start, min(n, start + 100_000))
                    )
                )
        with cur.copy(
            "COPY exchange_similaritem (id, kind, value, extra, group_id, first_seen) FROM STDIN"
        ) as copy:
            for start in range(0, n, 100_000):
                copy.write(
                    "".join(
                        f"{i + 1}\t{KIND}\t{bytes(stored[i]).hex()}\t{{}}\t{i + 1}\t{now}\n"
                        for i in range(start, min(n, start + 100_000))
                    )
                )
        for table in ("exchange_indicator", "exchange_similaritem"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})")
        conn.commit()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def measure(size: int, queries: int, seed: int) -> None:
    os.environ.update(ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()

    from exchange import similarity
    from exchange.fuzzy_blocking import DEFAULT_LSH, BlockingIndex
    from exchange.matching import Item

    rng = np.random.default_rng(seed)
    stored = encodings(rng, size)
    print(f"== {size:,} stored {KIND} encodings", flush=True)
    print(f"  fill: {fill(stored):.1f} s", flush=True)
    start = time.perf_counter()
    held = similarity.warm_index(KIND)
    print(
        f"  index: built in {time.perf_counter() - start:.1f} s, {held.keys:,} keys, "
        f"{held.bytes / 2**20:,.0f} MiB of arrays ({held.bytes / size:,.0f} bytes per encoding)",
        flush=True,
    )
    near = near_copies(rng, stored[rng.choice(size, size=queries, replace=False)])
    for label, batch in (("near", near), ("unrelated", encodings(rng, queries))):
        timings, found = [], 0
        for row in batch:
            item = Item(KIND, bytes(row).hex(), {})
            start = time.perf_counter()
            found += bool(similarity.matching_items(item))
            timings.append(time.perf_counter() - start)
        print(f"  match {label:<9}: {percentiles(timings)}  found {found}/{len(batch)}", flush=True)

    now = datetime.now(UTC)
    sellers = bench_sellers(1000, now)
    new = np.concatenate([near_copies(rng, stored[rng.choice(size, size=500)]), encodings(rng, 500)])
    rows = [(sellers[n].pk, now, Item(KIND, bytes(new[n]).hex(), {})) for n in range(1000)]
    elapsed, result = timed_store(rows, now)
    print(f"  submit 1,000 sellers x 1 name: {elapsed:.2f} s, {result.groups:,} groups", flush=True)
    start = time.perf_counter()
    blocking = BlockingIndex(stored, DEFAULT_LSH)
    built = time.perf_counter() - start
    start = time.perf_counter()
    blocking.query(new, 0.7)
    print(
        f"  floor: BlockingIndex in memory, the same 1,000 against {size:,}: {time.perf_counter() - start:.2f} s "
        f"(built in {built:.1f} s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.queries, args.seed)
        return
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            reset_database()
            command = [sys.executable, __file__, "--one", str(size), "--queries", str(args.queries)]
            subprocess.run([*command, "--seed", str(args.seed)], check=True, env={**os.environ, **ENV})
    finally:
        drop_database()


if __name__ == "__main__":
    main()
