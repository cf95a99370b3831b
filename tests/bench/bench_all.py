"""`make bench`: the three figures a partner and an operator meet, each beside its floor measured in the same run.

Not a test. Run (the quick sizes are `make bench`'s; the full sizes are issue 17's):

    python tests/bench/bench_all.py                                           # quick: ~3 minutes
    python tests/bench/bench_all.py --rows 250000 --recluster-sightings 5000000   # full: ~15 minutes

1. **Ingest, as a partner runs it**: a fresh PostgreSQL database, production settings
   (`exchange_reliab_bench`; DEBUG off, the default task mode: a Procrastinate worker clusters behind the API), gunicorn with 2 workers,
   and the reference client (`python -m exchange.client submit`, its default `--parallel`) sending a CSV of
   ``--rows`` raw rows (5 per seller: email, phone, store name, payment account, website; 2% of sellers in
   rings sharing an email). Measured: CSV -> stored (the client's wall time, from its start to its summary;
   every sighting is checked to be stored), then stored -> clustered (until the worker's queue is empty). The
   client's own share: the same command with `--dry-run` (read, normalise and hash, send nothing). Floor: a
   single-table binary `COPY` of the same rows (seller_ref, kind, transport hash) in one transaction.
2. **Lookups, right after that bulk submission** (no `ANALYZE`; autovacuum is off here): a second platform
   screens 10 indicators per request (5 of the submitted values, 5 never seen) over one keep-alive
   connection at a steady ``--rate`` requests/s for ``--seconds``, open loop. Latency is the service time
   (send -> response read); the lateness against the schedule is printed too (no coordinated omission). Floor:
   an authenticated `GET /api/v1/me/` at the same rate on the same connection, just before.
3. **Full recluster** at ``--recluster-sightings`` with 7% of sightings on shared indicators (rings, pairs and
   hubs: tests/bench/bench_capacity.py's data, filled by COPY into `exchange_bench_graph`), in a fresh process:
   the first build and an unchanged rebuild (wall time, read/link/write), the process's peak RSS. Floor: the
   same read plus a pure in-memory pass of SciPy connected components over the seller-indicator graph, in the
   same process (`bench_recluster.measure_floor`); a closing note gives the ratios to both.

The databases are dropped at the end. Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import bench_capacity, bench_recluster, cpu  # noqa: E402 - after the path set-up
from tests.reliability.server import (  # noqa: E402
    DEFAULT_SERVER,
    Gunicorn,
    Worker,
    database_url,
    drop_database,
    free_port,
    log,
    production_env,
    reset_database,
    setup,
)

KINDS = ("email", "phone", "store_name", "payment_account", "website_domain")


# --- 1. ingest ------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: int, seed: int) -> list[tuple[str, str, str]]:
    """A partner's CSV of `rows` raw rows (5 per seller); returns the (seller_ref, kind, value) rows."""
    rng = random.Random(seed)
    sellers = rows // len(KINDS)
    reported = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    out: list[tuple[str, str, str]] = []
    for n in range(sellers):
        ring = n - n % 3 if n % 50 < 3 else n  # 2% of sellers: rings of three sharing an email
        values = (
            f"seller{ring}.{n % 7}@shop{ring % 997}.example",
            f"+4930{20000000 + n:08d}",
            f"Outlet Store {n} {rng.choice('ABCDEFGH')}",
            f"paypal:payments{n}@example.net",
            f"shop{n}-outlet.com",
        )
        for kind, value in zip(KINDS, values, strict=True):
            out.append((f"sel-{n}", kind, value))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seller_ref", "status", "reasons", "reported_at", "kind", "value"])
        for ref, kind, value in out:
            writer.writerow([ref, "confirmed", "counterfeit", reported, kind, value])
    return out


