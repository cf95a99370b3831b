"""Prometheus metrics (issue 20, "Observability"), served at `/metrics` by exchange/probes.py.

Privacy: no label and no value ever carries an identifier. Labels come from closed sets written here or in
the code (the URL pattern's route name such as `api:lookups`, never the raw path, which holds seller refs;
an HTTP method from a fixed list; a status class; a refusal reason; a task name; a recluster mode). Values
are counts and durations.

Several processes (gunicorn workers, the Procrastinate worker) count into one scrape through
prometheus_client's multiprocess mode: with `PROMETHEUS_MULTIPROC_DIR` set, every process writes its values
to files there and the scrape sums them (gunicorn_config.py marks exited workers dead). Without it (tests,
`runserver`) the process's own registry is served.

Facts that live in the database (outbox depth, cluster counts) are not pushed by whichever process changed
them: a collector reads them at scrape time (`register_scrape_collector`, filled in by graph/metrics.py), so
they are right whichever process or machine did the work.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger("exchange.metrics")

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
if MULTIPROC_DIR:  # every process writes its files there before it counts anything
    Path(MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# ------------------------------------------------------------------------------------------------ requests

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "exchange_http_requests",
    "HTTP requests answered, by API operation (URL pattern name), method and status class.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "exchange_http_request_duration_seconds",
    "Time to answer an HTTP request, by API operation (URL pattern name) and method.",
    ["route", "method"],
)


def route_of(request: HttpRequest) -> str:
    """The request's operation as a closed label: the API's URL pattern names (`api:lookups`), `admin` for
    the whole admin, `other` for any other named route, `unmatched` when no pattern matched (a 404, or a
    redirect or host refusal before URL resolution). Never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    name = match.view_name or ""
    if name.startswith("api:"):
        return name
    if "admin" in match.namespaces:
        return "admin"
    return "other"


def method_of(request: HttpRequest) -> str:
    method = (request.method or "").upper()
    return method if method in METHODS else "other"  # a client may send any token as its method


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


# ------------------------------------------------------------------------------------------------ ingest

SELLERS_ACCEPTED = Counter("exchange_ingest_sellers", "Sellers accepted in submitted batches.")
INDICATORS_ACCEPTED = Counter("exchange_ingest_indicators", "Indicators accepted in submitted batches.")
BATCHES_ACCEPTED = Counter("exchange_ingest_batches", "Submitted batches accepted (replays not counted).")
BATCHES_REFUSED = Counter(
    "exchange_ingest_batches_refused", "Submitted batches refused, by reason.", ["reason"]
)
# A submission's refusals by status: the batch never reaches storage (nothing is stored).
REFUSAL_REASONS = {400: "invalid", 409: "idempotency_conflict", 413: "too_large"}


def submission_accepted(sellers: int, indicators: int) -> None:
    """exchange/ingest.py: a batch was stored (not a replay of an earlier one)."""
    BATCHES_ACCEPTED.inc()
    SELLERS_ACCEPTED.inc(sellers)
    INDICATORS_ACCEPTED.inc(indicators)


# ------------------------------------------------------------------------------------------------ lookups

LOOKUPS = Counter("exchange_lookups", "Lookup requests answered.")
LOOKUP_INDICATORS = Counter("exchange_lookup_indicators", "Indicators looked up.")
LOOKUP_MATCHES = Counter(
    "exchange_lookup_matches", "Indicators looked up that another platform's live seller holds."
)


def lookup_answered(indicators: int, matches: int) -> None:
    """exchange/lookups.py: one lookup answered."""
    LOOKUPS.inc()
    LOOKUP_INDICATORS.inc(indicators)
    LOOKUP_MATCHES.inc(matches)


# ------------------------------------------------------------------------------------------------ replica

REPLICA_FALLBACKS = Counter(
    "exchange_replica_fallbacks",
    "Lookups and partner reads answered from the primary because the replica failed or was marked failed.",
)


def replica_fell_back() -> None:
    """exchange/routers.py: one read meant for the replica ran on the primary."""
    REPLICA_FALLBACKS.inc()


# ------------------------------------------------------------------------------------------------ middleware


class RequestMetricsMiddleware:
    """Counts and times every request that reaches Django's stack (placed after the probe middleware, so
    probes and scrapes are not counted)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        route, method = route_of(request), method_of(request)
        REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
        REQUESTS.labels(route, method, status_class(response.status_code)).inc()
        if route == "api:submissions" and response.status_code in REFUSAL_REASONS:
            BATCHES_REFUSED.labels(REFUSAL_REASONS[response.status_code]).inc()
        return response


# ------------------------------------------------------------------------------------------------ scrape

_scrape_collectors: list[Collector] = []


def register_scrape_collector(collector: Collector) -> None:
    """Add a collector run at every scrape (an app above exchange reads its tables: graph/metrics.py)."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def scrape() -> bytes:
    """The exposition text: every process's counters (multiprocess mode) or this one's, plus the scrape-time
    collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_DIR:
        MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry.register(REGISTRY)  # a registry collects like a collector: this process's metrics
    for collector in _scrape_collectors:
        registry.register(collector)
    return generate_latest(registry)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def authorised(request: HttpRequest) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>`, compared in constant time (of equal-length digests, so
    neither the token's length nor a prefix leaks)."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(_digest(presented.strip()), _digest(settings.METRICS_TOKEN))


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Called by exchange/probes.py only when METRICS_TOKEN is set. A missing or wrong token: 401 (the scraper's
    error then says "unauthorised", not "not found"); nothing about the metrics is in the answer."""
    if not authorised(request):
        response = HttpResponse(b"unauthorised\n", status=401, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in {"GET", "HEAD"}:
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
