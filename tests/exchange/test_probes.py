"""exchange/probes.py and proxy trust: health probes over plain HTTP with any Host, and X-Forwarded-Proto
believed only when the operator says a proxy sets it (issue 20, "Behind a TLS proxy")."""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings

from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

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