def transport_rows(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    from exchange.normalization import normalize, transport_hash

    return [(ref, kind, transport_hash(kind, normalize(kind, value))) for ref, kind, value in rows]


def copy_floor(url: str, rows: list[tuple[str, str, str]]) -> float:
    """Seconds to COPY the rows (binary) into one fresh table in one transaction."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_floor")
        conn.execute("CREATE TABLE bench_copy_floor (seller_ref text, kind text, hash text)")
        conn.commit()
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY bench_copy_floor FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text", "text"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy_floor")
        conn.commit()
    return elapsed


def run_client(server: Gunicorn, key_file: Path, csv_path: Path, *extra: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "exchange.client", "submit", "--url", server.url, "--key-file", str(key_file),
         "--quiet", *extra, str(csv_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"the client failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def scalar(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def wait_for_queue(url: str, timeout: float = 1800) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        waiting = scalar(
            url,
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') AND queue_name = 'clusters'",
        )
        if not waiting:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise SystemExit("the worker did not empty its queue in time")


# --- 2. lookups -----------------------------------------------------------------------------------------


def paced(
    server: Gunicorn, key: str, method: str, path: str, bodies: list[bytes | None], rate: float
) -> tuple[list[float], list[float]]:
    """Send one request per body at `rate`/s on one keep-alive connection; (service times, lateness) in s."""
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Host": "localhost"}
    service, late = [], []
    start = time.perf_counter() + 0.05
    for n, body in enumerate(bodies):
        due = start + n / rate
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        sent = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        done = time.perf_counter()
        if response.status != 200:
            raise SystemExit(f"{method} {path} answered {response.status}")
        service.append(done - sent)
        late.append(done - due)
    conn.close()
    return service, late


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def lookup_bodies(hashed: list[tuple[str, str, str]], count: int, seed: int) -> list[bytes | None]:
    from exchange.normalization import normalize, transport_hash

    rng = random.Random(seed)
    bodies: list[bytes | None] = []
    for n in range(count):
        known = [{"kind": kind, "hash": digest} for _, kind, digest in rng.sample(hashed, 5)]
        unknown = [
            {"kind": "email", "hash": transport_hash("email", normalize("email", f"never{n}.{i}@x.example"))}
            for i in range(5)
        ]
        bodies.append(json.dumps({"indicators": known + unknown}).encode())
    return bodies


# --- 3. recluster (in a fresh process) ----------------------------------------------------------------


def measure_recluster() -> dict[str, Any]:
    os.environ.update(bench_recluster.ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()
    from graph import clustering

    out: dict[str, Any] = {}
    for run in ("first", "again"):
        started = time.perf_counter()
        summary = clustering.recluster_full()
        out[f"{run}_s"] = time.perf_counter() - started
        out[f"{run}_parts"] = summary.seconds
    out["shared"] = summary.sightings
    out["clusters"] = summary.clusters
    out["peak_rss_mib"] = bench_recluster.peak_rss_mib()
    floor = bench_recluster.measure_floor()
    out["floor_cc_s"] = floor["floor_cc_s"]
    out["floor_s"] = floor["floor_read_s"] + floor["floor_cc_s"]
    return out


def recluster_world(sightings: int, suffix: str) -> dict[str, Any]:
    log(f"recluster: filling {bench_recluster.DB} with {sightings:,} sightings (7% shared) by COPY")
    bench_recluster.reset_database()
    seller, indicator, kind, n_sellers, n_indicators = bench_capacity.synthesize(sightings, 0.07)
    bench_recluster.fill_rows(seller, indicator, kind, n_sellers, n_indicators)
    log("recluster: measuring in a fresh process")
    proc = subprocess.run(
        [sys.executable, __file__, "--one-recluster", "--db-suffix", suffix],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["sightings"] = sightings
    return result


# --- the run --------------------------------------------------------------------------------------------


def partner_path(args: argparse.Namespace) -> dict[str, Any]:
    url = database_url(
        "exchange_reliab_bench", args.server
    )  # the servers' helpers drop only exchange_reliab*
    reset_database(url)
    env = production_env(url, task_mode="worker")
    keys = setup(env, "marketplace", "screener")
    workdir = Path(tempfile.mkdtemp(prefix="bench_all_"))
    key_file = workdir / "marketplace.key"
    key_file.write_text(keys["marketplace"] + "\n")
    csv_path = workdir / "reports.csv"
    log(f"ingest: writing a {args.rows:,}-row CSV")
    rows = write_csv(csv_path, args.rows, args.seed)
    hashed = transport_rows(rows)
    server = Gunicorn(env, free_port(), workdir / "gunicorn.log")
    worker = Worker(env, workdir / "worker.log")
    out: dict[str, Any] = {"rows": len(rows)}
    try:
        server.start()
        worker.start()
        log("ingest: the client's own work (--dry-run)")
        out["client_dry_s"] = run_client(server, key_file, csv_path, "--dry-run")
        log("ingest: the reference client submits the CSV")
        groups = {"gunicorn": server.pid, "worker": worker.pid}
        before = cpu.snapshot(groups)
        out["ingest_s"] = run_client(server, key_file, csv_path)
        out["ingest_cpu"] = cpu.spent(before, cpu.snapshot(groups))
        stored = scalar(url, "SELECT count(*) FROM exchange_sighting")
        if stored != len(rows):
            raise SystemExit(f"{stored} sightings stored for {len(rows)} rows")
        out["cluster_s"] = wait_for_queue(url)
        log(f"ingest: stored in {out['ingest_s']:.1f} s, clustered {out['cluster_s']:.1f} s later")
        out["copy_s"] = copy_floor(url, hashed)
        count = int(args.rate * args.seconds)
        log(f"lookups: {count} GET /api/v1/me/, then {count} lookups, at {args.rate:.0f}/s")
        me, me_late = paced(server, keys["screener"], "GET", "/api/v1/me/", [None] * count, args.rate)
        bodies = lookup_bodies(hashed, count, args.seed)
        found, found_late = paced(server, keys["screener"], "POST", "/api/v1/lookups/", bodies, args.rate)
        warm = int(args.rate)  # the first second warms the connection's prepared statements
        out["me_ms"] = (pct(me[warm:], 50), pct(me[warm:], 99), pct(me_late[warm:], 99))
        out["lookup_ms"] = (pct(found[warm:], 50), pct(found[warm:], 99), pct(found_late[warm:], 99))
        out["lookups"] = len(found) - warm
    finally:
        worker.stop()
        server.stop()
        drop_database(url)
    return out


def print_table(partner: dict[str, Any], recluster: dict[str, Any], args: argparse.Namespace) -> None:
    rows = partner["rows"]
    me, found = partner["me_ms"], partner["lookup_ms"]
    ingest_rate, copy_rate = rows / partner["ingest_s"], rows / partner["copy_s"]
    first, again = recluster["first_parts"], recluster["again_parts"]
    table = [
        (
            f"lookup, 10 indicators, {args.rate:.0f}/s, 1 connection, p50 / p99",
            f"{found[0]:.2f} / {found[1]:.2f} ms",
            f"GET /me/ {me[0]:.2f} / {me[1]:.2f} ms",
            f"{found[1] / me[1]:.1f}x at p99 (+{found[1] - me[1]:.2f} ms)",
        ),
        (
            "  lateness against the schedule, p99",
            f"{found[2]:.2f} ms",
            f"{me[2]:.2f} ms",
            "",
        ),
        (
            f"ingest, {rows:,}-row CSV -> stored (reference client)",
            f"{ingest_rate:,.0f} sightings/s",
            f"COPY {copy_rate:,.0f} rows/s",
            f"{ingest_rate / copy_rate:.0%} of the floor",
        ),
        (
            "  client alone (--dry-run: read, normalise, hash)",
            f"{rows / partner['client_dry_s']:,.0f} rows/s",
            "",
            "",
        ),
        *ingest_cpu_rows(partner),
        ("  stored -> clustered (worker queue empty)", f"+{partner['cluster_s']:.1f} s", "", ""),
        (
            f"full recluster, {recluster['sightings']:,} sightings, "
            f"{recluster['shared'] / recluster['sightings']:.0%} shared, first build",
            f"{recluster['first_s']:.2f} s ({first['read']:.2f}/{first['link']:.2f}/{first['write']:.2f})",
            f"read + CC {recluster['floor_s']:.2f} s (CC alone {recluster['floor_cc_s']:.3f} s)",
            f"{recluster['first_s'] / recluster['floor_s']:.1f}x",
        ),
        (
            "  unchanged rebuild (read/link/write)",
            f"{recluster['again_s']:.2f} s ({again['read']:.2f}/{again['link']:.2f}/{again['write']:.2f})",
            "",
            f"{recluster['again_s'] / recluster['floor_s']:.1f}x",
        ),
        ("  peak RSS of the rebuilding process", f"{recluster['peak_rss_mib']:.0f} MiB", "", ""),
    ]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    header = ("what", "measured", "floor (same run)", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    # The closing note: where the recluster stands against its floors (the read is in both; link and write are
    # what the floor's in-memory connected-components pass stands for).
    cc = max(recluster["floor_cc_s"], 1e-9)
    print()
    print(
        f"recluster against its floors: first build {recluster['first_s'] / recluster['floor_s']:.1f}x and "
        f"unchanged rebuild {recluster['again_s'] / recluster['floor_s']:.1f}x read + CC; beyond the read, "
        f"link + write {(first['link'] + first['write']) / cc:.0f}x and {(again['link'] + again['write']) / cc:.0f}x "
        f"the CC pass alone ({first['write'] / recluster['first_s']:.0%} and "
        f"{again['write'] / recluster['again_s']:.0%} of the wall time writing)"
    )


def ingest_cpu_rows(partner: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Where the ingest's time went: CPU us per sighting of the client, gunicorn and its PostgreSQL backends
    (and of the clustering worker with its backends, which runs beside them), and the rate the first three
    allow on this machine's cores."""
    rows, spent = partner["rows"], partner["ingest_cpu"]
    per = {part: sum(spent[label] for label in labels) / rows * 1e6 for part, labels in INGEST_PARTS.items()}
    cores = os.cpu_count() or 1
    ingest = per["client"] + per["gunicorn"] + per["its PostgreSQL"]
    parts = ", ".join(f"{part} {us:.0f}" for part, us in per.items())
    return [
        ("  CPU per sighting, us (clustering beside it)", parts, "", ""),
        (
            f"  CPU-bound ceiling: {cores} cores / (client + gunicorn + its PostgreSQL)",
            f"{cores / ingest * 1e6:,.0f} sightings/s",
            "",
            f"measured {rows / partner['ingest_s'] / (cores / ingest * 1e6):.0%} of it",
        ),
    ]


# The parts of the ingest whose CPU is counted, from tests/bench/cpu.py's labels.
INGEST_PARTS = {
    "client": ("children",),
    "gunicorn": ("gunicorn",),
    "its PostgreSQL": ("gunicorn PostgreSQL",),
    "clustering": ("worker", "worker PostgreSQL"),
}


def use_graph_database(name: str) -> None:
    """Point tests/bench/bench_recluster.py's loader (and this script's recluster process) at `name`."""
    bench_recluster.DB = name
    bench_recluster.DB_URL = f"{bench_recluster.ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    bench_recluster.ENV = {**bench_recluster.ENV, "DATABASE_URL": bench_recluster.DB_URL}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000, help="CSV rows the client submits (5 per seller)")
    parser.add_argument("--rate", type=float, default=200.0, help="lookups (and floor requests) per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of lookups (and of floor)")
    parser.add_argument("--recluster-sightings", type=int, default=1_000_000)
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL (no database)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--db-suffix", default="", help="appended to the databases' names (the smoke test's)")
    parser.add_argument("--one-recluster", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_graph_database(bench_recluster.DB + args.db_suffix)
    if args.one_recluster:
        print(json.dumps(measure_recluster()))
        return
    partner = partner_path(args)
    try:
        recluster = recluster_world(args.recluster_sightings, args.db_suffix)
    finally:
        import psycopg

        with psycopg.connect(bench_recluster.ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {bench_recluster.DB} WITH (FORCE)")
    print_table(partner, recluster, args)


if __name__ == "__main__":
    main()
