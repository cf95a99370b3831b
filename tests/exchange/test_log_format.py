"""One log record is exactly one line, and no value a partner or visitor sends can add a key to it.

Every record is parsed with a strict logfmt grammar (`key=bare` or `key="escaped"`, one space apart): a value
that smuggles a newline, a carriage return, an escape sequence, NUL, a Unicode line separator or
` level=ERROR ` must stay inside one quoted value. Requests go through the real test client with the
formatter the settings configure, and through a gunicorn process whose stderr is read back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import Client
from django.test.utils import override_settings

from tests.builders import seller
from tests.conftest import make_platform
from tests.live import LiveSite, request

FORGED = "\nts=2026-01-01T00:00:00Z level=ERROR logger=exchange.auth event=forged"
HOSTILE = [
    FORGED,
    "\r" + FORGED.lstrip("\n"),
    "\x1b[2J\x1b[31m level=ERROR event=forged",
    "a\x00b level=ERROR event=forged",
    "a\u2028level=ERROR event=forged",
    "x level=ERROR event=forged ",
    'q" level=ERROR event="forged',
    "back\\slash\u0085level=ERROR event=forged\x7f",
]
ROOT = Path(__file__).resolve().parents[2]
PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"=\\]+)(?: |$)')


def parse(line: str) -> list[tuple[str, str]]:
    """A logfmt line as (key, raw value) pairs; fails unless the whole line is such pairs."""
    assert line.isprintable(), f"control or separator character in {line!r}"
    pairs, position = [], 0
    while position < len(line):
        match = PAIR.match(line, position)
        assert match, f"not key=value at {position}: {line!r}"
        pairs.append((match.group(1), match.group(2)))
        position = match.end()
    return pairs


def assert_one_honest_record(line: str, level: str | None = None) -> list[tuple[str, str]]:
    pairs = parse(line)
    keys = [key for key, _ in pairs]
    assert keys[:3] == ["ts", "level", "logger"], line
    assert keys.count("level") == 1 and keys.count("ts") == 1 and keys.count("logger") == 1, line
    assert ("event", "forged") not in pairs, line
    if level is not None:
        assert pairs[1] == ("level", level), line
    return pairs


def configured_formatter() -> logging.Formatter:
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert handler.formatter is not None
    return handler.formatter


def formatted(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = configured_formatter()
    lines = [formatter.format(record) for record in caplog.records]
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
    return lines


# --- the formatter on its own ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_argument_stays_inside_one_quoted_value(value):
    record = logging.LogRecord(
        "exchange.auth", logging.WARNING, __file__, 1, "event=x path=%s n=%s", None, None
    )
    record.args = (value, 3)
    pairs = assert_one_honest_record(configured_formatter().format(record), "WARNING")
    assert [key for key, _ in pairs][3:] == ["event", "path", "n"]
    assert pairs[-1] == ("n", "3")


def test_plain_values_stay_bare_and_a_timestamp_has_no_space():
    record = logging.LogRecord(
        "exchange.ingest", logging.INFO, __file__, 1, "event=s platform=%s", ("acme",), None
    )
    pairs = assert_one_honest_record(configured_formatter().format(record), "INFO")
    assert pairs[3:] == [("event", "s"), ("platform", "acme")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", pairs[0][1])


def test_free_text_of_other_libraries_is_one_quoted_message():
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", (FORGED,), None
    )
    pairs = assert_one_honest_record(configured_formatter().format(record), "WARNING")
    assert [key for key, _ in pairs] == ["ts", "level", "logger", "msg"]
    # The same when the hostile text is in the message itself (e.g. str(exception)).
    record = logging.LogRecord("django.security.X", logging.ERROR, __file__, 1, "bad" + FORGED, None, None)
    assert [key for key, _ in assert_one_honest_record(configured_formatter().format(record))] == [
        "ts",
        "level",
        "logger",
        "msg",
    ]


def test_exception_text_and_stack_are_one_escaped_value():
    try:
        raise ValueError("boom" + FORGED)
    except ValueError:
        record = logging.LogRecord(
            "exchange.reports", logging.ERROR, __file__, 1, "event=report_pass_failed", None, sys.exc_info()
        )
    record.stack_info = "Stack (most recent call last):\n  File x" + FORGED
    line = configured_formatter().format(record)
    pairs = assert_one_honest_record(line, "ERROR")
    keys = [key for key, _ in pairs]
    assert keys == ["ts", "level", "logger", "event", "exc", "stack"]
    assert "Traceback" in dict(pairs)["exc"] and "ValueError: boom" in dict(pairs)["exc"]


def test_a_hostile_logger_name_is_quoted():
    record = logging.LogRecord("exchange.x level=ERROR", logging.INFO, __file__, 1, "event=y", None, None)
    assert_one_honest_record(configured_formatter().format(record), "INFO")


def test_json_format_is_one_object_per_line(settings):
    from exchange.logformat import JsonFormatter

    formatter = JsonFormatter()
    record = logging.LogRecord(
        "exchange.auth", logging.WARNING, __file__, 1, "event=x path=%s", (FORGED,), None
    )
    line = formatter.format(record)
    assert line.isprintable() and "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "exchange.auth"
    assert data["message"] == f"event=x path={FORGED}"


# --- through the application -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_hostile_request_paths_never_forge_a_log_line(acme, caplog):
    caplog.set_level(logging.INFO)
    client = Client()
    for value in HOSTILE:
        encoded = quote(value, safe="")
        # An API route refuses an impossible seller reference at URL resolution (a 404 before any view);
        # django.request logs the hostile path, as it does for any unknown path.
        response = client.get(f"/api/v1/sellers/{encoded}/", HTTP_AUTHORIZATION="Bearer nope")
        assert response.status_code == 404
        assert client.get(f"/nothing-here/{encoded}").status_code == 404
        # exchange.auth logs a malformed key's attempt with the caller's address.
        assert (
            Client(REMOTE_ADDR=value).get("/api/v1/me/", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
        )
    lines = formatted(caplog)
    assert len([line for line in lines if "event=auth_failed" in line]) == len(HOSTILE)
    assert len([line for line in lines if "logger=django.request" in line]) == 3 * len(HOSTILE)
    for line in lines:
        assert_one_honest_record(line)


@pytest.mark.django_db
def test_every_partner_controlled_field_is_escaped(acme, caplog):
    """Each value a partner or visitor controls, in every place the exchange or Django logs one."""
    caplog.set_level(logging.INFO)
    readonly = make_platform("lookups-only", "Lookups Only", scopes=("lookup",))
    for value in HOSTILE:
        encoded = quote(value, safe="")
        # exchange.auth: event=auth_failed path=... ip=... (REMOTE_ADDR comes from the proxy or server).
        Client(REMOTE_ADDR=value).get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer bax_{'A' * 10}_{'b' * 40}")
        # exchange.auth: event=scope_denied path=... (the path itself is refused at resolution when hostile)
        readonly.client().get("/api/v1/sellers/", HTTP_USER_AGENT=value)
        # Idempotency-Key, seller_ref and user agent on a submission (accepted or refused).
        acme.client().post(
            "/api/v1/submissions/",
            json.dumps({"sellers": [seller(value[:40], ("email", "someone@example.com"))]}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=value[:200],
            HTTP_USER_AGENT=value,
        )
        if "\x00" not in value:  # a NUL seller_ref reaching PostgreSQL is issue 12 item 11, not a log matter
            acme.client().get(f"/api/v1/sellers/{encoded}/", HTTP_USER_AGENT=value)
        # django.security.DisallowedHost: the Host header.
        Client().get("/api/v1/me/", HTTP_HOST=value)
        # The admin login's username.
        Client().post("/admin/login/", {"username": value, "password": "wrong"})
    lines = formatted(caplog)
    assert any("event=scope_denied" in line for line in lines)
    assert any("logger=django.security.DisallowedHost" in line for line in lines)
    assert len([line for line in lines if "event=auth_failed" in line]) >= len(HOSTILE)
    for line in lines:
        assert_one_honest_record(line)


@pytest.mark.django_db
def test_django_loggers_reach_the_one_formatter_even_with_debug(acme, caplog):
    """Django's own console handler (DEBUG only) would print the raw message: the settings remove it."""
    assert logging.getLogger("django").handlers == []
    assert logging.getLogger("django.server").handlers == []
    with override_settings(DEBUG=True):
        caplog.set_level(logging.INFO)
        Client().get(f"/nothing-here/{quote(FORGED, safe='')}")
    for line in formatted(caplog):
        assert_one_honest_record(line)


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    site = LiveSite(tmp_path_factory.mktemp("log-format"))
    site.start(1)
    yield site
    site.stop()


