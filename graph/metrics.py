"""graph's Prometheus metrics (exchange/metrics.py serves them; the apps are layered graph -> exchange, so
what reads graph's tables or times graph's work lives here).

- Recluster duration by mode (`recluster_full`, `recluster_incremental`: `observed_recluster`) and the
  cluster events it recorded, by kind.
- At scrape time, from the database (right whichever process or machine did the work): live and
  cross-platform clusters, the report outbox by status, how many of its pending rows already failed once
  and wait for a retry, and how overdue the oldest due row is.
- The Procrastinate worker's jobs (`instrument_worker`, a worker middleware): time from the moment a job
  could run (deferred, or its scheduled time, or its retry) to its start, and its duration, by task.

No label or value names a cluster, a seller, a recipient or a job's arguments.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from procrastinate import App, JobContext

    from graph.clustering import ReclusterSummary

logger = logging.getLogger("exchange.metrics")

LONG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

RECLUSTER_SECONDS = Histogram(
    "exchange_recluster_duration_seconds",
    "Time to recompute clusters, by mode (full or incremental).",
    ["mode"],
    buckets=LONG_BUCKETS,
)
RECLUSTER_EVENTS = Counter(
    "exchange_recluster_cluster_events", "Cluster events recorded by reclustering, by kind.", ["kind"]
)
JOB_QUEUE_SECONDS = Histogram(
    "exchange_worker_job_queue_seconds",
    "Time from when a background job could run (deferred, scheduled or retried) to its start, by task.",
    ["task"],
    buckets=LONG_BUCKETS,
)
JOB_SECONDS = Histogram(
    "exchange_worker_job_duration_seconds",
    "Time a background job ran, by task and outcome (succeeded or failed).",
    ["task", "outcome"],
    buckets=LONG_BUCKETS,
)


def observed_recluster[**P](run: Callable[P, ReclusterSummary]) -> Callable[P, ReclusterSummary]:
    """Time a recluster function and count its events (graph/clustering.py decorates both entry points). A
    call that had nothing to do (no seller, no indicator) is not a recluster and is not observed."""

    @functools.wraps(run)
    def observed(*args: P.args, **kwargs: P.kwargs) -> ReclusterSummary:
        started = time.perf_counter()
        summary = run(*args, **kwargs)
        if summary.seconds:
            RECLUSTER_SECONDS.labels(summary.mode).observe(time.perf_counter() - started)
            for kind, count in summary.events.items():
                RECLUSTER_EVENTS.labels(kind).inc(count)
        return summary

    return observed


# ------------------------------------------------------------------------------------------------ scrape time


class DatabaseFacts(Collector):
    """Cluster counts and the outbox, read at scrape time. A database that does not answer leaves these out
    and says so (`exchange_metrics_database_up 0`) instead of failing the whole scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("exchange_metrics_database_up", "1 if the scrape could read the database.")
        try:
            families = list(self._families())
        except DatabaseError:
            logger.warning("event=metrics_database_unreachable")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        from graph.models import ActorCluster, DeliveryStatus, ReportDelivery

        counts = ActorCluster.objects.live().aggregate(
            live=Count("id"), cross=Count("id", filter=Q(cross_platform=True))
        )
        clusters = GaugeMetricFamily("exchange_clusters", "Live actor clusters.")
        clusters.add_metric([], counts["live"])
        yield clusters
        cross = GaugeMetricFamily("exchange_clusters_cross_platform", "Live clusters spanning 2+ platforms.")
        cross.add_metric([], counts["cross"])
        yield cross

        by_status = dict(
            ReportDelivery.objects.order_by()
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        depth = GaugeMetricFamily(
            "exchange_outbox_deliveries", "Report outbox rows, by status.", labels=["status"]
        )
        for status in DeliveryStatus.values:
            depth.add_metric([status], by_status.get(status, 0))
        yield depth

        now = timezone.now()
        pending = ReportDelivery.objects.order_by().filter(status=DeliveryStatus.PENDING)
        facts = pending.aggregate(
            retrying=Count("id", filter=Q(attempts__gt=0)),
            oldest_due=Min("next_attempt_at", filter=Q(next_attempt_at__lte=now)),
        )
        retrying = GaugeMetricFamily(
            "exchange_outbox_retrying", "Pending outbox rows whose send already failed at least once."
        )
        retrying.add_metric([], facts["retrying"])
        yield retrying
        overdue = GaugeMetricFamily(
            "exchange_outbox_oldest_due_seconds", "How long the oldest due pending outbox row has waited."
        )
        oldest: datetime | None = facts["oldest_due"]
        overdue.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield overdue


DATABASE_FACTS = DatabaseFacts()


# ------------------------------------------------------------------------------------------------ worker

READY_SINCE_SQL = """
    SELECT max(at) AS at FROM procrastinate_events
     WHERE job_id = %(job_id)s AND type IN ('deferred', 'deferred_for_retry', 'retried')
"""


async def _ready_since(context: JobContext, task: str) -> float | None:
    """When the job could first run this time: its latest deferral (or retry), or its scheduled time if
    later. Procrastinate's Job carries only `scheduled_at`; the deferral time is in its events table."""
    job = context.job
    deferred = None
    try:
        row = await context.app.connector.execute_query_one_async(READY_SINCE_SQL, job_id=job.id)
        deferred = row.get("at") if row else None
    except Exception:  # a metric never fails a job: the scheduled time alone, if there is one
        logger.warning("event=job_queue_time_unreadable task=%s", task)
    moments = [moment.timestamp() for moment in (deferred, job.scheduled_at) if moment is not None]
    return max(moments) if moments else None


async def job_metrics(call_next: Callable[[], Awaitable[Any]], context: JobContext, worker: Any) -> Any:
    """A Procrastinate worker middleware (it wraps every job, sync or async, on the worker's event loop)."""
    task = context.job.task_name if context.job.task_name in context.app.tasks else "unknown"
    ready = await _ready_since(context, task)
    if ready is not None:
        JOB_QUEUE_SECONDS.labels(task).observe(max(0.0, context.start_timestamp - ready))
    outcome = "failed"
    try:
        result = await call_next()
        outcome = "succeeded"
        return result
    finally:
        JOB_SECONDS.labels(task, outcome).observe(max(0.0, time.time() - context.start_timestamp))


def instrument_worker(app: App) -> None:
    """PROCRASTINATE_ON_APP_READY (exchange/settings.py): every worker this app runs wraps its jobs."""
    middleware = app.worker_defaults.setdefault("worker_middleware", [])
    if job_metrics not in middleware:
        middleware.append(job_metrics)
