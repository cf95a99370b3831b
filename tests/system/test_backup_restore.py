"""Backup and restore as docs/operations.md describes them, on the real PostgreSQL: dump, drop, restore, and
lookups still match; restored with another pepper file, nothing matches (the pepper is part of the backup).

Each step is a separate `manage.py` process on its own database, as an operator runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgres://root@127.0.0.1:5432"
PEPPER = "1:YmFja3VwLXJlc3RvcmUtdGVzdC1wZXBwZXItMzItYnl0ZXMh"
OTHER_PEPPER = "1:YW5vdGhlci1wZXBwZXItZmlsZS10aGF0LWlzLTMyLWJ5dGVzIQ=="

SEED = """
from accounts.actions import do_create_api_key, do_save_platform
from accounts.models import Platform
from exchange import ingest
from exchange.normalization import transport_hash
acme, bazaar = Platform(slug="acme", name="Acme"), Platform(slug="bazaar", name="Bazaar")
for platform in (acme, bazaar):
    do_save_platform(platform, "operator")
key, _ = do_create_api_key(acme, ["submit"], "seed", "operator")
payload = {"sellers": [{"seller_ref": "a-1", "status": "confirmed", "reasons": ["counterfeit"],
    "reported_at": "2026-11-01T12:00:00Z",
    "indicators": [{"kind": "email", "hash": transport_hash("email", "ring@example.com")}]}]}
ingest.do_submit(acme, key, "seed-1", b"seed", payload)
"""
LOOKUP = """
from accounts.actions import do_create_api_key
from accounts.models import Platform
from exchange.lookups import do_lookup
from exchange.normalization import transport_hash
key, _ = do_create_api_key(Platform.objects.get(slug="bazaar"), ["lookup"], "check", "operator")
results = do_lookup(key, [("email", transport_hash("email", "ring@example.com"))])
print("MATCHED" if any(r["match"] for r in results) else "NO MATCH")
"""


def manage(database: str, *args: str, pepper: str = PEPPER) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EXCHANGE_", "DATABASE_"))}
    env = keep | {
        "DEBUG": "1",
        "DATABASE_URL": f"{SERVER}/{database}",
        "EXCHANGE_PEPPERS": pepper,
        "EXCHANGE_TASK_MODE": "sync",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (command, result.stderr[-3000:])


@pytest.fixture
def databases():
    names = [f"exchange_backup_{name}_{uuid.uuid4().hex[:8]}" for name in ("live", "restored")]
    yield names
    for name in names:
        subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "root", name], check=False)


@pytest.mark.slow
def test_dump_drop_restore_and_lookups_still_match_with_the_same_pepper_only(tmp_path, databases):
    if os.environ.get("DATABASE_URL", "").split(":", 1)[0] not in {"postgres", "postgresql"}:
        pytest.skip("backup and restore are PostgreSQL's (pg_dump, pg_restore)")
    live, restored = databases
    dump = tmp_path / "exchange.dump"
    run("createdb", "-h", "127.0.0.1", "-U", "root", live)
    manage(live, "migrate", "--noinput")
    manage(live, "shell", "-c", SEED)
    assert manage(live, "shell", "-c", LOOKUP).stdout.strip().endswith("MATCHED")

    run("pg_dump", "-h", "127.0.0.1", "-U", "root", "--format=custom", "--no-owner", f"--file={dump}", live)
    run("dropdb", "-h", "127.0.0.1", "-U", "root", live)
    run("createdb", "-h", "127.0.0.1", "-U", "root", restored)
    run(
        "pg_restore",
        "-h",
        "127.0.0.1",
        "-U",
        "root",
        "--no-owner",
        "--exit-on-error",
        f"--dbname={restored}",
        str(dump),
    )

    manage(restored, "migrate", "--check")  # the restored schema is complete: nothing left to apply
    assert manage(restored, "shell", "-c", LOOKUP).stdout.strip().endswith("MATCHED")
    # The database without its pepper file: every stored token is keyed with a secret that is gone.
    assert manage(restored, "shell", "-c", LOOKUP, pepper=OTHER_PEPPER).stdout.strip().endswith("NO MATCH")
