"""Error reports (exchange/errorreport.py) against a real Sentry-compatible receiver on localhost: with
SENTRY_DSN set, an exception and a logged error arrive as envelopes carrying their type and stack, and none
of the values around them (message, locals, the logged arguments)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANARIES = ["ring-leader@example.com", "a" * 64, "seller-ref-CANARY-17"]

CODE = f"""
import logging, sentry_sdk
from django.conf import settings
assert settings.SENTRY_DSN and sentry_sdk.get_client().is_active()
def handle_batch(raw_email={CANARIES[0]!r}, transport_hash={CANARIES[1]!r}, seller_ref={CANARIES[2]!r}):
    raise ValueError("cannot store " + seller_ref + " " + raw_email)
try:
    handle_batch()
except ValueError:
    sentry_sdk.capture_exception()
logging.getLogger("exchange.ingest").error("event=store_failed seller_ref=%s hash=%s", {CANARIES[2]!r}, {CANARIES[1]!r})
sentry_sdk.flush(10)
"""


class Receiver(BaseHTTPRequestHandler):
    envelopes: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":  # sentry-sdk's choice when brotli is installed (WeasyPrint's fonts bring it)
            import brotli

            body = brotli.decompress(body)
        type(self).envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def events(envelopes: list[bytes]) -> list[dict]:
    found = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


def test_reports_carry_type_and_stack_and_no_value(receiver):
    keep = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    env = keep | {"DEBUG": "1", "SENTRY_DSN": f"http://publickey@127.0.0.1:{receiver}/42"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw = b"".join(Receiver.envelopes)
    for canary in CANARIES:
        assert canary.encode() not in raw, canary
    received = events(Receiver.envelopes)
    exceptions = [e for e in received if "exception" in e]
    assert [v["type"] for e in exceptions for v in e["exception"]["values"]] == ["ValueError"]
    frames = exceptions[0]["exception"]["values"][0]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "handle_batch" and "vars" not in frames[-1]
    assert {"request", "user", "breadcrumbs", "extra", "contexts"}.isdisjoint(exceptions[0])
    logged = [e for e in received if "exception" not in e]
    assert logged and all(e.get("message") == "(message dropped)" for e in logged)


def test_without_a_dsn_nothing_is_set_up():
    keep = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SENTRY_DSN"}
    }
    code = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=keep | {"DEBUG": "1"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
