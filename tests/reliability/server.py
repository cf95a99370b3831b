"""Shared plumbing of the reliability scripts: a throwaway PostgreSQL database, production-like settings,
a gunicorn server and a Procrastinate worker that can be started, killed (-9) and restarted."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
PEPPER = base64.b64encode(hashlib.sha256(b"exchange-reliability-pepper").digest()).decode()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def database_url(name: str, server: str = DEFAULT_SERVER) -> str:
    if not name.startswith("exchange_reliab"):
        raise SystemExit(
            f"refusing to use database {name!r}: reliability databases are named exchange_reliab*"
        )
    return f"{server.rstrip('/')}/{name}"


def drop_database(url: str, *, recreate: bool = False) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    assert name.startswith("exchange_reliab"), name
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if recreate:
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_database(url: str) -> None:
    drop_database(url, recreate=True)


def fake_transport_hash(kind: str, value: str) -> str:
    """Any 64-hex SHA-256 will do for synthetic values; normalising them would only cost time."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def production_env(url: str, task_mode: str = "sync", log_level: str = "WARNING") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DEBUG", None)
    env.pop("TEST_DATABASE_NAME", None)
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "reliability-" + "s" * 50,
            "EXCHANGE_PEPPERS": f"1:{PEPPER}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "False",
            "EXCHANGE_TASK_MODE": task_mode,
            "EXCHANGE_API_RATE": "1000000/min",
            "EXCHANGE_LOOKUP_DAILY_QUOTA": "1000000000",
            "LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def setup(env: dict[str, str], *slugs: str, scopes: str = "submit,lookup,read") -> dict[str, str]:
    """Migrate and create one platform + key per slug; returns {slug: full key}."""
    manage(env, "migrate", "--noinput", "-v0")
    keys = {}
    for slug in slugs:
        manage(env, "create_platform", slug, "--name", slug.title())
        keys[slug] = manage(env, "create_api_key", slug, "--scopes", scopes).strip().splitlines()[-1]
    return keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_healthz(url: str, seconds: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Whether the server at `url` answers /healthz with 200 within `seconds` (polling; False at once if
    `alive()` says the server process has exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


class Process:
    """A child process in its own session, so that kill -9 reaches it and every child it forked."""

    def __init__(self, args: list[str], env: dict[str, str], logfile: Path) -> None:
        self.args, self.env, self.logfile = args, env, logfile
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.logfile.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        """The started process's pid: also its process group's (its own session)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class Gunicorn(Process):
    def __init__(
        self, env: dict[str, str], port: int, logfile: Path, workers: int = 2, threads: int = 1
    ) -> None:
        args = [
            sys.executable, "-m", "gunicorn", "exchange.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--timeout", "60", "--graceful-timeout", "5",
        ]  # fmt: skip
        super().__init__(args, env, logfile)
        self.url = f"http://127.0.0.1:{port}"

    def start(self, wait: float = 30.0) -> None:
        super().start()
        if not answers_healthz(self.url, wait):
            raise SystemExit(f"gunicorn did not answer /healthz within {wait} s; see {self.logfile}")


class Worker(Process):
    def __init__(self, env: dict[str, str], logfile: Path) -> None:
        args = [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "clusters"]
        super().__init__(args, env, logfile)


@dataclass
class WorkerWorld:
    """A fresh database with two or more platforms' keys, production settings in worker mode, a log folder and
    a gunicorn server (not started): what the worker reliability scripts start from."""

    url: str
    env: dict[str, str]
    keys: dict[str, str]
    logdir: Path
    server: Gunicorn


def worker_world(database: str, server: str, prefix: str, *slugs: str) -> WorkerWorld:
    url = database_url(database, server)
    reset_database(url)
    env = production_env(url, task_mode="worker", log_level="INFO")
    keys = setup(env, *slugs)
    logdir = Path(tempfile.mkdtemp(prefix=prefix))
    return WorkerWorld(url, env, keys, logdir, Gunicorn(env, free_port(), logdir / "gunicorn.log"))
