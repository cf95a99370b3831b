"""Read scaling against a real PostgreSQL streaming replica (DATABASE_REPLICA_URL, exchange/routers.py).

The test builds its own pair: `initdb` a primary on a free port, `pg_basebackup -R` it into a hot standby on
another, and serves the exchange with gunicorn reading from the standby. Pausing the standby's WAL replay
then makes "which server answered" visible: data submitted while it is paused is on the primary only. The
servers run as the `postgres` OS user (PostgreSQL refuses root) from a temporary directory it owns; they,
gunicorn and the directory are removed whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.reliability.server import Gunicorn, free_port, production_env, setup

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# PostgreSQL refuses to run as root: the test runs its servers as the postgres OS user when it is root.
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def pg(*command: str) -> None:
    result = subprocess.run([*AS_POSTGRES, *command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])


@dataclass
class PgServer:
    data: Path
    port: int
    socket_dir: Path

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/exchange"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            f"{self.data}.log",
            "-w",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )

    def query(self, sql: str, *params: Any) -> Any:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


@dataclass
class ReplicaPair:
    primary: PgServer
    standby: PgServer

    def wait_for_replay(self, seconds: float = 20.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.primary.query("SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target):
                return
            time.sleep(0.05)
        raise AssertionError(f"the standby did not replay up to {target} within {seconds} s")

    def pause_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while self.standby.query("SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "the standby's replay did not pause"
            time.sleep(0.05)


@pytest.fixture
def replica_pair() -> Iterator[ReplicaPair]:
    if not (PG_BIN / "initdb").exists() or (AS_POSTGRES and not shutil.which("runuser")):
        pytest.skip(f"needs PostgreSQL 15's server binaries in {PG_BIN}")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("starts its own PostgreSQL servers: run once, in the PostgreSQL pass of the suite")
    root = Path(tempfile.mkdtemp(prefix="exchange-replica-"))
    if AS_POSTGRES:
        shutil.chown(root, "postgres", "postgres")
    primary = PgServer(root / "primary", free_port(), root)
    standby = PgServer(root / "standby", free_port(), root)
    try:
        pg(str(PG_BIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
        primary.start()
        with psycopg.connect(primary.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE exchange")
        pg(
            str(PG_BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"),
        )
        standby.start()
        yield ReplicaPair(primary, standby)
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


def fake_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Api:
    """The partner API of one gunicorn, as one platform's key sees it."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if path == "/api/v1/submissions/":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def submit(self, seller_ref: str, email: str) -> None:
        seller = {
            "seller_ref": seller_ref,
            "status": "confirmed",
            "reasons": ["counterfeit"],
            "reported_at": "2026-01-05T12:00:00Z",
            "indicators": [{"kind": "email", "hash": fake_hash(email)}],
        }
        status, body = self.call("POST", "/api/v1/submissions/", {"sellers": [seller]})
        assert status == 201, body

    def matches(self, email: str) -> bool:
        status, body = self.call(
            "POST", "/api/v1/lookups/", {"indicators": [{"kind": "email", "hash": fake_hash(email)}]}
        )
        assert status == 200, body
        return bool(body["results"][0]["match"])


def lookups_charged(server: PgServer, key: str) -> tuple[int, int]:
    """(lookup units charged, lookup audit entries) of one key (bax_<lookup>_<secret>), as `server` has them."""
    lookup = key.split("_", 2)[1]  # the secret part may contain "_" itself
    charged = server.query(
        "SELECT COALESCE(SUM(u.count), 0) FROM exchange_lookupusage u "
        "JOIN accounts_apikey k ON k.id = u.api_key_id WHERE k.lookup = %s",
        lookup,
    )
    audited = server.query(
        "SELECT count(*) FROM accounts_auditentry WHERE action = 'lookup' AND actor = %s", f"bax_{lookup}"
    )
    return int(charged), int(audited)


def test_lookups_and_partner_reads_come_from_the_replica_and_fall_back_to_the_primary(replica_pair, tmp_path):
    primary, standby = replica_pair.primary, replica_pair.standby
    env = production_env(primary.url, task_mode="sync", log_level="INFO")
    env["DATABASE_REPLICA_URL"] = standby.url
    keys = setup(env, "acme", "bazaar")  # migrates through the router: the primary only
    # One worker: the replica's health is per process, so one process makes the fallback log line countable.
    server = Gunicorn(env, free_port(), tmp_path / "gunicorn.log", workers=1)
    try:
        server.start()
        acme, bazaar = Api(server.url, keys["acme"]), Api(server.url, keys["bazaar"])

        # Streaming works: what is submitted to the primary reaches the replica, and lookups find it.
        bazaar.submit("baz-1", "ring-one@example.com")
        acme.submit("acme-1", "ring-one@example.com")
        replica_pair.wait_for_replay()
        assert acme.matches("ring-one@example.com")
        replica_pair.wait_for_replay()  # the standby has that lookup's charge and audit entry too

        # Replay paused: new data is accepted by the primary, but the lookup does not see it (it reads the
        # standby), while its quota charge and audit entry land on the primary (the standby never gets them).
        replica_pair.pause_replay()
        bazaar.submit("baz-2", "ring-two@example.com")
        assert primary.query("SELECT count(*) FROM exchange_seller WHERE seller_ref = 'baz-2'") == 1
        before = lookups_charged(primary, keys["acme"])
        assert not acme.matches("ring-two@example.com")
        assert lookups_charged(primary, keys["acme"]) == (before[0] + 1, before[1] + 1)
        assert lookups_charged(standby, keys["acme"]) == before
        # The partner's own new seller: absent from its list (the replica's view, lag as documented), but
        # its page is found on the primary rather than answered 404.
        status, page = bazaar.call("GET", "/api/v1/sellers/")
        assert status == 200 and [s["seller_ref"] for s in page["results"]] == ["baz-1"]
        status, detail = bazaar.call("GET", "/api/v1/sellers/baz-2/")
        assert status == 200 and detail["seller_ref"] == "baz-2"

        # Replay resumed: the replica catches up and the lookup sees the new seller.
        standby.query("SELECT pg_wal_replay_resume()")
        replica_pair.wait_for_replay()
        assert acme.matches("ring-two@example.com")

        # The standby stops: lookups and reads still answer, from the primary, and the fallback is logged once.
        standby.stop()
        assert acme.matches("ring-two@example.com")
        assert acme.matches("ring-one@example.com")
        status, clusters = acme.call("GET", "/api/v1/clusters/")
        assert status == 200 and len(clusters["results"]) == 1
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=10) as ready:  # judges the primary
            assert ready.status == 200
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert log.count("event=replica_unavailable") == 1, log[-3000:]
    assert "error=OperationalError" in log
