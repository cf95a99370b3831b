"""The exchange's advisory locks: transaction-scoped PostgreSQL locks that serialise writers across processes
(SQLite serialises every writer itself, so they do nothing there). Each key is named once, here.

- `RECOMPUTATION`: one recomputation of the clusters writes at a time (`graph.clustering`), and the retention
  purge waits for it. Cluster memberships refer to sellers without a database foreign key (`graph.models`), so
  no seller may be deleted while a recomputation that read it is writing.
- `GROUPING`: one submission or threshold change groups similarity items at a time (`exchange.similarity`,
  `graph.tuning`).
"""

from __future__ import annotations

from django.db import connection

RECOMPUTATION = 0x6578_6368
GROUPING = 0x1A6E_9809


def hold(key: int) -> None:
    """Take the lock `key` until the current transaction ends (call inside one; waits while another holds it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