GUNICORN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] [ -~]*$")


def test_a_gunicorn_servers_stderr_has_one_honest_line_per_record(live_site):
    (server,) = live_site.servers
    for value in HOSTILE:
        encoded = quote(value, safe="")
        answer = request(
            server.url, "GET", f"/api/v1/sellers/{encoded}/", headers={"Authorization": "Bearer x"}
        )
        assert answer.status == 404, answer  # an impossible reference: refused at URL resolution
        assert request(server.url, "GET", f"/nothing-here/{encoded}").status == 404
        assert request(server.url, "GET", "/api/v1/me/", headers={"Authorization": "Bearer x"}).status == 401
    stderr = live_site.stderr()
    ours = [line for line in stderr.splitlines() if not GUNICORN_LINE.match(line)]
    assert len([line for line in ours if "event=auth_failed" in line]) == len(HOSTILE), stderr
    assert len([line for line in ours if "Not Found" in line]) == 2 * len(HOSTILE), stderr
    assert "event=forged" in stderr  # the hostile text arrived, quoted
    for line in ours:
        assert_one_honest_record(line)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"LOG_FORMAT", "LOG_LEVEL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_log_format_json_writes_one_json_object_per_record():
    code = "import logging; logging.getLogger('django.request').warning('Not Found: %s', '/x\\nlevel=ERROR')"
    result = manage({"LOG_FORMAT": "json"}, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "Not Found" in line]
    record = json.loads(line)
    assert (record["level"], record["logger"]) == ("WARNING", "django.request")
    assert record["message"] == "Not Found: /x\nlevel=ERROR"


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_malformed_log_setting_is_refused_naming_it(name, value):
    result = manage({name: value}, "check")
    assert result.returncode != 0
    assert name in result.stderr
