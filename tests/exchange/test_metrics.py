"""/metrics (exchange/metrics.py, served by exchange/probes.py): not served without METRICS_TOKEN, 401 without
the right bearer token, the named metrics with it (over plain HTTP with any Host), no identifier anywhere in
the body, and one scrape counting what several gunicorn workers served (multiprocess mode)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from exchange.models import Indicator
from tests.builders import seller, submit, th

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789-abcdefghij"
PRODUCTION = {"DEBUG": False, "SECURE_SSL_REDIRECT": True, "ALLOWED_HOSTS": ["exchange.example.org"]}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def scrape(client: Client | None = None, **headers: Any) -> Samples:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


# ------------------------------------------------------------------------------------------------ access


@pytest.mark.django_db
def test_without_a_token_metrics_is_not_served_at_all(settings):
    settings.METRICS_TOKEN = ""
    client = Client()
    unknown = client.get("/no-such-path")
    for authorization in (None, f"Bearer {TOKEN}", "Bearer "):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = client.get("/metrics", headers=headers)
        assert response.status_code == unknown.status_code == 404
        assert response.content == unknown.content.replace(b"/no-such-path", b"/metrics")


@pytest.mark.django_db
@override_settings(**PRODUCTION, METRICS_TOKEN="")
def test_without_a_token_metrics_redirects_and_validates_the_host_like_any_path():
    client = Client()
    assert client.get("/metrics", HTTP_HOST="exchange.example.org").status_code == 301
    assert client.get("/metrics", HTTP_HOST="10.1.2.3").status_code == 400
    assert client.get("/metrics", HTTP_HOST="exchange.example.org", secure=True).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        f"Bearer {TOKEN[:-1]}",  # a prefix
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
    ],
)
def test_a_missing_or_wrong_token_is_401_and_reveals_no_metric(token, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = Client().get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"exchange_" not in response.content and b"# TYPE" not in response.content


@pytest.mark.django_db
def test_the_token_is_checked_before_the_method(token):
    client = Client()
    assert client.post("/metrics").status_code == 401
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
    assert client.head("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer  {TOKEN} ").status_code == 200


@pytest.mark.django_db
@override_settings(**PRODUCTION, METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize("host", ["10.1.2.3", "10.1.2.3:8000", "exchange.example.org", "evil.example"])
def test_served_over_plain_http_with_any_host_in_production_settings(host):
    samples = scrape(HTTP_HOST=host)
    assert value(samples, "exchange_metrics_database_up") == 1
    assert Client().get("/metrics", HTTP_HOST=host).status_code == 401


def test_a_short_token_is_refused_at_start():
    from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

    result = _manage({**PRODUCTION_ENV, "METRICS_TOKEN": "short"}, "check")
    assert result.returncode != 0
    assert "METRICS_TOKEN must be at least 32 characters" in result.stderr


# ------------------------------------------------------------------------------------------------ values


@pytest.mark.django_db
def test_the_named_metrics_count_submissions_lookups_reclusters_and_the_outbox(token, acme, bazaar):
    from graph.clustering import recluster_full
    from graph.models import DeliveryStatus, ReportDelivery

    before = scrape()
    assert (
        submit(acme.client(), seller("a1", ("email", "x@x.com"), ("phone", "+49 30 1234567"))).status_code
        == 201
    )
    assert submit(bazaar.client(), seller("b1", ("email", "x@x.com"))).status_code == 201
    refused = submit(acme.client(), {**seller("a2", ("email", "y@y.com")), "status": "bogus"})
    assert refused.status_code == 400
    again = acme.client().post(
        "/api/v1/submissions/", b"{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=""
    )
    assert again.status_code == 400
    lookup = {"indicators": [{"kind": "email", "hash": th("email", "x@x.com")}, {"kind": "email", "hash": th("email", "n@n.com")}]}  # fmt: skip
    answer = acme.client().post("/api/v1/lookups/", lookup, format="json").json()["results"]
    assert [r["match"] for r in answer] == [True, False]
    assert acme.client().get("/api/v1/sellers/a1/").status_code == 200
    assert acme.client().get("/api/v1/sellers/nobody/").status_code == 404
    recluster_full()
    now = timezone.now()
    for n, (status, attempts) in enumerate(
        [(DeliveryStatus.PENDING, 0), (DeliveryStatus.PENDING, 2), (DeliveryStatus.FAILED, 5)]
    ):
        ReportDelivery.objects.create(
            kind="platform", recipient=f"r{n}@example.org", period_end=now, subject="s", body_text="t",
            body_html="h", message_id=f"<m{n}@example.org>", status=status, attempts=attempts,
            next_attempt_at=now - timedelta(minutes=10),
        )  # fmt: skip
    after = scrape()

    requests = "exchange_http_requests_total"
    assert delta(before, after, requests, route="api:submissions", method="POST", status="2xx") == 2
    assert delta(before, after, requests, route="api:submissions", method="POST", status="4xx") == 2
    assert delta(before, after, requests, route="api:lookups", method="POST", status="2xx") == 1
    assert delta(before, after, requests, route="api:seller-detail", method="GET", status="2xx") == 1
    assert delta(before, after, requests, route="api:seller-detail", method="GET", status="4xx") == 1
    latency = "exchange_http_request_duration_seconds_count"
    assert delta(before, after, latency, route="api:lookups", method="POST") == 1
    assert delta(before, after, latency, route="api:submissions", method="POST") == 4
    assert (
        delta(before, after, "exchange_http_request_duration_seconds_sum", route="api:lookups", method="POST")
        > 0
    )

    assert delta(before, after, "exchange_ingest_batches_total") == 2
    assert delta(before, after, "exchange_ingest_sellers_total") == 2
    assert delta(before, after, "exchange_ingest_indicators_total") == 3
    assert delta(before, after, "exchange_ingest_batches_refused_total", reason="invalid") == 2

    assert delta(before, after, "exchange_lookups_total") == 1
    assert delta(before, after, "exchange_lookup_indicators_total") == 2
    assert delta(before, after, "exchange_lookup_matches_total") == 1

    recluster = "exchange_recluster_duration_seconds_count"
    assert delta(before, after, recluster, mode="incremental") == 2  # one per accepted submission (sync mode)
    assert delta(before, after, recluster, mode="full") == 1
    assert delta(before, after, "exchange_recluster_cluster_events_total", kind="created") == 1
    assert value(after, "exchange_clusters") == 1
    assert value(after, "exchange_clusters_cross_platform") == 1

    for status_name, rows in {"pending": 2, "sending": 0, "sent": 0, "failed": 1}.items():
        assert value(after, "exchange_outbox_deliveries", status=status_name) == rows
    assert value(after, "exchange_outbox_retrying") == 1
    assert 590 < value(after, "exchange_outbox_oldest_due_seconds") < 3600


@pytest.mark.django_db
def test_a_replayed_submission_is_not_counted_twice(token, acme):
    before = scrape()
    body = seller("a1", ("email", "x@x.com"))
    assert submit(acme.client(), body, key="batch-1").status_code == 201
    assert submit(acme.client(), body, key="batch-1").status_code == 201  # a retry of the same batch
    assert submit(acme.client(), seller("a9", ("email", "z@z.com")), key="batch-1").status_code == 409
    after = scrape()
    assert delta(before, after, "exchange_ingest_batches_total") == 1
    assert delta(before, after, "exchange_ingest_sellers_total") == 1
    assert delta(before, after, "exchange_ingest_batches_refused_total", reason="idempotency_conflict") == 1


@pytest.mark.django_db
def test_probes_and_scrapes_are_not_counted_and_unknown_paths_have_one_label(token):
    before = scrape()
    client = Client()
    client.get("/healthz")
    client.get("/sellers/acme-canary-ref/")  # unmatched: the raw path never becomes a label
    client.generic("CANARYVERB", "/api/v1/me/")  # any method a client invents is "other"
    after = scrape()
    assert (
        delta(before, after, "exchange_http_requests_total", route="unmatched", method="GET", status="4xx")
        == 1
    )
    assert (
        delta(before, after, "exchange_http_requests_total", route="api:me", method="other", status="4xx")
        == 1
    )
    routes = {
        dict(labels).get("route", "") for name, labels in after if name == "exchange_http_requests_total"
    }
    assert "unmatched" in routes and "" not in routes
    assert all(route in {"unmatched", "admin", "other"} or route.startswith("api:") for route in routes)
    body = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert "canary" not in body.lower() and "healthz" not in body and "CANARYVERB" not in body


# ------------------------------------------------------------------------------------------------ privacy


@pytest.mark.django_db
def test_the_metrics_carry_no_identifier_hash_token_seller_ref_or_key_secret(token, acme, bazaar):
    """The log canary flow (tests/system/test_reliability_logs.py) plus hostile paths, methods and headers:
    no raw value, transport hash, keyed token, seller ref, key secret or digest reaches the body."""
    from tests.system.test_reliability_logs import RAW, run_full_flow

    run_full_flow(acme, bazaar)
    client = acme.client()
    client.get("/api/v1/sellers/acme-canary/", HTTP_X_REQUEST_ID=RAW["email"])
    client.get(f"/api/v1/sellers/{RAW['email']}/")
    client.get(f"/{th('email', RAW['email'])}")
    client.generic(RAW["phone"].replace(" ", ""), "/api/v1/lookups/")
    submit(client, seller("acme-canary-2", ("email", RAW["email"])), key=RAW["bank_account"])

    body = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert "exchange_lookup_matches_total" in body  # the flow was counted
    canaries = {f"raw {kind}": value for kind, value in RAW.items()}
    canaries |= {f"transport hash {kind}": th(kind, value) for kind, value in RAW.items()}
    canaries |= {f"token {kind}": token for kind, token in Indicator.objects.values_list("kind", "token")}
    canaries |= {"seller ref": "acme-canary", "other seller ref": "baz-canary", "digest": acme.key.digest}
    canaries |= {"metrics token": TOKEN, "phone digits": RAW["phone"].replace(" ", "")}
    for platform in (acme, bazaar):
        canaries[f"{platform.platform.slug} key"] = platform.secret
        canaries[f"{platform.platform.slug} key secret part"] = platform.secret.split("_", 2)[2]
        canaries[f"{platform.platform.slug} key prefix"] = platform.key.prefix
    leaks = {name for name, canary in canaries.items() if canary in body}
    assert not leaks, f"identifiers in /metrics: {sorted(leaks)}"


# ------------------------------------------------------------------------------------------------ gunicorn


def _get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def _worker_files(directory: Path) -> set[str]:
    return {path.stem.rpartition("_")[2] for path in directory.glob("counter_*.db")}


def test_one_scrape_counts_the_requests_of_every_gunicorn_worker(tmp_path):
    """Two sync workers: one is held on a half-sent request while the other answers five, then the first
    answers its one. A scrape (whichever worker serves it) counts all six: the workers' counts are summed."""
    from tests.system.test_gunicorn_config import base_env, free_port, gunicorn, wait_healthy

    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    env = base_env(tmp_path, port) | {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": TOKEN,
    }
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999999.db").write_bytes(
        b""
    )  # a stale file of an earlier run: removed at start
    process = subprocess.Popen(
        gunicorn(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(port, process)
        deadline = time.monotonic() + 60
        while len(_worker_files(metrics_dir)) < 2:  # both workers loaded the app (their counter files exist)
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.2)
        assert "999999999" not in _worker_files(metrics_dir)

        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            held.sendall(b"GET /api/v1/me/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line comes later
            time.sleep(0.5)  # one worker has accepted it and waits for the rest of the request
            for _ in range(5):
                assert _get(f"{base}/api/v1/me/")[0] == 401  # all answered by the other worker
            held.sendall(b"Connection: close\r\n\r\n")
            assert held.recv(64).startswith(b"HTTP/1.1 401")
        finally:
            held.close()

        assert _get(f"{base}/metrics")[0] == 401
        status, body = _get(f"{base}/metrics", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        samples = parse(body.decode())
        assert value(samples, "exchange_http_requests_total", route="api:me", method="GET", status="4xx") == 6
        assert (
            value(samples, "exchange_http_request_duration_seconds_count", route="api:me", method="GET") == 6
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
