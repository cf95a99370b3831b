"""gunicorn_config.py: workers from the CPU count, an access log, a graceful timeout, and a control socket per
instance (gunicorn's default path is one per user, so a second instance took the first one's)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.reliability.server import answers_healthz, free_port

ROOT = Path(__file__).resolve().parents[2]


def gunicorn(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn_config.py"), *args, "exchange.wsgi"]


def base_env(tmp_path: Path, port: int) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    return keep | {
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_CONTROL_DIR": str(tmp_path / "run"),
    }


def test_the_configuration_says_what_the_readme_says(tmp_path):
    port = free_port()
    result = subprocess.run(
        gunicorn("--print-config"), cwd=ROOT, env=base_env(tmp_path, port), capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    config = dict(line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    config = {key.strip(): value.strip() for key, value in config.items()}
    assert config["workers"] == str(2 * multiprocessing.cpu_count() + 1)
    assert config["bind"] == f"['127.0.0.1:{port}']"
    assert config["accesslog"] == "-"
    assert config["graceful_timeout"] == "30"
    assert config["control_socket"] == str(tmp_path / "run" / f"gunicorn-127.0.0.1-{port}.ctl")


def wait_healthy(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    alive = lambda: process.poll() is None  # noqa: E731
    assert answers_healthz(f"http://127.0.0.1:{port}", seconds, alive), (
        f"gunicorn on {port} did not answer /healthz within {seconds} s" + ("" if alive() else " (it exited)")
    )


def test_two_instances_run_side_by_side_each_with_its_own_control_socket(tmp_path):
    ports = [free_port(), free_port()]
    processes = []
    try:
        for port in ports:
            env = base_env(tmp_path, port) | {
                "WEB_CONCURRENCY": "1",
                "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
            }
            processes.append(
                subprocess.Popen(
                    gunicorn(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for port, process in zip(ports, processes, strict=True):
            wait_healthy(port, process)
        sockets = sorted((tmp_path / "run").glob("*.ctl"))
        assert [s.name for s in sockets] == sorted(f"gunicorn-127.0.0.1-{port}.ctl" for port in ports)
        assert all(s.is_socket() for s in sockets)
        assert "GET /healthz" in (tmp_path / "access.log").read_text()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=40) == 0
