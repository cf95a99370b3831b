"""What the worker's log says of a job's arguments: how many values a list holds, never the values.

Procrastinate writes a job's whole call into its lines ("Starting job
graph.tasks.recompute_clusters[7](seller_ids=[1, 2, ...], indicator_ids=[...])") and into the records'
`job`/`jobs` extras. A recompute job carries every seller and indicator id of a submission: lines of
thousands of characters, listing sellers. `JobArgumentsAsCounts` is a filter on the console handler
(settings.LOGGING; a handler filter, as the worker logs under `procrastinate.worker.<its name>`, which a
filter on one logger would miss): in records of Procrastinate's loggers it rewrites each argument that is a
list of numbers to `<N ids>`. Imports nothing of Django: the logging configuration loads it before the apps.
"""

from __future__ import annotations

import logging
import re
from typing import Any

LOGGER = "procrastinate"
# An argument's value that is a list of integers, as the call string writes it: "=[]", "=[3]", "=[1, 2, 3]"
# (not the job id in "task[7](...)").
_ID_LIST = re.compile(r"(?<==)\[(?:-?\d+(?:, -?\d+)*)?\]")


def _count(match: re.Match[str]) -> str:
    inner = match.group(0)[1:-1]
    return f"<{inner.count(',') + 1 if inner else 0} ids>"


def summarise(text: str) -> str:
    """`text` with every argument that is a list of integers replaced by its length."""
    return _ID_LIST.sub(_count, text)


def _summarise_job(job: Any) -> Any:
    if not isinstance(job, dict):
        return job
    job = dict(job)
    kwargs = job.get("task_kwargs")
    if isinstance(kwargs, dict):
        job["task_kwargs"] = {
            key: f"<{len(value)} ids>" if isinstance(value, list) else value for key, value in kwargs.items()
        }
    if isinstance(job.get("call_string"), str):
        job["call_string"] = summarise(job["call_string"])
    return job


class JobArgumentsAsCounts(logging.Filter):
    """Rewrites Procrastinate's records so that no job argument list appears in them (see the module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != LOGGER and not record.name.startswith(LOGGER + "."):
            return True
        if isinstance(record.msg, str):
            record.msg = summarise(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(summarise(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: summarise(a) if isinstance(a, str) else a for k, a in record.args.items()}
        if hasattr(record, "job"):
            record.job = _summarise_job(record.job)
        jobs = getattr(record, "jobs", None)
        if isinstance(jobs, list):
            record.jobs = [_summarise_job(job) for job in jobs]
        return True
