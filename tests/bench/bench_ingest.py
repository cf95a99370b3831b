"""Benchmark ingest through the real HTTP API against two references measured in the same run.

Not a test: ``python tests/bench/bench_ingest.py --sizes 10000,100000 [--workers 2] [--concurrency 4]``
(``--sizes 1000000`` works too; budget the better part of an hour for it on 2 cores).

It owns a PostgreSQL database (``exchange_bench`` by default; dropped and re-created at start unless
``--keep-db``), migrates it, creates two platforms with API keys (``bench`` submits, ``bench-screen`` looks up,
so that lookups of ``bench``'s indicators match "other platforms"), then for each N:

1. generates N sellers deterministically (seeded): 4-6 indicators each (mean 5), 2% of indicator slots drawn
   from a shared pool sized so that a shared value is held by ~3 sellers; the indicator table is therefore a
   little smaller than the sightings count. The keyed tokens (HMAC with the bench pepper, exactly as the
   server computes them) are computed here, *outside* the timings of the two references; the API computes
   them itself, inside its timing. Their cost is printed separately ("hmac" line).
2. each method on freshly truncated tables (``TRUNCATE ... RESTART IDENTITY CASCADE`` + ``CHECKPOINT``):

   - ``floor``: psycopg 3 binary ``COPY`` of sellers, indicators, sightings (all columns the API writes,
     explicit seller/indicator ids), one transaction;
   - ``naive``: Django ``bulk_create`` of Seller, Indicator, Sighting objects in-process, per chunk of
     ``--batch`` sellers in one transaction each (batch_size = ``--batch``);
   - ``api``: a fresh gunicorn (``--workers``/``--threads``) serving the real app; ``--concurrency`` client
     threads, each with its own keep-alive ``http.client`` connection, POST batches of ``--batch`` sellers to
     ``/api/v1/submissions/``; per-request latency is recorded (send -> response fully read).

   Row counts are checked after every method. Peak memory: VmHWM of this process during floor/naive (the
   high-water mark is reset between phases via /proc/self/clear_refs), and for the API the sum of VmHWM over
   the gunicorn master + workers plus this (client) process. CPU seconds per party (client, gunicorn,
   PostgreSQL backends, whole machine) are printed to show where the time went.
3. lookup phase on the API-loaded data, same server: ``POST /api/v1/lookups/`` of 10 indicators (5 known,
   5 unknown) by the screening platform: first a closed-loop saturation run (``--lookup-saturate`` seconds,
   ``--lookup-threads`` threads) to find the maximum rate, then a steady open-loop run at ``--lookup-rate``
   requests/s (default: half the saturation rate) for ``--lookup-seconds``. Latency is the service time
   (send -> response); the steady run also reports latency from the scheduled send time (no coordinated
   omission).

Everything is printed to stdout as tables; progress goes to stderr. The server is killed on exit.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FORBIDDEN_DBS = {"test", "test_test", "postgres", "template0", "template1"}
# A fixed bench-only pepper (32 bytes): the server and this script must key tokens identically.
BENCH_PEPPER = base64.b64encode(hashlib.sha256(b"exchange-bench-pepper").digest()).decode()
BASE_TIME = datetime(2026, 6, 1, tzinfo=UTC)  # reported_at = BASE_TIME + seller index seconds
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- environment


def bench_env(database_url: str, conn_max_age: int) -> dict[str, str]:
    url = database_url
    if conn_max_age:
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}conn_max_age={conn_max_age}"
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": env.get("BENCH_SECRET_KEY", "bench-" + "k" * 50),
            "EXCHANGE_PEPPERS": f"1:{BENCH_PEPPER}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "False",
            "EXCHANGE_API_RATE": "1000000/min",
            "EXCHANGE_LOOKUP_DAILY_QUOTA": "100000000",
            "LOG_LEVEL": env.get("BENCH_LOG_LEVEL", "WARNING"),
        }
    )
    env.pop("DEBUG", None)
    return env


def reset_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def setup_database(env: dict[str, str], reset: bool) -> tuple[str, str]:
    """Migrate, create the platforms and keys; returns (submit key, lookup key)."""
    if reset:
        log("re-creating the bench database")
        reset_database(env["DATABASE_URL"].split("?")[0])
    log("migrating")
    manage(env, "migrate", "--noinput", "-v0")
    suffix = uuid.uuid4().hex[:6]  # --keep-db: platforms from an earlier run stay; make fresh slugs
    submit_slug, screen_slug = ("bench", "bench-screen") if reset else (f"bench-{suffix}", f"screen-{suffix}")
    manage(env, "create_platform", submit_slug, "--name", "Bench")
    manage(env, "create_platform", screen_slug, "--name", "Bench screening")
    submit_key = (
        manage(env, "create_api_key", submit_slug, "--scopes", "submit,lookup,read").strip().splitlines()[-1]
    )
    lookup_key = manage(env, "create_api_key", screen_slug, "--scopes", "lookup").strip().splitlines()[-1]
    os.environ["BENCH_SUBMIT_SLUG"] = submit_slug
    return submit_key, lookup_key


# ----------------------------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def vm_kb(pid: int | str, field_name: str = "VmHWM") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st and st[0] == pid:
                kids.append(int(entry))
    return kids


def machine_busy() -> float:
    with open("/proc/stat") as f:
        cpu = f.readline().split()[1:]
    values = [int(v) for v in cpu]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds consumed during a phase: this process, the gunicorn processes, and everything else on the
    machine ("other": PostgreSQL, whose per-request backends come and go, plus any other load on the box)."""

    def __init__(self, server: Server | None = None) -> None:
        self.server = server
        self.t0 = time.perf_counter()
        self.client0 = sum(os.times()[:2])
        self.machine0 = machine_busy()
        self.server0 = server.cpu() if server else 0.0

    def stop(self) -> dict[str, float]:
        out = {
            "wall": time.perf_counter() - self.t0,
            "client": sum(os.times()[:2]) - self.client0,
            "server": (self.server.cpu() - self.server0) if self.server else 0.0,
            "machine": machine_busy() - self.machine0,
        }
        out["other"] = max(0.0, out["machine"] - out["client"] - out["server"])
        return out


