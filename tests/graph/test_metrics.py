"""graph/metrics.py: recluster timing, the scrape-time database facts, and the Procrastinate worker's job
latency and duration (a worker middleware)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from graph import metrics
from tests.builders import seller, submit
from tests.exchange.test_metrics import delta, scrape, value
from tests.exchange.test_metrics import token as token  # the fixture

TASK = "graph.tasks.recompute_clusters"


@pytest.mark.django_db
def test_a_recluster_with_nothing_to_do_is_not_observed(token):
    from graph.clustering import recluster_incremental

    before = scrape()
    recluster_incremental([], [])
    assert delta(before, scrape(), "exchange_recluster_duration_seconds_count", mode="incremental") == 0


@pytest.mark.django_db
def test_a_database_that_does_not_answer_leaves_its_facts_out_not_the_scrape(token, monkeypatch):
    def down(self: Any) -> Any:
        raise DatabaseError("connection refused")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics.DatabaseFacts, "_families", down)
    samples = scrape()
    assert value(samples, "exchange_metrics_database_up") == 0
    assert not any(name.startswith("exchange_outbox") for name, _ in samples)
    assert ("exchange_lookups_total", frozenset()) in samples  # the rest of the scrape is there


def test_the_worker_middleware_is_installed_once():
    app = SimpleNamespace(worker_defaults={})
    metrics.instrument_worker(app)  # type: ignore[arg-type]
    metrics.instrument_worker(app)  # type: ignore[arg-type]
    assert app.worker_defaults["worker_middleware"] == [metrics.job_metrics]


class FailingConnector:
    async def execute_query_one_async(self, query: str, **arguments: Any) -> dict[str, Any]:
        raise DatabaseError("gone")


def test_a_failing_job_is_timed_as_failed_and_an_unreadable_queue_time_is_skipped():
    job = SimpleNamespace(id=1, task_name=TASK, scheduled_at=None)
    context = SimpleNamespace(
        job=job,
        app=SimpleNamespace(connector=FailingConnector(), tasks={TASK: None}),
        start_timestamp=time.time(),
    )
    queued = metrics.JOB_QUEUE_SECONDS.labels(TASK)
    failed = metrics.JOB_SECONDS.labels(TASK, "failed")
    queue_before, failed_before = _count(queued), _count(failed)

    async def boom() -> None:
        raise RuntimeError("the task failed")

    with pytest.raises(RuntimeError):
        asyncio.run(metrics.job_metrics(boom, context, None))  # type: ignore[arg-type]
    assert _count(failed) == failed_before + 1
    assert _count(queued) == queue_before  # the queue time could not be read: not invented


def test_an_unknown_task_name_is_not_a_label():
    job = SimpleNamespace(
        id=1, task_name="injected.task.name", scheduled_at=timezone.now() - timedelta(seconds=3)
    )
    context = SimpleNamespace(
        job=job, app=SimpleNamespace(connector=FailingConnector(), tasks={}), start_timestamp=time.time()
    )

    async def fine() -> str:
        return "done"

    before = _count(metrics.JOB_SECONDS.labels("unknown", "succeeded"))
    assert asyncio.run(metrics.job_metrics(fine, context, None)) == "done"  # type: ignore[arg-type]
    assert _count(metrics.JOB_SECONDS.labels("unknown", "succeeded")) == before + 1
    assert _count(metrics.JOB_QUEUE_SECONDS.labels("unknown")) >= 1  # from its scheduled time


def _count(histogram: Any) -> float:
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))


@pytest.mark.django_db(transaction=True)
def test_the_worker_records_each_jobs_queue_time_and_duration(acme, bazaar, settings, token):
    if connection.vendor != "postgresql":
        pytest.skip("the Procrastinate worker needs PostgreSQL")
    from procrastinate.contrib.django import app

    settings.EXCHANGE_TASK_MODE = "worker"
    before = scrape()
    submit(acme.client(), seller("a1", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")))
    time.sleep(0.3)  # the jobs wait in the queue at least this long
    assert metrics.job_metrics in app.worker_defaults["worker_middleware"]
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:  # type: ignore[attr-defined]
        worker_app.run_worker(
            wait=False, install_signal_handlers=False, listen_notify=False, queues=["clusters"]
        )
    after = scrape(Client())
    assert delta(before, after, "exchange_worker_job_queue_seconds_count", task=TASK) == 2
    assert delta(before, after, "exchange_worker_job_queue_seconds_sum", task=TASK) >= 0.6
    assert (
        delta(before, after, "exchange_worker_job_duration_seconds_count", task=TASK, outcome="succeeded")
        == 2
    )
    assert delta(before, after, "exchange_recluster_duration_seconds_count", mode="incremental") == 2
    assert value(after, "exchange_clusters_cross_platform") == 1
