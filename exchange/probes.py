"""Health probes, answered before host validation and the HTTPS redirect.

A load balancer's or an orchestrator's probe talks plain HTTP inside the network, to the container's own
address: in production settings Django would answer it 301 (SECURE_SSL_REDIRECT) or 400 (the Host header is
not in ALLOWED_HOSTS). The probes carry no data and need no authentication, so this middleware answers them
first, whatever the scheme and Host; every other path still goes through SecurityMiddleware and host
validation.

- `/healthz`: the process is up (liveness). Touches nothing.
- `/readyz`: this process can serve (readiness): the database answers, every migration is applied, and, in
  worker mode, a Procrastinate worker sent a heartbeat within `READY_WORKER_SECONDS` (recomputation and reports
  would otherwise queue up unseen). 503 with the names of what fails, never any data.
- `/metrics`: Prometheus metrics (exchange/metrics.py), only when `METRICS_TOKEN` is set, and only to a client
  sending `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise). Unset, the path is not served at all: it
  goes through the stack like any unknown path (404, or the redirect and host validation before that).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils import timezone

from exchange import metrics

# Procrastinate workers beat every 10 s by default and count as stalled after 30 s.
READY_WORKER_SECONDS = 60

_migrations_applied = False  # once true, stays true for this process: new migrations come with new code


def database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        return False


def migrations_applied() -> bool:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connection)
        _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrations_applied


def worker_alive() -> bool:
    if settings.EXCHANGE_TASK_MODE != "worker":
        return True  # sync mode: recomputation runs inline, there is no worker to wait for
    since = timezone.now() - timedelta(seconds=READY_WORKER_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_workers WHERE last_heartbeat >= %s)", [since]
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def readiness() -> list[str]:
    """What keeps this process from serving: [] when ready."""
    if not database_answers():
        return ["database"]
    failing = []
    try:
        if not migrations_applied():
            failing.append("migrations")
        if not worker_alive():
            failing.append("worker")
    except DatabaseError:
        return ["database"]
    return failing


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    failing = readiness()
    if failing:
        return JsonResponse({"status": "not ready", "failing": failing}, status=503)
    return JsonResponse({"status": "ready"})


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}
METRICS_PATH = "/metrics"


class ProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == METRICS_PATH and settings.METRICS_TOKEN:
            return metrics.metrics_view(request)
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in {"GET", "HEAD"}:
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)
