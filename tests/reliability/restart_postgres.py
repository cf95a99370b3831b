"""Restart PostgreSQL during ingest: the API should answer clean 503s while the database is away, then
recover by itself; nothing accepted is lost or duplicated.

    .venv/bin/python tests/reliability/restart_postgres.py [--restarts 3] [--downtime 3] [--port 5499]

It does NOT touch the shared PostgreSQL server: it creates a throwaway cluster (`initdb`, owned by the
`postgres` user, data under /tmp/exchange_reliab_pg_<port>) on its own port, runs gunicorn against it and
stops/starts that cluster (alternating `-m fast` and `-m immediate`, i.e. a crash and recovery) while two
client threads ingest. The client here does not retry by itself: every answer is recorded, then the batch is
resent with the same Idempotency-Key until it is accepted. Printed: the answers met while the database was
down (status and error code), the time to recover after each restart, and the reconciliation.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.server import Gunicorn, free_port, log, production_env, setup


def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=check
    )


class Cluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self.data = Path(f"/tmp/exchange_reliab_pg_{port}")

    def create(self) -> None:
        if self.data.exists():
            self.stop("immediate", check=False)
            shutil.rmtree(self.data)
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=50"
        pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self, mode: str, check: bool = True) -> None:
        pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=check)

    def destroy(self) -> None:
        self.stop("immediate", check=False)
        shutil.rmtree(self.data, ignore_errors=True)


def batch(thread: int, number: int, size: int) -> bytes:
    reported = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    sellers = [
        {
            "seller_ref": f"r{thread}-{number}-{n}",
            "status": "suspected",
            "reasons": ["trademark"],
            "reported_at": reported,
            "indicators": [
                {"kind": "email", "hash": hashlib.sha256(f"{thread}-{number}-{n}".encode()).hexdigest()},
                {"kind": "phone", "hash": hashlib.sha256(f"p{n % 97}".encode()).hexdigest()},
            ],
        }
        for n in range(size)
    ]
    return json.dumps({"sellers": sellers}).encode()


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, str]] = []  # (time, "201" | "503 service_unavailable" | "connection")

    def add(self, what: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), what))


def ingest(
    url: str, key: str, thread: int, batches: int, size: int, recorder: Recorder, stored: dict
) -> None:
    host, port = url.removeprefix("http://").split(":")
    for number in range(batches):
        body, idem = batch(thread, number, size), f"pg-{thread}-{number}"
        while True:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request(
                    "POST",
                    "/api/v1/submissions/",
                    body,
                    {
                        "Authorization": f"Bearer {key}",
                        "Content-Type": "application/json",
                        "Idempotency-Key": idem,
                    },
                )
                response = conn.getresponse()
                raw = response.read()
            except OSError as exc:
                recorder.add(f"connection {type(exc).__name__}")
                time.sleep(0.2)
                continue
            finally:
                conn.close()
            try:
                code = json.loads(raw).get("error", {}).get("code", "")
            except ValueError:
                code = "non-json body"
            recorder.add(f"{response.status} {code}".strip())
            if response.status in (200, 201):
                stored[idem] = json.loads(raw)["submission"]
                break
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5499)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--downtime", type=float, default=3.0, help="seconds the database stays down")
    parser.add_argument("--batches", type=int, default=60, help="batches per client thread")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)

    cluster = Cluster(args.port)
    log(f"creating a throwaway PostgreSQL cluster in {cluster.data} on port {args.port}")
    cluster.create()
    cluster.start()
    url = f"postgres://postgres@127.0.0.1:{args.port}/postgres"
    env = production_env(f"postgres://postgres@127.0.0.1:{args.port}/exchange_reliab_pg")
    subprocess.run(
        ["psql", url, "-qc", "CREATE DATABASE exchange_reliab_pg"], check=True, capture_output=True
    )
    keys = setup(env, "pgmarket")
    logdir = Path(tempfile.mkdtemp(prefix="restart_pg_"))
    server = Gunicorn(env, free_port(), logdir / "gunicorn.log")
    server.start()
    recorder, stored = Recorder(), dict[str, int]()
    outages: list[tuple[float, float, str]] = []
    ok = False
    try:
        threads = [
            threading.Thread(
                target=ingest,
                args=(server.url, keys["pgmarket"], t, args.batches, args.batch_size, recorder, stored),
            )
            for t in range(2)
        ]
        for t in threads:
            t.start()
        for n in range(args.restarts):
            time.sleep(2)
            mode = "fast" if n % 2 == 0 else "immediate"
            down = time.monotonic()
            cluster.stop(mode)
            log(f"PostgreSQL stopped (-m {mode})")
            time.sleep(args.downtime)
            cluster.start()
            up = time.monotonic()
            log("PostgreSQL started again")
            outages.append((down, up, mode))
        for t in threads:
            t.join()
        with_db = env["DATABASE_URL"]
        counts = subprocess.run(
            [
                "psql", with_db, "-tAc",
                "SELECT (SELECT count(*) FROM exchange_submission), (SELECT count(*) FROM exchange_seller),"
                " (SELECT count(*) FROM exchange_sighting)",
            ],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        submissions, sellers, sightings = map(int, counts.split("|"))
        expected = 2 * args.batches
        ok = (submissions, sellers, sightings) == (
            expected,
            expected * args.batch_size,
            2 * expected * args.batch_size,
        )
        during: Counter[str] = Counter()
        after: Counter[str] = Counter()
        recovery = []
        for down, up, _ in outages:
            during.update(what for t, what in recorder.events if down <= t <= up)
            later = [(t, what) for t, what in recorder.events if t > up]
            after.update(what for t, what in later[:20])
            first_ok = next((t for t, what in later if what.startswith(("200", "201"))), None)
            recovery.append(f"{first_ok - up:.2f} s" if first_ok else "never")
        print(
            f"restart_postgres: {len(outages)} restarts ({', '.join(m for *_, m in outages)}), {args.downtime} s down each"
        )
        print(f"  answers while PostgreSQL was down: {dict(during)}")
        print(f"  first answers after it came back: {dict(after)}")
        print(f"  time from restart to the first accepted batch: {', '.join(recovery)}")
        print(
            f"  reconciliation: {submissions}/{expected} submissions, {sellers} sellers, {sightings} sightings: "
            f"{'OK, nothing lost or duplicated' if ok else 'MISMATCH'}"
        )
        print(f"  all answers: {dict(Counter(what for _, what in recorder.events))}; logs in {logdir}")
    finally:
        server.stop()
        cluster.destroy()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
