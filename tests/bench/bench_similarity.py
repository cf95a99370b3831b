"""Benchmark the exchange's store of similarity items (exchange.similarity) on PostgreSQL: product photos.

Not a test: ``python tests/bench/bench_similarity.py --sizes 10000,100000,526316`` (default ``--sizes 10000``;
526,316 photos of 19 hashes are issue 13's 10 million stored hashes). It creates (and drops) the database
``exchange_bench_similar`` on 127.0.0.1 as user postgres.

Data (seeded): N stored photos, each a uniformly random 256-bit full hash with 18 "crop" hashes about 20-60
bits away from it (real sub-crops are that far from their full photo), each photo its own group, COPYed into
SimilarItem and Indicator. Queries: ``--queries`` near copies (a stored photo's hashes with 0-20 bits flipped
each) and as many unrelated photos.

Printed per size:

- ``index``: the first use's build of the process's in-memory index (exchange.similarity._KindIndex: every
  stored photo read, packed and keyed), its time and the bytes its arrays hold;
- ``match``: `exchange.similarity.matching_items` per new photo as a lookup runs it (the threshold read, the
  index's refresh query, 19 x 272 probe keys through the in-memory index, the candidates scored in memory, the
  matched rows read and scored again), p50/p99 in ms, near and unrelated, and the candidates per query;
- the floors in the same run: ``scan`` (numpy XOR+popcount of the new photo's 19 hashes against all N x 19
  stored hashes, in memory), ``mih`` (graph.image_index.MultiIndexHash over the same N x 19 hashes in memory:
  the pigeonhole search alone, without the store around it);
- ``submit``: `store_items` for a 1,000-seller submission with 5 photos each (5,000 new photos, half of them
  near copies of stored ones), in a transaction rolled back afterwards: seconds and photos per second;
- ``through the API, linked``: the same photos as one partner submission (POST /api/v1/submissions/ in-process,
  the incremental recluster inside the request): the whole of "linked incrementally".

Issue 13's targets are under 10 ms per new image against 10 million stored hashes, and a 1,000 x 5
submission linked in about a second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DB = "exchange_bench_similar"
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
CROPS = 18


def reset_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **ENV}, check=True
    )


def drop_database() -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def flip(rng: np.random.Generator, bits: np.ndarray, low: int, high: int) -> np.ndarray:
    """Each row of the (n, 256) bit matrix with about low..high random bits flipped (each bit of a row flips
    with the row's own probability, drawn between low/256 and high/256)."""
    rate = rng.uniform(low / 256, high / 256, size=(bits.shape[0], 1))
    return bits ^ (rng.random(bits.shape) < rate).astype(np.uint8)


def photos(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 19, 256) bits: a random full hash and 18 crops about 20-60 bits from it."""
    full = rng.integers(0, 2, size=(n, 256), dtype=np.uint8)
    out = np.empty((n, 1 + CROPS, 256), dtype=np.uint8)
    out[:, 0] = full
    for k in range(CROPS):
        out[:, 1 + k] = flip(rng, full, 20, 60)
    return out


def hexes(bits: np.ndarray) -> list[str]:
    return [bytes(row).hex() for row in np.packbits(bits.reshape(-1, 256), axis=1)]


def fill(stored: np.ndarray) -> float:
    """COPY the photos into Indicator (a group each) and SimilarItem."""
    import psycopg

    started = time.perf_counter()
    n = stored.shape[0]
    all_hex = hexes(stored)
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(DB_URL) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY exchange_indicator (id, kind, token, key_version, first_seen, linking, linking_reason, "
            "linking_changed_by, holders) FROM STDIN"
        ) as copy:
            copy.write("".join(f"{i + 1}\timage\t{i + 1:064x}\t1\t{now}\tauto\t\t\t1\n" for i in range(n)))
        with cur.copy(
            "COPY exchange_similaritem (id, kind, value, extra, group_id, first_seen) FROM STDIN"
        ) as copy:
            for i in range(n):
                row = all_hex[i * 19 : (i + 1) * 19]
                crops = ",".join(f'"{h}"' for h in row[1:])
                copy.write(
                    f'{i + 1}\timage\t{row[0]}\t{{"quality": 90, "crops": [{crops}]}}\t{i + 1}\t{now}\n'
                )
        for table in ("exchange_indicator", "exchange_similaritem"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})")
        conn.commit()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def percentiles(values: list[float]) -> str:
    a = np.array(values) * 1000
    return f"p50 {np.percentile(a, 50):7.2f} ms  p99 {np.percentile(a, 99):7.2f} ms"


def items(bits: np.ndarray) -> list[Any]:
    from exchange.matching import Item

    out = []
    for photo in bits:
        h = hexes(photo)
        out.append(Item("image", h[0], {"quality": 90, "crops": h[1:]}))
    return out


def bench_sellers(count: int, now: datetime) -> list[Any]:
    """`count` confirmed sellers of a fresh platform, to report new items with."""
    from accounts.models import Platform
    from exchange.models import Seller

    platform = Platform.objects.create(name="Bench", slug="bench", default_region="DE")
    return Seller.objects.bulk_create(
        [
            Seller(
                platform=platform,
                seller_ref=f"s{n}",
                status="confirmed",
                reason_codes="|counterfeit|",
                first_reported_at=now,
                reported_at=now,
                expires_at=now.replace(year=now.year + 1),
            )
            for n in range(count)
        ]
    )


def timed_store(rows: list[Any], now: datetime) -> tuple[float, Any]:
    """Seconds `store_items` takes for one submission's rows, in a transaction rolled back after; and its result."""
    from django.db import transaction

    from exchange import similarity

    start = time.perf_counter()
    with transaction.atomic():
        result = similarity.store_items(rows, 1, now)
        elapsed = time.perf_counter() - start
        transaction.set_rollback(True)
    return elapsed, result


def measure(size: int, queries: int, seed: int) -> None:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()

    from exchange import similarity
    from graph import image_index

    rng = np.random.default_rng(seed)
    stored = photos(rng, size)
    print(f"== {size:,} stored photos ({size * 19:,} hashes)", flush=True)
    fill_s = fill(stored)
    print(f"  fill: {fill_s:.1f} s", flush=True)
    start = time.perf_counter()
    size_of = similarity.warm_index("image")
    print(
        f"  index: built in {time.perf_counter() - start:.1f} s, {size_of.keys:,} keys, "
        f"{size_of.bytes / 2**20:,.0f} MiB of arrays ({size_of.bytes / (size * 19):,.0f} bytes per hash)",
        flush=True,
    )
    index = similarity._index("image")  # for the candidate counts below

    near_src = stored[rng.choice(size, size=queries, replace=False)]
    near = np.stack([flip(rng, near_src[:, k], 0, 20) for k in range(19)], axis=1)
    unrelated = photos(rng, queries)
    matrix = np.packbits(stored.reshape(-1, 256), axis=1)
    for label, batch in (("near", near), ("unrelated", unrelated)):
        timings, found, candidates = [], 0, []
        for item in items(batch):
            start = time.perf_counter()
            hits = similarity.matching_items(item)
            timings.append(time.perf_counter() - start)
            found += bool(hits)
            probe_rows, probe_keys = similarity.matcher("image").probe_arrays([item], 31)
            candidates.append(len(index.keys.pairs(probe_rows, probe_keys)))
        print(
            f"  match {label:<9}: {percentiles(timings)}  found {found}/{len(batch)}  "
            f"candidate hash pairs p50 {int(np.median(candidates)):,}",
            flush=True,
        )
    scan = []
    for photo in near[: 50 if size <= 100_000 else 10]:  # a scan of 10 million hashes takes seconds
        query = np.packbits(photo, axis=1)
        start = time.perf_counter()
        for q in query:
            image_index.hamming_to_many(q, matrix)
        scan.append(time.perf_counter() - start)
    print(f"  floor scan (numpy, 19 hashes x all): {percentiles(scan)}", flush=True)
    mih = image_index.MultiIndexHash(matrix)
    in_memory = []
    for photo in near[: 200 if size <= 100_000 else 50]:
        query = np.packbits(photo, axis=1)
        start = time.perf_counter()
        mih.search_many(query, 31)
        in_memory.append(time.perf_counter() - start)
    print(f"  floor mih (in memory, 19 hashes): {percentiles(in_memory)}", flush=True)
    del mih

    now = datetime.now(UTC)
    sellers = bench_sellers(1000, now)
    half = stored[rng.choice(size, size=2500, replace=True)]
    batch_bits = np.concatenate(
        [np.stack([flip(rng, half[:, k], 0, 15) for k in range(19)], axis=1), photos(rng, 2500)]
    )
    submission = items(batch_bits)
    rows = [(sellers[n // 5].pk, now, submission[n]) for n in range(5000)]
    elapsed, result = timed_store(rows, now)
    print(
        f"  submit 1,000 sellers x 5 photos: {elapsed:.2f} s ({5000 / elapsed:,.0f} photos/s), "
        f"{result.groups:,} groups",
        flush=True,
    )
    elapsed, summary = timed_api_submission(batch_bits, now)
    print(
        f"  the same through the API, linked: {elapsed:.2f} s (validation, sellers, photos, incremental "
        f"recluster: {summary})",
        flush=True,
    )


def timed_api_submission(batch_bits: np.ndarray, now: datetime) -> tuple[float, str]:
    """Seconds for the same 5,000 photos as one partner's submission of 1,000 sellers (POST
    /api/v1/submissions/ in the reference client's batches, in-process; EXCHANGE_TASK_MODE=sync, so the incremental recluster runs inside the
    request, as the demo's): what "linked incrementally" costs end to end, after the JSON is received."""
    import json
    import uuid

    from rest_framework.test import APIClient

    from accounts.models import ApiKey, Platform
    from exchange.client.submission import DEFAULT_BATCH_SIZE
    from graph.models import ClusterMember

    platform = Platform.objects.create(name="Bench API", slug="bench-api", default_region="DE")
    _, secret = ApiKey.generate(platform, ["submit"], name="bench")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    photos_hex = [hexes(photo) for photo in batch_bits]
    sellers = [
        {
            "seller_ref": f"api-{n}",
            "status": "confirmed",
            "reasons": ["counterfeit"],
            "reported_at": now.isoformat(),
            "indicators": [
                {"kind": "image", "hash": h[0], "quality": 90, "crops": h[1:]}
                for h in photos_hex[5 * n : 5 * n + 5]
            ],
        }
        for n in range(1000)
    ]
    bodies = [  # in the reference client's default batches of 500 sellers (a request body is at most 4 MiB)
        json.dumps({"sellers": sellers[start : start + DEFAULT_BATCH_SIZE]})
        for start in range(0, len(sellers), DEFAULT_BATCH_SIZE)
    ]
    start = time.perf_counter()
    for body in bodies:
        response = client.post(
            "/api/v1/submissions/",
            body,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            SERVER_NAME="localhost",
            secure=True,  # DEBUG is off: plain HTTP is redirected
        )
        if response.status_code >= 300:
            raise SystemExit(f"the submission was refused: {response.status_code} {response.content[:300]!r}")
    elapsed = time.perf_counter() - start
    members = ClusterMember.objects.filter(seller__platform=platform).count()
    return elapsed, f"{len(bodies)} requests, {members:,} of its sellers in clusters"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.queries, args.seed)
        return
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            reset_database()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    str(size),
                    "--queries",
                    str(args.queries),
                    "--seed",
                    str(args.seed),
                ],
                check=True,
                env={**os.environ, **ENV},
            )
    finally:
        drop_database()


if __name__ == "__main__":
    main()
