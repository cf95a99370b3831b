"""When data changes, recompute the affected clusters: in the background worker (PostgreSQL) or inline.

With EXCHANGE_TASK_MODE=worker (the default on PostgreSQL) the job is enqueued with Procrastinate in the
*same transaction* as the change, so an accepted submission can never lose its recomputation, and a rolled
back one enqueues nothing. With EXCHANGE_TASK_MODE=sync (the default on SQLite, the embedded demo) the
recomputation runs inline at the end of the change's own transaction: SQLite has one writer anyway, and the
change and its clusters then commit (or roll back) together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings

logger = logging.getLogger("exchange.graph")


def schedule_recompute(sellers: Iterable[int] = (), indicators: Iterable[int] = ()) -> None:
    seller_ids, indicator_ids = sorted(set(sellers)), sorted(set(indicators))
    if not seller_ids and not indicator_ids:
        return
    if settings.EXCHANGE_TASK_MODE == "worker":
        from graph.tasks import recompute_clusters

        recompute_clusters.defer(seller_ids=seller_ids, indicator_ids=indicator_ids)
        return

    from graph.clustering import recluster_incremental

    recluster_incremental(seller_ids, indicator_ids)