# ---------------------------------------------------------------------------------------------- dataset


@dataclass
class Dataset:
    n: int
    seed: int
    refs: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    reasons: list[list[str]] = field(default_factory=list)
    seller_inds: list[tuple[int, ...]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    first_holder: list[int] = field(default_factory=list)  # the lowest seller index holding the indicator
    n_sightings: int = 0

    def reported_at(self, i: int) -> datetime:
        return BASE_TIME + timedelta(seconds=i)


def generate(n: int, seed: int, share: float = 0.02, holders: int = 3) -> Dataset:
    from exchange.normalization import KINDS, REASONS

    rng = random.Random(seed)
    ds = Dataset(n, seed)
    slots_estimate = 5 * n
    pool_size = max(1, round(share * slots_estimate / holders))
    pool: dict[int, int] = {}  # pool slot -> indicator index (created on first pick)

    def new_indicator(kind: str, holder: int) -> int:
        idx = len(ds.kinds)
        ds.kinds.append(kind)
        ds.hashes.append(hashlib.sha256(f"bench:{seed}:{idx}".encode()).hexdigest())
        ds.first_holder.append(holder)
        return idx

    for i in range(n):
        ds.refs.append(f"s{i:07d}")
        ds.status.append("confirmed" if rng.random() < 0.8 else "suspected")
        ds.reasons.append(sorted(rng.sample(REASONS, 1 if rng.random() < 0.7 else 2)))
        k = 4 + (rng.random() < 0.5) + (rng.random() < 0.5)
        mine: list[int] = []
        for _ in range(k):
            if rng.random() < share:
                slot = rng.randrange(pool_size)
                idx = pool.get(slot)
                if idx is None:
                    idx = pool[slot] = new_indicator(rng.choice(KINDS), i)
                if idx not in mine:
                    mine.append(idx)
                    continue
            mine.append(new_indicator(rng.choice(KINDS), i))
        ds.seller_inds.append(tuple(mine))
        ds.n_sightings += len(mine)
    return ds


def compute_tokens(ds: Dataset) -> float:
    from django.conf import settings

    from exchange.hashing import keyed_tokens

    t0 = time.perf_counter()
    version = max(settings.EXCHANGE_PEPPERS)
    ds.tokens = keyed_tokens(list(zip(ds.kinds, ds.hashes, strict=True)), settings.EXCHANGE_PEPPERS, version)
    return time.perf_counter() - t0


def batch_payload(ds: Dataset, start: int, end: int) -> dict[str, Any]:
    return {
        "sellers": [
            {
                "seller_ref": ds.refs[i],
                "status": ds.status[i],
                "reasons": ds.reasons[i],
                "reported_at": ds.reported_at(i).isoformat(),
                "indicators": [{"kind": ds.kinds[j], "hash": ds.hashes[j]} for j in ds.seller_inds[i]],
            }
            for i in range(start, end)
        ]
    }


# ------------------------------------------------------------------------------------------------ database


def truncate(conninfo: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            # Memberships and events have no foreign key for CASCADE to follow (graph.models): named.
            "TRUNCATE exchange_sighting, exchange_indicator, exchange_seller, exchange_submission, "
            "graph_clustermember, graph_clusterevent RESTART IDENTITY CASCADE"
        )
        if _has_table(conn, "procrastinate_jobs"):  # recompute jobs the API enqueued (no worker runs here)
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")
        conn.execute("TRUNCATE accounts_auditentry, exchange_lookupusage")
        conn.execute("VACUUM ANALYZE exchange_seller, exchange_indicator, exchange_sighting")
        conn.execute("CHECKPOINT")


def analyze(conninfo: str) -> None:
    """Fresh planner statistics, as autovacuum would have them a minute after a bulk load."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE exchange_seller, exchange_indicator, exchange_sighting")


def _has_table(conn: Any, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


def counts(conninfo: str) -> tuple[int, int, int]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM exchange_seller), (SELECT count(*) FROM exchange_indicator), "
            "(SELECT count(*) FROM exchange_sighting)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def check_counts(conninfo: str, ds: Dataset, method: str) -> None:
    got = counts(conninfo)
    want = (ds.n, len(ds.kinds), ds.n_sightings)
    if got != want:
        raise SystemExit(f"{method}: row counts (sellers, indicators, sightings) {got} != expected {want}")


# --------------------------------------------------------------------------------------------------- floor


def run_floor(ds: Dataset, conninfo: str, platform_id: int) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    retention = timedelta(days=settings.EXCHANGE_RETENTION_DAYS)
    version = max(settings.EXCHANGE_PEPPERS)
    truncate(conninfo)
    reset_peak_rss()
    meter = CpuMeter()
    now = datetime.now(UTC)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY exchange_seller (id, platform_id, seller_ref, status, reason_codes, first_reported_at, "
            "reported_at, expires_at, retracted_at, retraction_reason, retracted_by, created_at, updated_at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                [
                    "int8",
                    "int8",
                    "varchar",
                    "varchar",
                    "varchar",
                    "timestamptz",
                    "timestamptz",
                    "timestamptz",
                    "timestamptz",
                    "text",
                    "varchar",
                    "timestamptz",
                    "timestamptz",
                ]
            )
            for i in range(ds.n):
                at = ds.reported_at(i)
                reasons = "|" + "|".join(ds.reasons[i]) + "|"
                copy.write_row(
                    (
                        i + 1,
                        platform_id,
                        ds.refs[i],
                        ds.status[i],
                        reasons,
                        at,
                        at,
                        at + retention,
                        None,
                        "",
                        "",
                        now,
                        now,
                    )
                )
        with cur.copy(
            "COPY exchange_indicator (id, kind, token, key_version, first_seen, linking, linking_reason, "
            "linking_changed_by, linking_changed_at, holders) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            holders = [0] * len(ds.kinds)  # what ingest maintains: sellers per indicator
            for inds in ds.seller_inds:
                for j in inds:
                    holders[j] += 1
            copy.set_types(
                [
                    "int8",
                    "varchar",
                    "varchar",
                    "int2",
                    "timestamptz",
                    "varchar",
                    "text",
                    "varchar",
                    "timestamptz",
                    "int4",
                ]
            )
            for j in range(len(ds.kinds)):
                copy.write_row(
                    (
                        j + 1,
                        ds.kinds[j],
                        ds.tokens[j],
                        version,
                        ds.reported_at(ds.first_holder[j]),
                        "auto",
                        "",
                        "",
                        None,
                        holders[j],
                    )
                )
        with cur.copy(
            "COPY exchange_sighting (seller_id, indicator_id, first_seen, last_seen) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "timestamptz", "timestamptz"])
            for i in range(ds.n):
                at = ds.reported_at(i)
                for j in ds.seller_inds[i]:
                    copy.write_row((i + 1, j + 1, at, at))
        conn.commit()
    cpu = meter.stop()
    check_counts(conninfo, ds, "floor")
    return {"method": "floor (COPY)", "seconds": cpu["wall"], "cpu": cpu, "rss_client": vm_kb("self")}


# --------------------------------------------------------------------------------------------------- naive


def run_naive(ds: Dataset, conninfo: str, platform_id: int, batch: int) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection, transaction

    from exchange.models import Indicator, Seller, Sighting

    retention = timedelta(days=settings.EXCHANGE_RETENTION_DAYS)
    version = max(settings.EXCHANGE_PEPPERS)
    truncate(conninfo)
    connection.close()
    reset_peak_rss()
    meter = CpuMeter()
    ind_pk = [0] * len(ds.kinds)
    for start in range(0, ds.n, batch):
        end = min(start + batch, ds.n)
        now = datetime.now(UTC)
        with transaction.atomic():
            sellers = Seller.objects.bulk_create(
                [
                    Seller(
                        platform_id=platform_id,
                        seller_ref=ds.refs[i],
                        status=ds.status[i],
                        reason_codes=Seller.encode_reasons(ds.reasons[i]),
                        first_reported_at=ds.reported_at(i),
                        reported_at=ds.reported_at(i),
                        expires_at=ds.reported_at(i) + retention,
                        created_at=now,
                        updated_at=now,
                    )
                    for i in range(start, end)
                ],
                batch_size=batch,
            )
            fresh = [j for i in range(start, end) for j in ds.seller_inds[i] if ds.first_holder[j] == i]
            indicators = Indicator.objects.bulk_create(
                [
                    Indicator(
                        kind=ds.kinds[j],
                        token=ds.tokens[j],
                        key_version=version,
                        first_seen=ds.reported_at(ds.first_holder[j]),
                    )
                    for j in fresh
                ],
                batch_size=batch,
            )
            for j, obj in zip(fresh, indicators, strict=True):
                ind_pk[j] = obj.pk
            Sighting.objects.bulk_create(
                [
                    Sighting(
                        seller_id=seller.pk,
                        indicator_id=ind_pk[j],
                        first_seen=ds.reported_at(i),
                        last_seen=ds.reported_at(i),
                    )
                    for i, seller in zip(range(start, end), sellers, strict=True)
                    for j in ds.seller_inds[i]
                ],
                batch_size=batch,
            )
        if (start // batch) % max(1, ds.n // batch // 10) == 0:
            log(f"  naive: {end}/{ds.n} sellers")
    cpu = meter.stop()
    connection.close()
    check_counts(conninfo, ds, "naive")
    return {"method": "naive (bulk_create)", "seconds": cpu["wall"], "cpu": cpu, "rss_client": vm_kb("self")}


# ---------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], workers: int, threads: int, log_path: Path) -> None:
        self.env, self.workers, self.threads, self.log_path = env, workers, threads, log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "exchange.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--timeout",
            "300",
            "--graceful-timeout",
            "5",
        ]
        if self.threads > 1:
            cmd += ["--threads", str(self.threads)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log, start_new_session=True
        )
        _SERVERS.append(self)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.worker_pids()) >= self.workers:
                    conn.close()
                    time.sleep(0.5)  # let every worker finish importing
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn did not become ready; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid) if self.proc else []

    def pids(self) -> list[int]:
        return ([self.proc.pid] if self.proc else []) + self.worker_pids()

    def cpu(self) -> float:
        return sum((proc_stat(p) or (0, 0.0))[1] for p in self.pids())

    def peak_rss_kb(self) -> int:
        return sum(vm_kb(p) for p in self.pids())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the master and its workers only
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self._log.close()


_SERVERS: list[Server] = []


def _stop_servers() -> None:
    for server in _SERVERS:
        server.stop()


atexit.register(_stop_servers)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# ----------------------------------------------------------------------------------------------- the client


class Client:
    """One keep-alive connection per thread; reconnects (and retries once) if the server closed it."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        hdrs = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                self.conn.request("POST", path, body, hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                elapsed = time.perf_counter() - t0
                if resp.will_close:
                    self.conn.close()
                return resp.status, data, elapsed
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run_api(
    ds: Dataset, conninfo: str, server: Server, key: str, concurrency: int, batch: int
) -> dict[str, Any]:
    truncate(conninfo)
    batches = list(range(0, ds.n, batch))
    lock = threading.Lock()
    cursor = iter(range(len(batches)))
    latencies: list[float] = []
    errors: list[str] = []
    done = [0]

    def worker() -> None:
        client = Client(server.port, key)
        try:
            while not errors:
                with lock:
                    b = next(cursor, None)
                if b is None:
                    return
                start = batches[b]
                body = json.dumps(batch_payload(ds, start, min(start + batch, ds.n))).encode()
                idem = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{ds.seed}:{ds.n}:{b}"))
                status, data, elapsed = client.post("/api/v1/submissions/", body, {"Idempotency-Key": idem})
                if status != 201:
                    errors.append(f"batch {b}: HTTP {status}: {data[:500]!r}")
                    return
                with lock:
                    latencies.append(elapsed)
                    done[0] += 1
                    if done[0] % max(1, len(batches) // 10) == 0:
                        log(f"  api: {done[0]}/{len(batches)} batches")
        finally:
            client.close()

    reset_peak_rss()
    meter = CpuMeter(server)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = meter.stop()
    if errors:
        raise SystemExit("API ingest failed: " + "; ".join(errors[:3]))
    check_counts(conninfo, ds, "api")
    return {
        "method": f"api (w={server.workers} t={server.threads} c={concurrency})",
        "seconds": cpu["wall"],
        "cpu": cpu,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "requests": len(latencies),
        "rss_server": server.peak_rss_kb(),
        "rss_client": vm_kb("self"),
    }


# ---------------------------------------------------------------------------------------------- lookups


def lookup_bodies(ds: Dataset, count: int, seed: int) -> list[bytes]:
    from exchange.normalization import KINDS

    rng = random.Random(seed)
    bodies = []
    for r in range(count):
        known = rng.sample(range(len(ds.kinds)), 5)
        items = [{"kind": ds.kinds[j], "hash": ds.hashes[j]} for j in known]
        items += [
            {
                "kind": rng.choice(KINDS),
                "hash": hashlib.sha256(f"unknown:{seed}:{r}:{u}".encode()).hexdigest(),
            }
            for u in range(5)
        ]
        rng.shuffle(items)
        bodies.append(json.dumps({"indicators": items}).encode())
    return bodies


def run_lookups(
    server: Server, key: str, bodies: list[bytes], threads: int, seconds: float, rate: float | None
) -> dict[str, Any]:
    """Closed loop (rate None) or open loop at `rate` requests/s spread over `threads` threads."""
    service: list[float] = []
    response: list[float] = []
    matches = [0, 0]  # matched, looked up
    errors: list[str] = []
    lock = threading.Lock()
    t_start = time.perf_counter() + 0.2
    t_end = t_start + seconds

    def worker(w: int) -> None:
        client = Client(server.port, key)
        rng = random.Random(w)
        k = 0
        try:
            while not errors:
                if rate:
                    scheduled = t_start + (k * threads + w) / rate
                    k += 1
                    if scheduled >= t_end:
                        return
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                else:
                    scheduled = time.perf_counter()
                    if scheduled >= t_end:
                        return
                body = bodies[rng.randrange(len(bodies))]
                status, data, elapsed = client.post("/api/v1/lookups/", body)
                finished = time.perf_counter()
                if status != 200:
                    errors.append(f"HTTP {status}: {data[:300]!r}")
                    return
                results = json.loads(data)["results"]
                with lock:
                    service.append(elapsed)
                    response.append(finished - scheduled)
                    matches[0] += sum(1 for r in results if r["match"])
                    matches[1] += len(results)
        finally:
            client.close()

    meter = CpuMeter(server)
    pool = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu = meter.stop()
    if errors:
        raise SystemExit("lookups failed: " + "; ".join(errors[:3]))
    wall = max(cpu["wall"] - 0.2, 1e-9)
    return {
        "mode": f"steady {rate:.0f}/s" if rate else "saturation",
        "threads": threads,
        "requests": len(service),
        "rps": len(service) / wall,
        "p50": pct(service, 50),
        "p95": pct(service, 95),
        "p99": pct(service, 99),
        "max": max(service) if service else float("nan"),
        "resp_p99": pct(response, 99),
        "match_rate": matches[0] / matches[1] if matches[1] else float("nan"),
        "cpu": cpu,
    }


# --------------------------------------------------------------------------------------------------- report


def ms(x: float) -> str:
    return f"{x * 1000:.0f}" if x == x else "-"


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def print_ingest_table(ds: Dataset, results: list[dict[str, Any]], hmac_seconds: float) -> None:
    floor = next(r for r in results if r["method"].startswith("floor"))
    naive = next(r for r in results if r["method"].startswith("naive"))
    print(
        f"\n== N = {ds.n:,} sellers: {ds.n_sightings:,} sightings, {len(ds.kinds):,} indicators "
        f"({ds.n_sightings / ds.n:.2f} per seller) =="
    )
    print(
        f"   keyed tokens precomputed for floor/naive in {hmac_seconds:.2f}s "
        f"({len(ds.kinds) / hmac_seconds:,.0f}/s, not in their timings)"
    )
    head = (
        f"{'method':<24}{'seconds':>9}{'sight/s':>10}{'rows/s':>10}{'% floor':>9}{'x naive':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'srv MB':>8}{'cli MB':>8}   cpu s: client/server/other/machine"
    )
    print(head)
    print("-" * len(head))
    rows = ds.n + len(ds.kinds) + ds.n_sightings
    for r in results:
        cpu = r["cpu"]
        print(
            f"{r['method']:<24}{r['seconds']:>9.2f}{ds.n_sightings / r['seconds']:>10,.0f}"
            f"{rows / r['seconds']:>10,.0f}{100 * floor['seconds'] / r['seconds']:>8.0f}%"
            f"{naive['seconds'] / r['seconds']:>8.2f}x{ms(r.get('p50', float('nan'))):>8}"
            f"{ms(r.get('p99', float('nan'))):>8}{mb(r['rss_server']) if 'rss_server' in r else '-':>8}"
            f"{mb(r['rss_client']):>8}   {cpu['client']:.1f}/{cpu['server']:.1f}/{cpu['other']:.1f}/"
            f"{cpu['machine']:.1f}"
        )
    sys.stdout.flush()


def print_lookup_table(n: int, runs: list[dict[str, Any]]) -> None:
    print(f"\n-- lookups of 10 indicators (5 known, 5 unknown) at N = {n:,} --")
    head = (
        f"{'mode':<18}{'threads':>8}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'p99 from sched':>15}{'match':>7}   cpu s: server/other/machine"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        cpu = r["cpu"]
        print(
            f"{r['mode']:<18}{r['threads']:>8}{r['requests']:>9}{r['rps']:>8.0f}{r['p50'] * 1000:>8.1f}"
            f"{r['p95'] * 1000:>8.1f}{r['p99'] * 1000:>8.1f}{r['max'] * 1000:>8.1f}{r['resp_p99'] * 1000:>15.1f}"
            f"{100 * r['match_rate']:>6.0f}%   {cpu['server']:.1f}/{cpu['other']:.1f}/{cpu['machine']:.1f}"
        )
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated seller counts (N)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (>1: gthread)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads sending batches")
    parser.add_argument("--batch", type=int, default=1000, help="sellers per API batch / bulk_create chunk")
    parser.add_argument(
        "--methods", default="floor,naive,api", help="subset of floor,naive,api (need floor,naive)"
    )
    parser.add_argument(
        "--lookup-seconds", type=float, default=30, help="steady lookup load duration (0: skip)"
    )
    parser.add_argument("--lookup-saturate", type=float, default=10, help="closed-loop lookup run (0: skip)")
    parser.add_argument("--lookup-threads", type=int, default=4)
    parser.add_argument(
        "--lookup-rate", type=float, default=0, help="steady requests/s (0: half of saturation)"
    )
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/exchange_bench"),
    )
    parser.add_argument("--conn-max-age", type=int, default=0, help="Django CONN_MAX_AGE for the server")
    parser.add_argument(
        "--no-analyze", action="store_true", help="look up right after the load, on the planner's stale stats"
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop and re-create the database")
    args = parser.parse_args()

    dbname = urlsplit(args.database_url).path.lstrip("/")
    if dbname in FORBIDDEN_DBS:
        raise SystemExit(f"refusing to benchmark in database {dbname!r}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    env = bench_env(args.database_url, args.conn_max_age)
    submit_key, lookup_key = setup_database(env, reset=not args.keep_db)
    os.environ.update({k: v for k, v in env.items() if k not in {"DATABASE_URL"}})
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM accounts_platform WHERE slug = %s", [os.environ["BENCH_SUBMIT_SLUG"]])
        platform_id = cursor.fetchone()[0]
    conninfo = args.database_url
    log_path = Path(tempfile.gettempdir()) / f"bench_ingest_gunicorn_{os.getpid()}.log"
    methods = args.methods.split(",")
    print(
        f"bench_ingest: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}, "
        f"gunicorn workers={args.workers} threads={args.threads}, client concurrency={args.concurrency}, "
        f"batch={args.batch}, CONN_MAX_AGE={args.conn_max_age}, ANALYZE before lookups={not args.no_analyze}"
        f", server log {log_path}"
    )
    summary = []
    for n in sizes:
        log(f"N={n:,}: generating rows")
        t0 = time.perf_counter()
        ds = generate(n, args.seed)
        log(
            f"  {ds.n_sightings:,} sightings, {len(ds.kinds):,} indicators in {time.perf_counter() - t0:.1f}s"
        )
        hmac_seconds = compute_tokens(ds)
        results = []
        if "floor" in methods:
            log("  floor: COPY")
            results.append(run_floor(ds, conninfo, platform_id))
            log(f"  floor: {results[-1]['seconds']:.2f}s")
        if "naive" in methods:
            log("  naive: bulk_create")
            results.append(run_naive(ds, conninfo, platform_id, args.batch))
            log(f"  naive: {results[-1]['seconds']:.2f}s")
        lookups = []
        if "api" in methods:
            server = Server(env, args.workers, args.threads, log_path)
            log(f"  api: starting gunicorn on port {server.port}")
            server.start()
            try:
                results.append(run_api(ds, conninfo, server, submit_key, args.concurrency, args.batch))
                log(f"  api: {results[-1]['seconds']:.2f}s")
                bodies = lookup_bodies(ds, 2000, args.seed)
                if not args.no_analyze:
                    analyze(conninfo)
                rate = args.lookup_rate or None
                if args.lookup_saturate > 0:
                    log(f"  lookups: saturation for {args.lookup_saturate:.0f}s")
                    lookups.append(
                        run_lookups(
                            server, lookup_key, bodies, args.lookup_threads, args.lookup_saturate, None
                        )
                    )
                    rate = rate or lookups[-1]["rps"] / 2
                if args.lookup_seconds > 0:
                    rate = rate or 50.0
                    log(f"  lookups: steady {rate:.0f}/s for {args.lookup_seconds:.0f}s")
                    lookups.append(
                        run_lookups(
                            server, lookup_key, bodies, args.lookup_threads, args.lookup_seconds, rate
                        )
                    )
            finally:
                server.stop()
        if {"floor", "naive"} <= set(methods):
            print_ingest_table(ds, results, hmac_seconds)
        if lookups:
            print_lookup_table(n, lookups)
        summary.append((ds, results, lookups))
        del ds

    print(
        "\n== summary (targets: API >= 40% of floor and >= 4x naive; lookup p99 <= 20 ms under steady load) =="
    )
    for ds, results, lookups in summary:
        by = {r["method"].split()[0]: r for r in results}
        line = f"N={ds.n:>9,}:"
        for name in ("floor", "naive", "api"):
            if name in by:
                line += f"  {name} {ds.n_sightings / by[name]['seconds']:>9,.0f} sight/s"
        if {"floor", "naive", "api"} <= set(by):
            api = by["api"]
            of_floor = by["floor"]["seconds"] / api["seconds"]
            x_naive = by["naive"]["seconds"] / api["seconds"]
            line += (
                f"  | api = {100 * of_floor:.0f}% of floor [{'PASS' if of_floor >= 0.4 else 'FAIL'}],"
                f" {x_naive:.2f}x naive [{'PASS' if x_naive >= 4 else 'FAIL'}]"
            )
        steady = [r for r in lookups if r["mode"].startswith("steady")]
        if steady:
            p99 = steady[-1]["p99"]
            line += f"  | lookup p99 {p99 * 1000:.1f} ms @ {steady[-1]['rps']:.0f}/s [{'PASS' if p99 <= 0.020 else 'FAIL'}]"
        print(line)


if __name__ == "__main__":
    main()
