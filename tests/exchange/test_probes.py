"""exchange/probes.py and proxy trust: health probes over plain HTTP with any Host, and X-Forwarded-Proto
believed only when the operator says a proxy sets it (issue 20, "Behind a TLS proxy")."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import Client, override_settings

from accounts.models import LOOKUP_LENGTH
from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

ROOT = Path(__file__).resolve().parents[2]
WELL_FORMED_KEY = "bax_" + "0" * LOOKUP_LENGTH + "_" + "s" * 43  # looked up in the database, which is down
PRODUCTION = {"DEBUG": False, "SECURE_SSL_REDIRECT": True, "ALLOWED_HOSTS": ["exchange.example.org"]}


@pytest.mark.django_db
@override_settings(**PRODUCTION)
@pytest.mark.parametrize("host", ["10.1.2.3", "10.1.2.3:8000", "exchange.example.org", "evil.example"])
def test_healthz_answers_plain_http_probes_with_any_host(host):
    client = Client()
    response = client.get("/healthz", HTTP_HOST=host)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert client.head("/healthz", HTTP_HOST=host).status_code == 200
    assert client.post("/healthz", HTTP_HOST=host).status_code == 405


@pytest.mark.django_db
@override_settings(**PRODUCTION)
def test_every_other_path_still_redirects_and_validates_the_host():
    client = Client()
    redirected = client.get("/api/v1/me/", HTTP_HOST="exchange.example.org")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://exchange.example.org/api/v1/me/"
    assert client.get("/api/v1/me/", HTTP_HOST="10.1.2.3").status_code == 400
    assert client.get("/healthz/", HTTP_HOST="10.1.2.3").status_code == 400  # only the exact probe path
    assert client.get("/api/v1/me/", HTTP_HOST="exchange.example.org", secure=True).status_code == 401


@pytest.mark.django_db
@override_settings(**PRODUCTION, SECURE_PROXY_SSL_HEADER=None)
def test_a_forged_forwarded_proto_is_ignored_without_proxy_trust():
    response = Client().get("/api/v1/me/", HTTP_HOST="exchange.example.org", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 301


@pytest.mark.django_db
@override_settings(**PRODUCTION, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_with_proxy_trust_the_forwarded_proto_counts():
    client = Client()
    assert (
        client.get(
            "/api/v1/me/", HTTP_HOST="exchange.example.org", HTTP_X_FORWARDED_PROTO="https"
        ).status_code
        == 401
    )
    assert client.get("/api/v1/me/", HTTP_HOST="exchange.example.org").status_code == 301


SHOW = "from django.conf import settings; import json; print(json.dumps(settings.SECURE_PROXY_SSL_HEADER))"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("false", None), ("true", ["HTTP_X_FORWARDED_PROTO", "https"])],
)
def test_proxy_trust_is_off_unless_the_operator_turns_it_on(value, expected):
    env = dict(PRODUCTION_ENV) | ({} if value is None else {"EXCHANGE_TRUST_PROXY": value})
    result = _manage(env, "shell", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


@pytest.fixture
def fresh_readiness(monkeypatch):
    from exchange import probes

    monkeypatch.setattr(probes, "_migrations_applied", False)  # this process's memory of an earlier answer


@pytest.mark.django_db
@override_settings(**PRODUCTION)
def test_readyz_is_ready_when_the_database_answers_and_every_migration_is_applied(fresh_readiness):
    response = Client().get("/readyz", HTTP_HOST="10.1.2.3")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.django_db
@override_settings(**PRODUCTION)
def test_readyz_names_unapplied_migrations(fresh_readiness):
    from django.db.migrations.recorder import MigrationRecorder

    latest = MigrationRecorder.Migration.objects.filter(app="graph").order_by("-id").first()
    assert latest is not None
    latest.delete()  # as if the code were newer than the database (rolled back with the test)
    response = Client().get("/readyz", HTTP_HOST="10.1.2.3")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "failing": ["migrations"]}


@pytest.mark.django_db
def test_readyz_in_worker_mode_wants_a_recent_worker_heartbeat(fresh_readiness, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the Procrastinate worker needs PostgreSQL")
    settings.EXCHANGE_TASK_MODE = "worker"
    client = Client()
    assert client.get("/readyz").json() == {"status": "not ready", "failing": ["worker"]}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '5 minutes')"
        )
    assert client.get("/readyz").status_code == 503  # a stalled worker does not count
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now())")
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readyz_answers_503_when_the_database_is_down_and_healthz_still_200(tmp_path):
    """A real gunicorn whose PostgreSQL is not there (a closed port): the probes answer, nothing else breaks."""
    from tests.system.test_gunicorn_config import base_env, free_port, gunicorn, wait_healthy

    port = free_port()
    env = base_env(tmp_path, port) | {
        "WEB_CONCURRENCY": "1",
        "DATABASE_URL": f"postgres://root@127.0.0.1:{free_port()}/nothing",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    process = subprocess.Popen(
        gunicorn(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(port, process)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
            raise AssertionError("/readyz answered 200 without a database")
        except urllib.error.HTTPError as refused:
            assert refused.code == 503
            assert json.loads(refused.read()) == {"status": "not ready", "failing": ["database"]}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)


def test_during_a_database_outage_the_admin_and_the_api_answer_503_not_500(tmp_path):
    """The same real gunicorn without its PostgreSQL: the admin's login page (whose session and user lookups
    run in middleware, before any view) and the API answer a 503 to retry, never a 500."""
    from tests.system.test_gunicorn_config import base_env, free_port, gunicorn, wait_healthy

    port = free_port()
    env = base_env(tmp_path, port) | {
        "WEB_CONCURRENCY": "1",
        **PRODUCTION_ENV,  # DEBUG off: Django's own error page would answer instead of the handler
        "DEBUG": "False",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": f"postgres://root@127.0.0.1:{free_port()}/nothing",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    process = subprocess.Popen(
        gunicorn(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(port, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=15) as page:
            assert page.status == 200  # the login form itself needs no database
        for path, headers, kind in [
            (
                "/admin/",
                {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"},
                "text/html",
            ),  # a session to load
            (
                "/admin/graph/actorcluster/",
                {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"},
                "text/html",
            ),
            ("/api/v1/me/", {"Authorization": f"Bearer {WELL_FORMED_KEY}"}, "application/json"),
        ]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=15)
                raise AssertionError(f"{path} answered 2xx without a database")
            except urllib.error.HTTPError as refused:
                assert refused.code == 503, (path, refused.code)
                assert refused.headers["Retry-After"] == "5"
                assert refused.headers["Content-Type"].startswith(kind), path
                body = refused.read().decode()
                assert (
                    ("Temporarily unavailable" in body)
                    if kind == "text/html"
                    else ("service_unavailable" in body)
                )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
