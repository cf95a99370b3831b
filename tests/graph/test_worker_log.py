"""Issue 19, item 12: the worker logs how many ids a job carries, never the ids (3,000-character lines)."""

import logging

import pytest
from django.db import connection
from procrastinate.jobs import Job
from procrastinate.types import JSONValue

from graph.joblog import JobArgumentsAsCounts, summarise
from tests.builders import seller, submit

SELLER_IDS = list(range(1_000_001, 1_003_001))  # 3,000 ids
LISTED = ", ".join(map(str, SELLER_IDS[:5]))  # how a list of them starts in a line


def console() -> logging.Handler:
    return next(h for h in logging.getLogger().handlers if h.name == "console")


def recompute_job(job_id: int = 7) -> Job:
    return Job(
        id=job_id,
        queue="clusters",
        lock="recompute",
        queueing_lock=None,
        task_name="graph.tasks.recompute_clusters",
        task_kwargs={"seller_ids": list[JSONValue](SELLER_IDS), "indicator_ids": [5, 6]},
    )


def test_the_console_handler_summarises_procrastinates_job_arguments():
    assert any(isinstance(f, JobArgumentsAsCounts) for f in console().filters)


def test_a_workers_line_about_a_job_names_counts_not_ids(caplog):
    caplog.set_level(logging.INFO)
    job = recompute_job()
    # As Procrastinate's worker logs a job it starts (under `procrastinate.worker.<worker name>`).
    logging.getLogger("procrastinate.worker.worker").info(
        f"Starting job {job.call_string}", extra={"action": "start_job", "job": job.log_context()}
    )
    assert LISTED in job.call_string  # the record as Procrastinate makes it
    [record] = [r for r in caplog.records if r.name.startswith("procrastinate")]
    line = console().format(record)
    assert LISTED not in caplog.text and LISTED not in line
    assert "recompute_clusters[7](seller_ids=<3000 ids>, indicator_ids=<2 ids>)" in line
    assert len(line) < 300
    job_extra = record.job
    assert job_extra["task_kwargs"] == {"seller_ids": "<3000 ids>", "indicator_ids": "<2 ids>"}
    assert LISTED not in job_extra["call_string"]


def test_other_loggers_and_other_values_are_left_alone(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("exchange.graph").info("event=x ids=%s", "[1, 2, 3]")
    assert "[1, 2, 3]" in caplog.text
    text = "Job x[3](timestamp=1700000000, ids=[4, 5], none=[], names=['a']) - Result: [1]"
    assert summarise(text) == (
        "Job x[3](timestamp=1700000000, ids=<2 ids>, none=<0 ids>, names=['a']) - Result: [1]"
    )


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_run_logs_no_id_list(acme, caplog, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the Procrastinate worker needs PostgreSQL")
    from procrastinate.contrib.django import app

    from graph.tasks import recompute_clusters

    settings.EXCHANGE_TASK_MODE = "worker"
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")
        (before,) = cursor.fetchone()
    try:
        submit(acme.client(), seller("a1", ("email", "x@x.com")))
        recompute_clusters.defer(seller_ids=SELLER_IDS, indicator_ids=[])
        caplog.set_level(logging.DEBUG)
        worker_connector = app.connector.get_worker_connector()  # type: ignore[attr-defined]
        with app.replace_connector(worker_connector) as worker_app:
            worker_app.run_worker(
                wait=False, install_signal_handlers=False, listen_notify=False, queues=["clusters"]
            )
    finally:
        # The job tables are Procrastinate's (unmanaged): the test database flush leaves them, so a later
        # test counting jobs would see these.
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_jobs WHERE id > %s", [before])
    lines = [console().format(r) for r in caplog.records]
    started = [line for line in lines if "Starting job" in line and "seller_ids=<3000 ids>" in line]
    assert started, lines
    assert not [line for line in lines if LISTED in line]
    assert any("task=recompute_clusters sellers=3000 indicators=0" in line for line in lines)
