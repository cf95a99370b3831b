"""Background tasks (Procrastinate, PostgreSQL-backed). Run a worker with
`python manage.py procrastinate worker` (see README: Running in production).

Only imported when EXCHANGE_TASK_MODE=worker, i.e. on PostgreSQL.
"""

from __future__ import annotations

import logging

from procrastinate.contrib.django import app

logger = logging.getLogger("exchange.graph")


@app.task(queue="clusters", lock="recompute", pass_context=False)
def recompute_clusters(seller_ids: list[int], indicator_ids: list[int]) -> None:
    from graph.clustering import recluster_incremental

    summary = recluster_incremental(seller_ids, indicator_ids)
    # Counts, never the ids themselves (Procrastinate's own lines are summarised too: graph/joblog.py).
    logger.info(
        "event=task_done task=recompute_clusters sellers=%d indicators=%d summary=%r",
        len(seller_ids),
        len(indicator_ids),
        str(summary),
    )


@app.periodic(cron="17 * * * *")
@app.task(queue="clusters", lock="recompute", pass_context=False)
def refresh_expired_and_purge(timestamp: int) -> None:
    """Hourly: re-cluster around reports that expired by the clock, then purge past the grace period."""
    from exchange.retention import purge
    from graph.clustering import refresh_expired

    refresh_expired()
    purge()


@app.periodic(cron="*/10 * * * *")
@app.task(queue="reports", pass_context=False)
def send_due_reports(timestamp: int) -> None:
    """Every 10 minutes: queue the reports that are due and send the outbox (safe alongside the command)."""
    from graph.reports import run_reports

    summary = run_reports()
    logger.info("event=task_done task=send_due_reports summary=%r", str(summary))


@app.periodic(cron="* * * * *")
@app.task(queue="reports", queueing_lock="send_due_webhooks", pass_context=False)
def send_due_webhooks(timestamp: int) -> None:
    """Every minute: send the webhook events that are due (safe alongside `manage.py send_webhooks`)."""
    from graph.webhooks import send_due_webhooks as send

    summary = send()
    logger.info(
        "event=task_done task=send_due_webhooks sent=%d retried=%d failed=%d",
        summary.sent,
        summary.retried,
        summary.failed,
    )


@app.periodic(cron="*/5 * * * *")
@app.task(queue="clusters", queueing_lock="retry_stalled_jobs", pass_context=False)
async def retry_stalled_jobs(timestamp: int) -> None:
    """Every 5 minutes: re-queue jobs whose worker died (no heartbeat for 5 minutes). Procrastinate does not
    retry them by itself, and a dead job holding the "recompute" lock would otherwise stall every later one.
    Recomputation is idempotent, so running a job again is safe."""
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=300):
        logger.warning("event=stalled_job_retried job_id=%s task=%s", job.id, job.task_name)
        await app.job_manager.retry_job(job)
