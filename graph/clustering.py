"""Recomputing actor clusters from the database and persisting them (the Django side of `graph.linking`).

- `recluster_full()` reads every linkable sighting of a shared indicator, links, and replaces all clusters.
- `recluster_incremental(sellers, indicators)` loads only the neighbourhood of what changed (by a breadth-first
  walk in the database through indicators that link or may start/stop linking), relinks it with
  `graph.linking.relink_columns`, and replaces only the clusters it retires. Same result as a full run.
- Both create, update and close `PendingMerge` rows for the merges the linking core holds (one platform's
  fresh sellers alone joining other platforms' clusters) in the same transaction.

Both run in one transaction under a lock (a PostgreSQL advisory lock; SQLite serialises writers), so only one
recomputation writes at a time and a crash mid-way leaves the previous clusters intact. Stable identity and
events come from `graph.identity.assign_identities`; the former memberships it may restore (`FormerMember`)
are read and written here, in the same transaction.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from exchange import locks
from exchange.models import LINKABLE_SQL, Indicator, Linking, Seller, Sighting
from graph import linking, webhooks
from graph.evidence import link_summaries
from graph.identity import ClusterChange, assign_identities
from graph.metrics import observed_recluster
from graph.models import (
    CORROBORATING,
    STANDING,
    ActorCluster,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    FormerMember,
    MergeState,
    Opinion,
    OpinionKind,
    PendingMerge,
    PendingMergeSeller,
    new_refs,
)
from graph.risk import epoch_microseconds, risk_scores

logger = logging.getLogger("exchange.graph")

KINDS = linking.KINDS
STATUS_ORDER = [
    ClusterStatus.NEW,
    ClusterStatus.DISMISSED,
    ClusterStatus.INVESTIGATING,
    ClusterStatus.CONFIRMED,
]

Progress = Callable[[str], None]


def thresholds() -> dict[str, int]:
    return {**linking.DEFAULT_THRESHOLDS, **getattr(settings, "EXCHANGE_LINK_THRESHOLDS", {})}


def strengths() -> dict[str, str]:
    """Strength per kind: `linking.DEFAULT_STRENGTH` overlaid with `EXCHANGE_LINK_STRENGTHS` (e.g. photos strong
    in a consortium whose photos are all original shots). Linking and every display of a link go through it."""
    return {**linking.DEFAULT_STRENGTH, **getattr(settings, "EXCHANGE_LINK_STRENGTHS", {})}


def hub_rule() -> linking.HubRule:
    """The configured hub rule: linking and every display of an indicator's state go through it."""
    return linking.HubRule(thresholds(), settings.EXCHANGE_HUB_PLATFORM_DIVISOR)


Row = tuple[int, int, int, int]  # (seller, indicator, kind code, platform)


@dataclass
class Columns:
    seller: np.ndarray
    indicator: np.ndarray
    kind: np.ndarray
    platform: np.ndarray
    # Per row, the seller's facts that its cluster's risk needs (`_facts`) and its hold (`_fresh`), when the read
    # brought them along: confirmed 0/1, reported_at and created_at in microseconds since the epoch.
    confirmed: np.ndarray | None = None
    reported: np.ndarray | None = None
    created: np.ndarray | None = None

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> Columns:
        array = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return cls(array[:, 0].copy(), array[:, 1].copy(), array[:, 2].copy(), array[:, 3].copy())

    def __len__(self) -> int:
        return int(self.seller.size)


@dataclass
class ReclusterSummary:
    mode: str
    engine: str = "memory"  # what computed the connected components (`recluster --engine`)
    sightings: int = 0
    sellers_in_scope: int = 0
    clusters: int = 0
    cross_platform: int = 0
    events: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        events = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "none"
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        return (
            f"{self.mode} recluster ({self.engine} engine): {self.sightings} sightings read, {self.clusters} clusters "
            f"({self.cross_platform} cross-platform) in scope; events: {events}; {timing}"
        )


# ------------------------------------------------------------------------------------------------ reading


def _kind_case() -> str:
    return "CASE i.kind " + " ".join(f"WHEN '{k}' THEN {n}" for n, k in enumerate(KINDS)) + " END"


def _read_full(now: datetime, *, seller_facts: bool = False) -> Columns:
    """Linkable sightings of indicators held by >= 2 linkable sellers (singletons never reach Python).
    `seller_facts`: on PostgreSQL also each row's seller's facts (`_SELLER_FACTS`: the full recluster's risk and
    holds then need no second pass over its hundreds of thousands of members)."""
    # Indicator.holders (kept by ingest, indexed where >= 2) finds the few shared indicators without
    # touching the millions of single-holder ones; their sightings are joined with their sellers to drop
    # retracted and expired ones (the linking core drops indicators left with one linkable holder).
    facts = _SELLER_FACTS if seller_facts and connection.vendor == "postgresql" else {}
    extra = "".join(f", {expression.format(alias='sel')} AS {name}" for name, expression in facts.items())
    sql = f"""
        SELECT CAST(s.seller_id AS BIGINT) AS seller, CAST(s.indicator_id AS BIGINT) AS indicator,
               CAST({_kind_case()} AS BIGINT) AS kind, CAST(sel.platform_id AS BIGINT) AS platform{extra}
          FROM exchange_indicator i
          JOIN exchange_sighting s ON s.indicator_id = i.id
          JOIN exchange_seller sel ON sel.id = s.seller_id
         WHERE i.holders >= 2 AND {LINKABLE_SQL.format(alias="sel")}
    """  # noqa: S608 - only constant kind names, column expressions and the linkable rule are interpolated
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, [now])
            return Columns.from_rows(cursor.fetchall())
    # One row of binary bigint[] columns straight into numpy: no Python object per sighting (a binary COPY
    # still cost one Python call per row, a second at 5M sightings).
    names = ["seller", "indicator", "kind", "platform", *facts]
    with transaction.atomic(), _pg_cursor() as pg, _index_joins_only(pg):
        pg.execute(
            f"SELECT {', '.join(f'array_agg({name})' for name in names)} FROM ({sql}) AS shared",  # noqa: S608
            [now],
            binary=True,
        )
        row = pg.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row; NULLs when nothing matched
    arrays = dict(zip(names, (np.zeros(0, dtype=np.int64) if a is None else a for a in row), strict=True))
    return Columns(**arrays)


@contextmanager
def _index_joins_only(cursor: psycopg.Cursor[Any]) -> Iterator[None]:
    """Within the caller's transaction, the statements run meanwhile join by index lookups only (no hash or
    merge join), then the planner's settings are as they were. For the full read: the shared indicators
    (`indicator_shared`), their sightings (`sighting_by_indicator`), their sellers (the primary key), a cost
    that follows the shared sightings rather than all of them, whatever the statistics say (they lag a bulk
    load). Left to its estimates, PostgreSQL hashed the shared indicators and scanned all 5 million sightings
    against them; at 7% shared the two plans measured close (README, "The full read by index")."""
    cursor.execute(
        "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'),"
        " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
    )
    before = cursor.fetchone()
    assert before is not None
    yield  # on an error, the caller's transaction (or savepoint) rolls back and takes the settings with it
    cursor.execute(
        "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true)",
        [before[0], before[1]],
    )


# A seller's facts for its cluster's risk and its hold, as bigints: confirmed 0/1, reported_at and created_at in
# microseconds since the epoch (EXTRACT is exact numeric: compared with `epoch_microseconds` of a cutoff, the
# same as comparing the timestamps).
_SELLER_FACTS = {
    "confirmed": "CAST(CASE WHEN {alias}.status = 'confirmed' THEN 1 ELSE 0 END AS BIGINT)",
    "reported": "CAST(EXTRACT(EPOCH FROM {alias}.reported_at) * 1000000 AS BIGINT)",
    "created": "CAST(EXTRACT(EPOCH FROM {alias}.created_at) * 1000000 AS BIGINT)",
}


class IdArray:
    """Ids bound as one binary PostgreSQL bigint[] (numpy straight to bytes): psycopg dumps a Python list
    element by element, which took seconds for the hundreds of thousands of ids of a full recluster."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray | Iterable[int]) -> None:
        self.values = (
            values.astype(np.int64, copy=False)
            if isinstance(values, np.ndarray)
            else np.fromiter(values, dtype=np.int64)
        )


_INT8_OID, _INT8_ARRAY_OID = 20, 1016
_ARRAY_ITEM = np.dtype(
    [("length", ">i4"), ("value", ">i8")]
)  # each element of a binary int8[]: length, value


class _IdArrayDumper(psycopg.adapt.Dumper):
    format = psycopg.pq.Format.BINARY
    oid = _INT8_ARRAY_OID

    def dump(self, obj: IdArray) -> bytes:
        values = obj.values
        if values.size == 0:  # zero dimensions, no null, element type
            return struct.pack(">iii", 0, 0, _INT8_OID)
        items = np.empty(values.size, dtype=_ARRAY_ITEM)
        items["length"] = 8
        items["value"] = values
        # One dimension, no null, element type; the dimension's length and lower bound (1); then the items.
        return struct.pack(">iiiii", 1, 0, _INT8_OID, values.size, 1) + items.tobytes()


class _IdArrayLoader(psycopg.adapt.Loader):
    """A binary bigint[] without nulls (an `array_agg` column) straight into a numpy array."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: psycopg.abc.Buffer) -> np.ndarray:
        ndim, has_null, _ = struct.unpack_from(">iii", data)
        if ndim == 0:
            return np.zeros(0, dtype=np.int64)
        if ndim != 1 or has_null:
            raise ValueError("expected a one-dimensional bigint[] without nulls")
        (length,) = struct.unpack_from(">i", data, 12)
        return np.frombuffer(data, dtype=_ARRAY_ITEM, count=length, offset=20)["value"].astype(np.int64)


def _pg_cursor() -> psycopg.Cursor[Any]:
    """A cursor on Django's psycopg connection that binds `IdArray` in binary and loads bigint[] as numpy.
    On `_write_behind`'s thread, the connection of the transaction that started it (Django's are per thread)."""
    raw = getattr(_behind, "connection", None)
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    cursor = psycopg.Cursor(raw)
    cursor.adapters.register_dumper(IdArray, _IdArrayDumper)
    cursor.adapters.register_loader(_INT8_ARRAY_OID, _IdArrayLoader)
    return cursor


_behind = threading.local()  # `.connection` on `_write_behind`'s thread


@contextmanager
def _write_behind() -> Iterator[Callable[..., None]]:
    """Yield `later(write, *args)`, which runs `write(*args)` after the writes given before it, on one thread
    with this transaction's psycopg connection (`_pg_cursor` there), while the caller goes on: PostgreSQL
    inserting and indexing a first build's hundreds of thousands of rows overlaps the Python work that computes
    the next ones, instead of following it (psycopg waits for the server without the GIL). For raw writes whose
    order against the caller's own statements does not matter (the connection runs one statement at a time).

    Leaving the block waits for them and raises the first failure; leaving it by an exception drops those not
    started and waits for the running one (nothing runs after the transaction ends), and raises a write's
    failure first (it is the cause: after it every statement fails). Not PostgreSQL: each runs at once."""
    if connection.vendor != "postgresql":
        yield lambda write, *args: write(*args)
        return
    connection.ensure_connection()
    raw = connection.connection

    def bind() -> None:
        _behind.connection = raw

    futures: list[Future[None]] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recluster-write", initializer=bind)
    try:
        yield lambda write, *args: futures.append(pool.submit(write, *args))
    except BaseException as failure:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            cause = None if future.cancelled() else future.exception()
            if cause is not None:
                raise cause from failure
        raise
    pool.shutdown(wait=True)
    for future in futures:
        future.result()


def _select_by_ids(pg_sql: str, ids: Iterable[int] | np.ndarray) -> list[tuple[Any, ...]] | None:
    """Run `pg_sql` (with one `= ANY(%s)` array parameter) on PostgreSQL with server-side binding, or
    return None elsewhere. Thousands of ids as one bound binary array instead of a rendered IN list."""
    if connection.vendor != "postgresql":
        return None
    wanted = linking.distinct(ids if isinstance(ids, np.ndarray) else np.fromiter(ids, dtype=np.int64))
    with _pg_cursor() as cursor:
        cursor.execute(pg_sql, [IdArray(wanted)])
        return cursor.fetchall()


def _columns_by_ids(pg_sql: str, ids: np.ndarray, width: int, *params: Any) -> list[np.ndarray] | None:
    """Run `pg_sql`, one row of `width` bigint[] columns (`array_agg`s over one `= ANY(%b)` id array, then
    `params`), on PostgreSQL and return the columns as numpy arrays, or None elsewhere: no Python object per
    row."""
    if connection.vendor != "postgresql":
        return None
    with _pg_cursor() as cursor:
        cursor.execute(pg_sql, [IdArray(ids), *params], binary=True)
        row = cursor.fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row; NULLs when nothing matched
    return [np.zeros(0, dtype=np.int64) if column is None else column for column in row[:width]]


def _values_by_ids(query: QuerySet[Any], field: str, ids: Sequence[int], *columns: str) -> list[Any]:
    """`query.values_list(*columns)` of the rows whose `field` is in `ids`, in chunks of 5,000 ids: the ORM's
    way (SQLite's bound-variable limit) where PostgreSQL takes one bound array (`_select_by_ids`)."""
    rows: list[Any] = []
    for start in range(0, len(ids), 5000):
        rows.extend(query.filter(**{f"{field}__in": ids[start : start + 5000]}).values_list(*columns))
    return rows


def _sightings_of(column: str, ids: Iterable[int], *, shared_only: bool = False) -> list[Row]:
    """(seller, indicator, kind code, platform) of sightings by seller or indicator ids; `shared_only`
    skips indicators that only one seller holds."""
    ids = list(ids)
    if not ids:
        return []
    assert column in {"seller_id", "indicator_id"}
    shared = " AND i.holders >= 2" if shared_only else ""
    sql = f"""
        SELECT s.seller_id, s.indicator_id, {_kind_case()}, sel.platform_id FROM exchange_sighting s
          JOIN exchange_indicator i ON i.id = s.indicator_id
          JOIN exchange_seller sel ON sel.id = s.seller_id WHERE s.{column} = ANY(%s){shared}
    """  # noqa: S608 - only constants are interpolated
    fast = _select_by_ids(sql, ids)
    if fast is not None:
        return [(int(s), int(i), int(k), int(p)) for s, i, k, p in fast]
    code = {k: n for n, k in enumerate(KINDS)}
    rows: list[Row] = []
    extra = {"indicator__holders__gte": 2} if shared_only else {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        rows.extend(
            (s, i, code[k], p)
            for s, i, k, p in Sighting.objects.filter(**{f"{column}__in": chunk}, **extra).values_list(
                "seller_id", "indicator_id", "indicator__kind", "seller__platform_id"
            )
        )
    return rows


def _read_neighbourhood(
    touched_sellers: set[int], touched_indicators: set[int], now: datetime
) -> tuple[Columns, set[int], dict[int, frozenset[int]], dict[int, frozenset[int]]]:
    """Sightings of every seller whose cluster could change, and all holders of their indicators.

    Walks outward from the touched sellers (and the holders of touched indicators) through indicators that
    link or might have linked before the change: those whose counted holders, leaving out the touched ones,
    are within the threshold (`HubRule`; touched holders can only have added to the count before). A hub
    beyond that is loaded (for its exact count) but not walked through. Returns the columns, the inactive
    sellers among them, the previous clusters of all fully loaded sellers, and the live held merges among
    them (whose members come along whole, like a previous cluster's).
    """
    linkable: set[int] = set()
    rows: list[Row] = []
    full: set[int] = set()
    seen_indicators: set[int] = set()
    memberships: dict[int, int] = {}
    frontier = set(touched_sellers)
    for s, _, _, _ in _sightings_of("indicator_id", touched_indicators):
        frontier.add(s)
    held_members: dict[int, set[int]] = defaultdict(set)
    while frontier:
        _add_cluster_mates(frontier, full, memberships, held_members)
        own = _sightings_of("seller_id", frontier)
        rows.extend(own)
        full |= frontier
        new_indicators = {i for _, i, _, _ in own} - seen_indicators
        seen_indicators |= new_indicators
        # Indicators only this seller holds are already in `own`; fetch other holders of shared ones only.
        holders = _sightings_of("indicator_id", new_indicators, shared_only=True)
        rows.extend(holders)
        holder_ids = {s for s, _, _, _ in holders}
        linkable |= _linkable_among(holder_ids | frontier, now)
        walkable = _walkable(holders, new_indicators, linkable, touched_sellers, touched_indicators)
        frontier = {s for s in walkable if s not in full}
    all_sellers = {s for s, _, _, _ in rows} | full
    inactive = all_sellers - linkable
    previous: dict[int, set[int]] = defaultdict(set)
    for seller_id, cluster_id in memberships.items():
        previous[cluster_id].add(seller_id)
    return (
        Columns.from_rows(rows),
        inactive,
        {k: frozenset(v) for k, v in previous.items()},
        {k: frozenset(v) for k, v in held_members.items()},
    )


def _linkable_among(ids: set[int], now: datetime) -> set[int]:
    """The linkable sellers among `ids` (`linkable_q`): on PostgreSQL one bound id array, where the ORM rendered
    an IN list of every seller and holder a submission touched (50 ms of a 500-seller photo submission)."""
    wanted = np.fromiter(ids, dtype=np.int64, count=len(ids))
    columns = _columns_by_ids(
        "SELECT array_agg(sel.id) FROM exchange_seller sel"  # noqa: S608 - the constant linkable rule
        f" WHERE sel.id = ANY(%b) AND {LINKABLE_SQL.format(alias='sel')}",
        wanted,
        1,
        now,
    )
    if columns is not None:
        return set(columns[0].tolist())
    return {pk for (pk,) in _values_by_ids(Seller.objects.linkable(now), "id", sorted(ids), "id")}


def _add_cluster_mates(
    frontier: set[int], full: set[int], memberships: dict[int, int], held_members: dict[int, set[int]]
) -> None:
    """Previous cluster-mates and live held merges' members come along, transitively (into `frontier`,
    `memberships` and `held_members`): relinking must see whole previous clusters, and a held merge spans
    several of them."""
    grown = set(frontier)
    while grown:
        clusters = set(ClusterMember.objects.filter(seller_id__in=grown).values_list("cluster_id", flat=True))
        merges = set(
            PendingMergeSeller.objects.filter(seller_id__in=grown, merge__closed_at__isnull=True).values_list(
                "merge_id", flat=True
            )
        ) - set(held_members)
        found: set[int] = set()
        for seller_id, cluster_id in ClusterMember.objects.filter(cluster_id__in=clusters).values_list(
            "seller_id", "cluster_id"
        ):
            memberships[seller_id] = cluster_id
            found.add(seller_id)
        for merge_id, seller_id in PendingMergeSeller.objects.filter(merge_id__in=merges).values_list(
            "merge_id", "seller_id"
        ):
            held_members[merge_id].add(seller_id)
            found.add(seller_id)
        grown = found - frontier - full
        frontier |= grown


def _walkable(
    holders: Sequence[Row],
    indicators: set[int],
    linkable: set[int],
    touched_sellers: set[int],
    touched_indicators: set[int],
) -> set[int]:
    """Holders reachable through an indicator that links or might have linked before the change: a touched
    indicator, or one whose counted holders, leaving out the touched sellers, are within the hub rule."""
    rule = hub_rule()
    by_indicator: dict[int, list[int]] = defaultdict(list)
    untouched_by_platform: dict[int, Counter[int]] = defaultdict(Counter)
    kind_of: dict[int, int] = {}
    for s, i, k, p in holders:
        by_indicator[i].append(s)
        kind_of[i] = k
        if s in linkable and s not in touched_sellers:
            untouched_by_platform[i][p] += 1
    overrides = dict(
        Indicator.objects.filter(id__in=indicators).exclude(linking=Linking.AUTO).values_list("id", "linking")
    )
    reachable: set[int] = set()
    for indicator_id, sellers in by_indicator.items():
        if overrides.get(indicator_id) == Linking.COMMON:
            continue
        if (
            indicator_id in touched_indicators
            or rule.suppression(
                KINDS[kind_of[indicator_id]],
                untouched_by_platform[indicator_id].values(),
                overrides.get(indicator_id),
            )
            is None
        ):
            reachable.update(sellers)
    return reachable


def _overrides(indicator_ids: np.ndarray | None = None) -> dict[int, linking.Override]:
    query = Indicator.objects.exclude(linking=Linking.AUTO)
    if indicator_ids is not None:
        query = query.filter(id__in=[int(i) for i in np.unique(indicator_ids)])
    return dict(query.values_list("id", "linking"))  # type: ignore[arg-type]


def _fresh(
    now: datetime, among: Iterable[int] | np.ndarray | None = None, *, created: np.ndarray | None = None
) -> set[int] | np.ndarray:
    """Sellers whose bridges between other platforms' clusters are held (`graph.linking`, "Held merges").

    A seller is fresh for EXCHANGE_HELD_MERGE_DAYS after the exchange first received it (its own clock: a
    partner's `reported_at` could be backdated), unless an analyst approved a merge that held it; a seller
    held by a rejected or a still pending merge stays held whatever its age. The latest decision about a
    seller wins. Among `among` (then as a sorted id array: a full recluster asks about every linked seller,
    hundreds of thousands, so not as Python sets), else all of them as a set. `created`: the created_at of
    each of `among` in microseconds since the epoch, when the caller read them (no query then).
    """
    decided: dict[int, str] = {}
    for seller_id, state in (
        PendingMergeSeller.objects.filter(
            held=True, merge__state__in=[MergeState.APPROVED, MergeState.REJECTED]
        )
        .order_by("merge__decided_at", "merge_id")
        .values_list("seller_id", "merge__state")
    ):
        decided[seller_id] = state
    rejected = {s for s, state in decided.items() if state == MergeState.REJECTED}
    approved = {s for s, state in decided.items() if state == MergeState.APPROVED}
    # A merge waiting for a decision stays held after the hold period: only an analyst's approval or a second
    # platform's link releases it, never the passage of time (an unreviewed glue must not land by default).
    pending = set(
        PendingMergeSeller.objects.filter(held=True, merge__state=MergeState.PENDING).values_list(
            "seller_id", flat=True
        )
    )
    days = settings.EXCHANGE_HELD_MERGE_DAYS
    cutoff = now - timedelta(days=days)
    if among is None:
        fresh = (
            set(Seller.objects.filter(created_at__gte=cutoff).values_list("id", flat=True))
            if days > 0
            else set()
        )
        return ((fresh | rejected) - approved) | pending
    wanted = linking.distinct(
        np.asarray(among if isinstance(among, np.ndarray) else list(among), dtype=np.int64)
    )
    young = np.zeros(0, dtype=np.int64)
    if days > 0 and created is not None:
        young = linking.distinct(np.asarray(among)[created >= epoch_microseconds(cutoff)])
    elif days > 0 and wanted.size:
        columns = _columns_by_ids(
            "SELECT array_agg(id) FROM exchange_seller WHERE id = ANY(%b) AND created_at >= %b",
            wanted,
            1,
            cutoff,
        )
        if columns is not None:
            young = linking.distinct(columns[0])
        else:
            rows = _values_by_ids(Seller.objects.all(), "id", wanted.tolist(), "id", "created_at")
            young = linking.distinct(
                np.array([pk for pk, created in rows if created >= cutoff], dtype=np.int64)
            )
    # The decisions and pending holds are few: set arithmetic on them, array look-ups for the many young ones.
    held = young[~linking.isin(young, list(approved))] if approved else young
    extra = np.fromiter((rejected - approved) | pending, dtype=np.int64)
    extra = extra[linking.isin(extra, wanted, test_sorted=True)]
    return linking.distinct(np.concatenate([held, extra])) if extra.size else held


def _sync_held(
    retired: Iterable[int],
    held: Sequence[linking.HeldMerge],
    clusters: Sequence[linking.Cluster[int]],
    now: datetime,
) -> None:
    """Replace the `retired` live held merges by `held`: a held merge of the same platform sharing held
    sellers keeps its row (a rejected one only while it holds nothing new), the others are created; retired
    rows left over are closed (pending ones as merged when their sellers are now clustered, else withdrawn)."""
    old = {m.pk: m for m in PendingMerge.objects.filter(pk__in=list(retired))}
    old_held: dict[int, set[int]] = defaultdict(set)
    for merge_id, seller_id in PendingMergeSeller.objects.filter(
        merge_id__in=list(old), held=True
    ).values_list("merge_id", "seller_id"):
        old_held[merge_id].add(seller_id)
    kept: dict[int, linking.HeldMerge] = {}
    new: list[tuple[PendingMerge, linking.HeldMerge]] = []
    for merge in held:
        sellers = set(merge.sellers)
        candidates = [
            m
            for m in old.values()
            if m.platform_id == merge.platform and m.pk not in kept and old_held[m.pk] & sellers
        ]
        best = max(candidates, key=lambda m: (len(old_held[m.pk] & sellers), -m.pk), default=None)
        if best is not None and (best.state == MergeState.PENDING or sellers <= old_held[best.pk]):
            kept[best.pk] = merge
        else:
            new.append((PendingMerge(platform_id=merge.platform, created_at=now, updated_at=now), merge))
    PendingMerge.objects.bulk_create([row for row, _ in new])
    clustered = {m for c in clusters for m in c.members}
    closing = [m for pk, m in old.items() if pk not in kept]
    for row in closing:
        if row.state == MergeState.PENDING:
            row.state = MergeState.MERGED if old_held[row.pk] <= clustered else MergeState.WITHDRAWN
        row.closed_at = row.updated_at = now
    PendingMerge.objects.bulk_update(closing, ["state", "closed_at", "updated_at"])
    PendingMerge.objects.filter(pk__in=list(kept)).update(updated_at=now)
    PendingMergeSeller.objects.filter(merge_id__in=list(kept)).delete()
    memberships = [
        PendingMergeSeller(merge_id=pk, seller_id=seller, held=seller in set(merge.sellers))
        for pk, merge in [*kept.items(), *((row.pk, merge) for row, merge in new)]
        for seller in merge.members
    ]
    PendingMergeSeller.objects.bulk_create(memberships, batch_size=5000)
    if new or closing:
        logger.info("event=held_merges created=%s closed=%s kept=%s", len(new), len(closing), len(kept))


# ------------------------------------------------------------------------------------------------ writing


@dataclass
class ClusterFacts:
    size: int
    platform_count: int
    risk: int
    risk_parts: dict[str, int]
    kinds: list[str]


def _facts(
    clusters: Sequence[linking.Cluster[int]],
    now: datetime,
    platform_hubs: frozenset[tuple[int, int]],
    shared: Columns | None = None,
    cluster_ids: Sequence[int] | None = None,
    member_sets: Sequence[frozenset[int]] | None = None,
) -> tuple[dict[frozenset[int], ClusterFacts], dict[int, int]]:
    """Risk, platforms and linking kinds of each cluster (reads its members' sightings, unless `shared` holds
    them: a full recluster's read has every linkable seller's sightings of shared indicators), and the
    members' platforms. A sighting of an indicator that its seller's platform alone holds too often links
    nothing (`platform_hubs`). `cluster_ids` (the clusters' ids after identity assignment, negative for new
    ones) bring the partners' opinions given on those ids into the risk; without them no opinion counts.

    Column-wise over all clusters at once (`graph.evidence.link_summaries`, `graph.risk.risk_scores`: the
    scalar definitions' array forms, tested equal): a Python loop per cluster cost seconds at 70,000 clusters.
    """
    if not clusters:
        return {}, {}
    sizes = np.fromiter((len(c.members) for c in clusters), dtype=np.int64, count=len(clusters))
    members = np.fromiter(
        itertools.chain.from_iterable(c.members for c in clusters), dtype=np.int64, count=int(sizes.sum())
    )
    member_cluster = np.repeat(np.arange(len(clusters), dtype=np.int64), sizes)
    seller_ids, seller_platform, seller_confirmed, seller_reported = (
        _member_columns(members) if shared is None else _member_columns_of(shared, members)
    )
    at = np.searchsorted(seller_ids, members).clip(max=max(seller_ids.size - 1, 0))
    if seller_ids.size == 0 or (seller_ids[at] != members).any():
        raise KeyError("a cluster member is missing from exchange_seller")
    platform, confirmed, reported = seller_platform[at], seller_confirmed[at], seller_reported[at]
    platform_ids, platform_code = linking.distinct_inverse(platform)
    per_cluster_platform = linking.distinct(member_cluster * platform_ids.size + platform_code)
    platform_count = np.bincount(per_cluster_platform // platform_ids.size, minlength=len(clusters))
    confirmed_count = np.bincount(member_cluster, weights=confirmed, minlength=len(clusters)).astype(np.int64)
    last_reported = np.maximum.reduceat(reported, np.cumsum(sizes) - sizes)

    # Only indicators someone else holds can link; a member's single-holder indicators are irrelevant here.
    if shared is None:
        row_seller, row_indicator, row_kind = _member_sightings(members)
    else:
        mine = linking.isin(shared.seller, members)
        row_seller, row_indicator, row_kind = shared.seller[mine], shared.indicator[mine], shared.kind[mine]
    by_member = np.argsort(members, kind="stable")
    row_cluster = member_cluster[by_member[np.searchsorted(members[by_member], row_seller)]]
    row_platform = seller_platform[np.searchsorted(seller_ids, row_seller)]
    keep = ~_pairs_in(row_indicator, row_platform, platform_hubs)
    suppressed = [(n, s.indicator) for n, c in enumerate(clusters) for s in c.suppressed]
    keep &= ~_pairs_in(row_cluster, row_indicator, suppressed)
    strength = strengths()
    strong_kind = [strength[kind] == "strong" for kind in KINDS]
    strong, weak, kind_mask = link_summaries(
        row_cluster[keep],
        row_seller[keep],
        row_indicator[keep],
        row_kind[keep],
        strong_kind,
        linking.family_codes(KINDS),
        len(clusters),
    )
    corroborating, false_positives = _opinion_columns(
        np.fromiter(cluster_ids, dtype=np.int64, count=len(clusters))
        if cluster_ids is not None
        else np.full(len(clusters), -1, dtype=np.int64)
    )
    score = risk_scores(
        platforms=platform_count,
        confirmed=confirmed_count,
        suspected=sizes - confirmed_count,
        strong_links=strong,
        weak_links=weak,
        last_reported=last_reported,
        now=now,
        corroborating=corroborating,
        false_positives=false_positives,
    )
    kind_names: dict[int, list[str]] = {}
    for mask in linking.distinct(kind_mask).tolist():
        kind_names[mask] = sorted(kind for code, kind in enumerate(KINDS) if mask >> code & 1)
    facts = {
        members: ClusterFacts(
            size,
            platforms,
            total,
            {"platforms": p, "reports": r, "evidence": e, "recency": a, "opinions": o},
            list(kind_names[mask]),
        )
        for members, size, platforms, total, p, r, e, a, o, mask in zip(
            [c.member_set for c in clusters] if member_sets is None else member_sets,
            sizes.tolist(),
            platform_count.tolist(),
            score.total.tolist(),
            score.platforms.tolist(),
            score.reports.tolist(),
            score.evidence.tolist(),
            score.recency.tolist(),
            score.opinions.tolist(),
            kind_mask.tolist(),
            strict=True,
        )
    }
    return facts, dict(zip(seller_ids.tolist(), seller_platform.tolist(), strict=True))


def _opinion_columns(cluster_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster id (negative: a new cluster, no opinions yet): how many platforms corroborate it (`seen_too`
    or `actioned`) and how many hold a standing false positive on it. One query for all the clusters; the
    distinct (cluster, platform) pairs are counted column-wise."""
    corroborating = np.zeros(cluster_ids.size, dtype=np.int64)
    false_positives = np.zeros(cluster_ids.size, dtype=np.int64)
    known = linking.distinct(cluster_ids[cluster_ids >= 0])
    if known.size == 0:
        return corroborating, false_positives
    rows = _select_by_ids(
        "SELECT cluster_id, platform_id, kind, review FROM graph_opinion WHERE cluster_id = ANY(%s)", known
    )
    if rows is None:
        rows = _values_by_ids(
            Opinion.objects.order_by(),
            "cluster_id",
            known.tolist(),
            "cluster_id",
            "platform_id",
            "kind",
            "review",
        )
    up = [(c, p) for c, p, kind, _ in rows if kind in CORROBORATING]
    down = [
        (c, p) for c, p, kind, review in rows if kind == OpinionKind.FALSE_POSITIVE and review in STANDING
    ]
    for pairs, counts in ((up, corroborating), (down, false_positives)):
        if not pairs:
            continue
        clusters = np.unique(np.array(pairs, dtype=np.int64).reshape(-1, 2), axis=0)[:, 0]
        ids, per_cluster = np.unique(clusters, return_counts=True)
        at = np.searchsorted(ids, cluster_ids).clip(max=ids.size - 1)
        counts[:] = np.where(ids[at] == cluster_ids, per_cluster[at], 0)
    return corroborating, false_positives


def _pairs_in(first: np.ndarray, second: np.ndarray, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Mask of the rows whose (first, second) is one of `pairs` (both columns non-negative ids)."""
    wanted = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    if wanted.size == 0 or first.size == 0:
        return np.zeros(first.size, dtype=np.bool_)
    # Dense codes for the second column keep the combined key far from int64's limit.
    codes = linking.distinct(np.concatenate([second, wanted[:, 1]]))
    row_key = first * codes.size + np.searchsorted(codes, second)
    wanted_key = wanted[:, 0] * codes.size + np.searchsorted(codes, wanted[:, 1])
    return linking.isin(row_key, wanted_key)


def _member_columns(members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(seller id ascending, platform id, confirmed 0/1, reported_at in microseconds since the epoch)."""
    columns = _columns_by_ids(
        """
        SELECT array_agg(id ORDER BY id), array_agg(CAST(platform_id AS BIGINT) ORDER BY id),
               array_agg(CAST(CASE WHEN status = 'confirmed' THEN 1 ELSE 0 END AS BIGINT) ORDER BY id),
               array_agg(CAST(EXTRACT(EPOCH FROM reported_at) * 1000000 AS BIGINT) ORDER BY id)
          FROM exchange_seller WHERE id = ANY(%b)
        """,
        members,
        4,
    )
    if columns is not None:
        return columns[0], columns[1], columns[2], columns[3]
    wanted = np.unique(members).tolist()
    rows: list[tuple[int, int, str, datetime]] = _values_by_ids(
        Seller.objects.order_by("id"), "id", wanted, "id", "platform_id", "status", "reported_at"
    )
    return (
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] == "confirmed" for r in rows], dtype=np.int64),
        np.array([epoch_microseconds(r[3]) for r in rows], dtype=np.int64),
    )


def _member_columns_of(shared: Columns, members: np.ndarray) -> tuple[np.ndarray, ...]:
    """`_member_columns` from the full read when it brought the sellers' facts along, else from the database.
    (Only a seller that holds a linking indicator can be a member, so every member is in the read.)"""
    if shared.confirmed is None or shared.reported is None:
        return _member_columns(members)
    ids, first = linking.distinct_first(shared.seller)
    first = first[linking.isin(ids, members)]
    return shared.seller[first], shared.platform[first], shared.confirmed[first], shared.reported[first]


def _member_sightings(members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seller, indicator, kind code) of the members' sightings of indicators held by two or more sellers."""
    columns = _columns_by_ids(
        f"""
        SELECT array_agg(CAST(s.seller_id AS BIGINT)), array_agg(CAST(s.indicator_id AS BIGINT)),
               array_agg(CAST({_kind_case()} AS BIGINT))
          FROM exchange_sighting s JOIN exchange_indicator i ON i.id = s.indicator_id
         WHERE s.seller_id = ANY(%b) AND i.holders >= 2
        """,  # noqa: S608 - only constant kind names are interpolated
        members,
        3,
    )
    if columns is not None:
        return columns[0], columns[1], columns[2]
    rows = Columns.from_rows(_sightings_of("seller_id", members.tolist(), shared_only=True))
    return rows.seller, rows.indicator, rows.kind


def _most_advanced(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: STATUS_ORDER.index(ClusterStatus(s)), default=ClusterStatus.NEW)


def _former_memberships(
    previous: Mapping[int, frozenset[int]], member_sets: Sequence[frozenset[int]]
) -> dict[int, frozenset[int]]:
    """{cluster id: its recorded former members} for the ids that could come back in this run: records
    holding a seller of a changed cluster (an unchanged one keeps its id anyway) whose cluster is dissolved
    or among `previous` (a live cluster outside the run keeps its id)."""
    if not FormerMember.objects.exists():  # a first build's case: its hundreds of thousands of sellers unsent
        return {}
    unchanged = set(previous.values())
    sellers = sorted({m for members in member_sets if members not in unchanged for m in members})
    if not sellers:
        return {}
    rows = _select_by_ids(
        """SELECT f.cluster_id, f.seller_id FROM graph_formermember f
            WHERE f.cluster_id IN (SELECT DISTINCT cluster_id FROM graph_formermember WHERE seller_id = ANY(%s))""",
        sellers,
    )
    if rows is None:
        ids = {
            cid for (cid,) in _values_by_ids(FormerMember.objects.all(), "seller_id", sellers, "cluster_id")
        }
        found = sorted(ids)
        rows = _values_by_ids(FormerMember.objects.all(), "cluster_id", found, "cluster_id", "seller_id")
    records: dict[int, set[int]] = defaultdict(set)
    for cluster_id, seller_id in rows:
        records[cluster_id].add(seller_id)
    free = set(previous) | set(
        ActorCluster.objects.filter(pk__in=list(records), dissolved_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    return {cid: frozenset(members) for cid, members in records.items() if cid in free}


def _record_former_memberships(
    previous: Mapping[int, frozenset[int]],
    changes: Sequence[ClusterChange],
    assigned: Mapping[frozenset[int], int],
    real: Mapping[int, int],
    former: Mapping[int, frozenset[int]],
) -> None:
    """Keep what a later split or relink may restore: the members of every previous cluster whose id stops
    describing them (it dissolved, merged away or lost its id) and of each merge's survivor just before the
    merge. A record that came back (a restored id, or a survivor split back to its record) is spent."""
    alive = set(real.values())
    recorded = {cid: previous[cid] for cid in previous if cid not in alive}
    recorded.update(
        {
            c.cluster_id: previous[c.cluster_id]
            for c in changes
            if c.kind == "merged" and c.cluster_id in alive
        }
    )
    spent = {cid for members, cid in assigned.items() if cid >= 0 and former.get(cid) == members}
    replaced = sorted(set(recorded) | spent)
    if not replaced:
        return
    FormerMember.objects.filter(cluster_id__in=replaced).delete()
    FormerMember.objects.bulk_create(
        [
            FormerMember(cluster_id=cid, seller_id=m)
            for cid, members in recorded.items()
            for m in sorted(members)
        ],
        batch_size=5000,
    )


def _apply(
    previous: dict[int, frozenset[int]],
    clusters: Sequence[linking.Cluster[int]],
    now: datetime,
    summary: ReclusterSummary,
    platform_hubs: Iterable[tuple[int, int]] = (),
    shared: Columns | None = None,
) -> None:
    """Replace the `previous` clusters by `clusters`, keeping ids by largest overlap (or restoring a former
    cluster's id to exactly its former members), recording events and former memberships. `shared`: the
    members' sightings of shared indicators when the caller has read them all (`_facts`)."""
    placeholders = itertools.count(-1, -1)
    member_sets = [c.member_set for c in clusters]
    former = _former_memberships(previous, member_sets)
    # An unchanged cluster keeps its id first and takes no part in any other assignment or event (its previous
    # members all went to it): identities are assigned among the rest only, not the tens of thousands that a
    # rebuild mostly finds unchanged.
    kept = {members: cid for cid, members in previous.items()}
    unchanged = {members: kept[members] for members in member_sets if members in kept}
    kept_ids = set(unchanged.values())
    assigned, changes = assign_identities(
        {cid: members for cid, members in previous.items() if cid not in kept_ids},
        [members for members in member_sets if members not in unchanged],
        lambda: next(placeholders),
        {cid: members for cid, members in former.items() if cid not in kept_ids},
    )
    assigned.update(unchanged)
    # New clusters take their ids first (`_new_cluster_ids`; placeholders ascending, ids ascending), so their
    # memberships are written while their facts are computed (`_write_behind`: memberships and events have no
    # foreign key, so the clusters' rows need not come first).
    new = sorted(cid for cid in assigned.values() if cid < 0)
    real = {cid: cid for cid in assigned.values() if cid >= 0}
    real.update(zip(new, _new_cluster_ids(len(new)), strict=True))
    with _write_behind() as later:
        later(
            _write_memberships,
            {cid: members for cid, members in previous.items() if cid not in kept_ids},
            {members: cid for members, cid in assigned.items() if members not in unchanged},
            real,
            now,
        )
        facts, platform_of = _facts(
            clusters,
            now,
            frozenset(platform_hubs),
            shared,
            [assigned[members] for members in member_sets],
            member_sets,
        )
        created, changed, refreshed = _cluster_rows(
            previous, assigned, real, changes, facts, platform_of, now
        )
        later(_insert_clusters, [real[cid] for cid in new], [created[cid] for cid in new])
        _update_clusters(changed)
        _update_facts(refreshed)
        _record_former_memberships(previous, changes, assigned, real, former)
        later(_insert_events, _events(changes, real, platform_of, now, summary), now)
    # The webhook events of the same changes, in the same transaction (`graph.webhook_events` says who hears
    # what; nothing when no platform has a webhook). After the writes: they read the new clusters' rows, which
    # the writing thread may not have inserted before the block's end (under load, a new cluster's events were
    # dropped: tests/graph/test_first_build_writes.py).
    webhooks.queue_cluster_changes(previous, assigned, real, changes, platform_of, now)
    summary.clusters = len(clusters)
    summary.cross_platform = sum(1 for f in facts.values() if f.platform_count >= 2)


def _cluster_rows(
    previous: Mapping[int, frozenset[int]],
    assigned: Mapping[frozenset[int], int],
    real: Mapping[int, int],
    changes: Sequence[ClusterChange],
    facts: Mapping[frozenset[int], ClusterFacts],
    platform_of: dict[int, int],
    now: datetime,
) -> tuple[dict[int, tuple[Any, ...]], list[ActorCluster], list[tuple[int, ClusterFacts]]]:
    """The clusters' new state: ({placeholder id: `_NEW_FIELDS` values} of new clusters, stored clusters whose
    state changed (the dissolved ones too), (id, facts) of those whose members did not change but whose facts
    did). Completes `platform_of` with the platforms of sellers that left (for the events)."""
    restored = {change.cluster_id for change in changes if change.kind == "restored"}
    # Stored rows as models only for clusters with an identity change (and the clusters it names, and the
    # dissolved ones a restoration revives): the rest keep their members, so at most their facts change
    # (risk ages, a seller's status) and plain values do.
    named = {c.cluster_id for c in changes} | {r for c in changes for r in c.related}
    old = ActorCluster.objects.in_bulk(sorted({cid for cid in previous if cid in named} | restored))
    stored = _stored_facts([cid for cid in previous if cid not in named])
    leavers = {m for c in changes for m in c.members_before if m not in platform_of}
    if leavers:  # none on a first build, whose memberships are being written meanwhile (`_write_behind`)
        platform_rows = _select_by_ids(
            "SELECT id, platform_id FROM exchange_seller WHERE id = ANY(%s)", leavers
        )
        if platform_rows is None:
            platform_rows = list(Seller.objects.filter(id__in=leavers).values_list("id", "platform_id"))
        platform_of.update(platform_rows)

    inherit = _inheritance(changes, assigned, old)
    _give_back_carried_notes(changes, old, set(assigned.values()))
    created: dict[int, tuple[Any, ...]] = {}  # placeholder id -> _NEW_FIELDS values
    changed: list[ActorCluster] = []
    refreshed: list[tuple[int, ClusterFacts]] = []
    refs = iter(new_refs(sum(1 for cid in assigned.values() if cid < 0)))
    for members, cid in sorted(assigned.items(), key=lambda item: item[1]):
        f = facts[members]
        if cid >= 0 and cid not in old:
            if stored.get(cid) != _fact_values(f):
                refreshed.append((cid, f))
            continue
        sources = [old[s] for s in inherit.get(cid, []) if s in old and s != cid]
        if cid < 0 and not sources:  # the common case by far: nothing to inherit, no model instance needed
            created[cid] = (next(refs), *_fact_values(f), ClusterStatus.NEW, None, "", now, now)
            continue
        row = old[cid] if cid >= 0 else ActorCluster(ref=next(refs), created_at=now, changed_at=now)
        before = _state(row)
        row.size, row.platform_count, row.cross_platform = f.size, f.platform_count, f.platform_count >= 2
        row.risk, row.risk_parts, row.kinds = f.risk, f.risk_parts, f.kinds
        if cid >= 0 and previous.get(cid) != members:
            row.changed_at = now
        if cid in restored:
            row.dissolved_at = None
        _carry_analyst_work(row, sources)
        if cid < 0:
            created[cid] = tuple(getattr(row, name) for name in _NEW_FIELDS)
        elif _state(row) != before:
            changed.append(row)
    surviving = set(real.values())  # a set: `in real.values()` scanned the dict per cluster (quadratic)
    for cid in previous:
        if cid not in surviving:
            row = old[cid]
            row.dissolved_at, row.size, row.changed_at = now, 0, now
            changed.append(row)
    return created, changed, refreshed


# A cluster's facts as stored (`_stored_facts`) and as computed (`_fact_values`), in this order.
_FACT_FIELDS = ("size", "platform_count", "cross_platform", "risk", "risk_parts", "kinds")
# The columns a new cluster is inserted with (`dissolved_at` stays NULL, the id comes from the sequence).
_NEW_FIELDS = ("ref", *_FACT_FIELDS, "status", "assignee_id", "notes", "created_at", "changed_at")


def _fact_values(facts: ClusterFacts) -> tuple[Any, ...]:
    return (
        facts.size,
        facts.platform_count,
        facts.platform_count >= 2,
        facts.risk,
        facts.risk_parts,
        facts.kinds,
    )


def _stored_facts(ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """{cluster id: its stored `_FACT_FIELDS`} without building model instances (tens of thousands)."""
    if not ids:
        return {}
    rows = _select_by_ids(
        "SELECT id, size, platform_count, cross_platform, risk, risk_parts, kinds"
        " FROM graph_actorcluster WHERE id = ANY(%s)",
        ids,
    )
    if rows is None:
        rows = _values_by_ids(ActorCluster.objects.all(), "id", list(ids), "id", *_FACT_FIELDS)
        return {pk: tuple(values) for pk, *values in rows}
    # Django's connection loads jsonb as text; few distinct texts recur across clusters, so parse each once.
    parsed: dict[str, Any] = {}

    def load(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value not in parsed:
            parsed[value] = json.loads(value)
        return parsed[value]

    return {
        pk: (size, platforms, cross, risk, load(parts), load(kinds))
        for pk, size, platforms, cross, risk, parts, kinds in rows
    }


class _JsonTexts:
    """json.dumps of values that recur (risk parts, kinds lists, event platforms), each distinct one once:
    tens of thousands of json.dumps calls were a visible share of a first build's COPY."""

    def __init__(self) -> None:
        self.texts: dict[Any, str] = {}

    def __call__(self, value: Any) -> str:
        key = tuple(value.items()) if isinstance(value, dict) else tuple(value)
        text = self.texts.get(key)
        if text is None:
            text = self.texts[key] = json.dumps(value)
        return text


def _new_cluster_ids(count: int) -> list[int]:
    """`count` ids for new clusters, ascending, taken before the rows are written (their memberships and events
    are written meanwhile): from the table's sequence on PostgreSQL; elsewhere (SQLite, one writer at a time)
    above the largest id."""
    if count == 0:
        return []
    if connection.vendor != "postgresql":
        top = ActorCluster.objects.aggregate(top=Max("id"))["top"] or 0
        return list(range(top + 1, top + 1 + count))
    with _pg_cursor() as cursor:
        cursor.execute(
            # The sequence looked up once (a materialised CTE): PostgreSQL folds a plain subquery into the
            # call, and the lookup per id took 0.2 s for 70,000 ids, ten times the ids themselves.
            "WITH s AS MATERIALIZED"
            " (SELECT CAST(pg_get_serial_sequence('graph_actorcluster', 'id') AS regclass) AS sequence)"
            " SELECT array_agg(nextval(s.sequence)) FROM s, generate_series(1, %s)",
            [count],
            binary=True,  # one bigint[] into numpy: a row per id cost 0.2 s at 70,000 clusters
        )
        row = cursor.fetchone()
    assert row is not None
    return np.sort(row[0]).tolist()


def _insert_clusters(ids: Sequence[int], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert new clusters (`_NEW_FIELDS` values) with their ids (`_new_cluster_ids`). On PostgreSQL by COPY
    (bulk_create's INSERT took seconds for 70,000 clusters, most of it building and adapting model instances);
    elsewhere by bulk_create."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        ActorCluster.objects.bulk_create(
            [
                ActorCluster(pk=pk, **dict(zip(_NEW_FIELDS, row, strict=True)))
                for pk, row in zip(ids, rows, strict=True)
            ],
            batch_size=2000,
        )
        return
    parts, kinds, status = (_NEW_FIELDS.index(name) for name in ("risk_parts", "kinds", "status"))
    columns = ", ".join(["id", *_NEW_FIELDS])
    with _pg_cursor() as cursor, cursor.copy(f"COPY graph_actorcluster ({columns}) FROM STDIN") as copy:
        text = _JsonTexts()
        for pk, row in zip(ids, rows, strict=True):
            values = list(row)
            values[parts], values[kinds] = text(values[parts]), text(values[kinds])
            values[status] = str(values[status])  # a ClusterStatus member: its value, not its name
            copy.write_row((pk, *values))


def _update_facts(rows: Sequence[tuple[int, ClusterFacts]]) -> None:
    """Write new facts of clusters whose members did not change (nothing else of theirs changed)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        instances = [
            ActorCluster(pk=pk, **dict(zip(_FACT_FIELDS, _fact_values(f), strict=True))) for pk, f in rows
        ]
        ActorCluster.objects.bulk_update(instances, list(_FACT_FIELDS), batch_size=500)
        return
    with _pg_cursor() as cursor:
        cursor.execute(
            """
            UPDATE graph_actorcluster AS c SET size = v.size, platform_count = v.platform_count,
                   cross_platform = v.cross_platform, risk = v.risk, risk_parts = v.risk_parts::jsonb,
                   kinds = v.kinds::jsonb
              FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::bool[], %s::int[], %s::text[], %s::text[])
                   AS v(id, size, platform_count, cross_platform, risk, risk_parts, kinds)
             WHERE c.id = v.id
            """,
            [
                IdArray(pk for pk, _ in rows),
                [f.size for _, f in rows],
                [f.platform_count for _, f in rows],
                [f.platform_count >= 2 for _, f in rows],
                [f.risk for _, f in rows],
                [json.dumps(f.risk_parts) for _, f in rows],
                [json.dumps(f.kinds) for _, f in rows],
            ],
        )


def _inheritance(
    changes: Sequence[ClusterChange], assigned: Mapping[frozenset[int], int], old: Mapping[int, ActorCluster]
) -> dict[int, list[int]]:
    """{cluster id: the earlier clusters whose analyst work it inherits}: a split's pieces inherit the
    parent (a restored cluster too: the work done on the merged cluster concerns it as well); a merge
    inherits every cluster merged into it."""
    inherit: dict[int, list[int]] = defaultdict(list)
    for change in changes:
        if change.kind in ("created", "restored") and change.related:  # (a first build: 70,000 with none)
            inherit[change.cluster_id].extend(change.related)
        elif change.kind == "merged" and change.cluster_id in assigned.values() and change.cluster_id >= 0:
            inherit[change.cluster_id].extend(r for r in change.related if r in old)
    return inherit


def _carry_analyst_work(row: ActorCluster, sources: Sequence[ActorCluster]) -> None:
    """Analyst work survives: the most advanced status, the first assignee, every note (each once)."""
    if not sources:
        return
    row.status = _most_advanced([row.status, *[s.status for s in sources]])
    if row.assignee_id is None:
        row.assignee_id = next((s.assignee_id for s in sources if s.assignee_id), None)
    notes = [row.notes] if row.notes else []
    for source in sources:
        # A restored cluster's own notes went into the merged cluster under its id: they come back once.
        carried = _without_block(source.notes, _carried_block(row))
        if carried and carried not in row.notes:
            notes.append(f"[from cluster {source.pk}] {carried}")
    row.notes = "\n\n".join(notes)


def _carried_block(row: ActorCluster) -> str:
    """How `row`'s notes read once carried into another cluster (`_carry_analyst_work`)."""
    return f"[from cluster {row.pk}] {row.notes}" if row.notes and row.pk else ""


def _without_block(notes: str, block: str) -> str:
    """`notes` without the paragraph(s) `block` (notes are paragraphs joined by blank lines)."""
    if not block or block not in notes:
        return notes
    return "\n\n".join(part.strip("\n") for part in notes.split(block) if part.strip())


def _give_back_carried_notes(
    changes: Sequence[ClusterChange], old: Mapping[int, ActorCluster], alive: set[int]
) -> None:
    """A restored cluster takes its notes back: the cluster it split off (when that lives on) drops the
    block the merge had carried in from it, so each keeps the notes it had plus those added while merged.
    Runs before the clusters' new state is computed (the parent's membership changed: it is written)."""
    for change in changes:
        if change.kind != "restored":
            continue
        row = old[change.cluster_id]
        for parent_id in change.related:
            if parent_id in alive and parent_id in old:
                old[parent_id].notes = _without_block(old[parent_id].notes, _carried_block(row))


def _write_memberships(
    previous: Mapping[int, frozenset[int]],
    assigned: Mapping[frozenset[int], int],
    real: Mapping[int, int],
    now: datetime,
) -> None:
    """Membership: delete what moved or left, insert what arrived."""
    wanted_seller, wanted_cluster = _membership_columns(
        (members, real[cid]) for members, cid in assigned.items()
    )
    had_seller, had_cluster = _membership_columns((members, cid) for cid, members in previous.items())
    leaving = had_seller[~_same_cluster(had_seller, had_cluster, wanted_seller, wanted_cluster)]
    arrives = ~_same_cluster(wanted_seller, wanted_cluster, had_seller, had_cluster)
    arriving_seller, arriving_cluster = wanted_seller[arrives], wanted_cluster[arrives]
    if connection.vendor == "postgresql":
        # Set-based, ids as binary arrays: hundreds of thousands of memberships on a first build.
        with _pg_cursor() as cursor:
            if leaving.size:
                cursor.execute(
                    "DELETE FROM graph_clustermember WHERE seller_id = ANY(%s)", [IdArray(leaving)]
                )
            if arriving_seller.size:
                cursor.execute(
                    "INSERT INTO graph_clustermember (seller_id, cluster_id, joined_at)"
                    " SELECT s, c, %s FROM unnest(%s::bigint[], %s::bigint[]) AS u(s, c)",
                    [now, IdArray(arriving_seller), IdArray(arriving_cluster)],
                )
    else:
        leaving_ids = leaving.tolist()
        for start in range(0, len(leaving_ids), 5000):
            ClusterMember.objects.filter(seller_id__in=leaving_ids[start : start + 5000]).delete()
        ClusterMember.objects.bulk_create(
            [
                ClusterMember(cluster_id=cid, seller_id=m, joined_at=now)
                for m, cid in zip(arriving_seller.tolist(), arriving_cluster.tolist(), strict=True)
            ],
            batch_size=5000,
        )


def _membership_columns(clusters: Iterable[tuple[frozenset[int], int]]) -> tuple[np.ndarray, np.ndarray]:
    """(seller, cluster id) columns of (members, cluster id) pairs, sorted by seller."""
    pairs = list(clusters)
    sizes = np.fromiter((len(members) for members, _ in pairs), dtype=np.int64, count=len(pairs))
    seller = np.fromiter(
        itertools.chain.from_iterable(members for members, _ in pairs), dtype=np.int64, count=int(sizes.sum())
    )
    cluster = np.repeat(np.fromiter((cid for _, cid in pairs), dtype=np.int64, count=len(pairs)), sizes)
    order = np.argsort(seller, kind="stable")
    return seller[order], cluster[order]


def _same_cluster(
    seller: np.ndarray, cluster: np.ndarray, other_seller: np.ndarray, other_cluster: np.ndarray
) -> np.ndarray:
    """Per (seller, cluster): whether the other columns (sorted by seller) put that seller in that cluster."""
    if other_seller.size == 0:
        return np.zeros(seller.size, dtype=np.bool_)
    at = np.searchsorted(other_seller, seller).clip(max=other_seller.size - 1)
    return (other_seller[at] == seller) & (other_cluster[at] == cluster)


EventRow = tuple[int, str, int, int, list[int], list[int]]  # cluster, kind, before, after, related, platforms


def _events(
    changes: Sequence[ClusterChange],
    real: Mapping[int, int],
    platform_of: Mapping[int, int],
    now: datetime,
    summary: ReclusterSummary,
) -> list[EventRow]:
    """One event per identity change, on the clusters' real ids, naming the platforms involved."""
    events: list[EventRow] = []
    for change, platforms in zip(changes, _event_platforms(changes, platform_of), strict=True):
        events.append(
            (
                real.get(change.cluster_id, change.cluster_id),
                change.kind,
                len(change.members_before),
                len(change.members_after),
                [real.get(r, r) for r in change.related],
                platforms,
            )
        )
        summary.events[change.kind] = summary.events.get(change.kind, 0) + 1
    return events


def _event_platforms(changes: Sequence[ClusterChange], platform_of: Mapping[int, int]) -> list[list[int]]:
    """Per change, the ascending platforms of the sellers involved (who moved, plus everyone after: its members
    before and after) whose platform is known. Column-wise: a Python set per event cost a second on the tens of
    thousands of events of a first build."""
    sizes = np.fromiter(
        (len(c.members_after) + len(c.members_before) for c in changes), dtype=np.int64, count=len(changes)
    )
    members = np.fromiter(
        itertools.chain.from_iterable(itertools.chain(c.members_after, c.members_before) for c in changes),
        dtype=np.int64,
        count=int(sizes.sum()),
    )
    known = np.fromiter(platform_of.keys(), dtype=np.int64, count=len(platform_of))
    known_platform = np.fromiter(platform_of.values(), dtype=np.int64, count=len(platform_of))
    if known.size == 0 or members.size == 0:
        return [[] for _ in changes]
    order = np.argsort(known)
    known, known_platform = known[order], known_platform[order]
    at = np.searchsorted(known, members).clip(max=known.size - 1)
    found = known[at] == members
    event = np.repeat(np.arange(len(changes), dtype=np.int64), sizes)[found]
    platform_ids, platform_code = linking.distinct_inverse(known_platform[at[found]])
    width = max(int(platform_ids.size), 1)
    key = linking.distinct(event * width + platform_code)  # by event, then platform ascending
    flat = platform_ids[key % width].tolist()
    ends = np.cumsum(np.bincount(key // width, minlength=len(changes))).tolist()
    return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _insert_events(rows: Sequence[EventRow], now: datetime) -> None:
    """Insert cluster events: COPY on PostgreSQL (tens of thousands on a first build), else bulk_create."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        ClusterEvent.objects.bulk_create(
            [
                ClusterEvent(
                    cluster_id=cid,
                    kind=kind,
                    members_before=before,
                    members_after=after,
                    related=related,
                    platforms=platforms,
                    created_at=now,
                )
                for cid, kind, before, after, related, platforms in rows
            ],
            batch_size=2000,
        )
        return
    defaults = ClusterEvent(created_at=now)  # the model's defaults for the columns recluster does not set
    details = json.dumps(defaults.details)
    with (
        _pg_cursor() as cursor,
        cursor.copy(
            "COPY graph_clusterevent (cluster_id, kind, members_before, members_after, related, platforms,"
            " actor, details, created_at) FROM STDIN"
        ) as copy,
    ):
        text = _JsonTexts()
        for cid, kind, before, after, related, platforms in rows:
            copy.write_row(
                (
                    cid,
                    kind,
                    before,
                    after,
                    text(related),
                    text(platforms),
                    defaults.actor,
                    details,
                    now,
                )
            )


_STATE_FIELDS = (
    "size",
    "platform_count",
    "cross_platform",
    "risk",
    "risk_parts",
    "kinds",
    "changed_at",
    "status",
    "assignee_id",
    "notes",
    "dissolved_at",
)


def _state(row: ActorCluster) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in _STATE_FIELDS)


def _update_clusters(rows: list[ActorCluster]) -> None:
    """Write changed clusters. On PostgreSQL one UPDATE ... FROM unnest(...) (Django's bulk_update builds a
    CASE per row and field, which took seconds for a few thousand rows); elsewhere bulk_update."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        fields = [name.removesuffix("_id") for name in _STATE_FIELDS]
        ActorCluster.objects.bulk_update(rows, fields, batch_size=500)
        return
    columns = {name: [getattr(row, name) for row in rows] for name in _STATE_FIELDS}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE graph_actorcluster AS c SET size = v.size, platform_count = v.platform_count,
                   cross_platform = v.cross_platform, risk = v.risk, risk_parts = v.risk_parts::jsonb,
                   kinds = v.kinds::jsonb, changed_at = v.changed_at, status = v.status,
                   assignee_id = v.assignee_id, notes = v.notes, dissolved_at = v.dissolved_at
              FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::bool[], %s::int[], %s::text[], %s::text[],
                          %s::timestamptz[], %s::text[], %s::int[], %s::text[], %s::timestamptz[])
                   AS v(id, size, platform_count, cross_platform, risk, risk_parts, kinds, changed_at, status,
                        assignee_id, notes, dissolved_at)
             WHERE c.id = v.id
            """,
            [
                [row.pk for row in rows],
                columns["size"],
                columns["platform_count"],
                columns["cross_platform"],
                columns["risk"],
                [json.dumps(v) for v in columns["risk_parts"]],
                [json.dumps(v) for v in columns["kinds"]],
                columns["changed_at"],
                columns["status"],
                columns["assignee_id"],
                columns["notes"],
                columns["dissolved_at"],
            ],
        )


@observed_recluster
def recluster_full(
    progress: Progress | None = None,
    *,
    labeller: linking.ComponentLabeller = linking.component_labels,
    engine: str = "memory",
) -> ReclusterSummary:
    """Rebuild every cluster from the database (one transaction, one writer).

    ``labeller`` computes the connected components of the link graph (``engine`` names it in the summary):
    SciPy in memory by default, or `graph.linking.spark.SparkComponents` on a Spark cluster. Only the
    components move; the edges, the apply step, stable ids and events are the same whichever computes them.
    """
    say = progress or (lambda _: None)
    summary = ReclusterSummary("full", engine=engine)
    now = timezone.now()
    with _collector_paused(), transaction.atomic():
        locks.hold(locks.RECOMPUTATION)
        connection.ensure_connection()
        started = time.perf_counter()
        say("reading shared sightings")
        columns = _read_full(now, seller_facts=True)
        summary.sightings = len(columns)
        summary.seconds["read"] = time.perf_counter() - started
        say(f"linking {len(columns)} sightings ({engine} engine)")
        started = time.perf_counter()
        result = link_all(columns, now, _overrides(), labeller=labeller)
        summary.seconds["link"] = time.perf_counter() - started
        started = time.perf_counter()
        say(f"writing {len(result.clusters)} clusters")
        previous = _live_clusters()
        _apply(previous, result.clusters, now, summary, result.platform_hubs, columns)
        _sync_held(
            PendingMerge.objects.live().values_list("pk", flat=True), result.held, result.clusters, now
        )
        summary.sellers_in_scope = sum(len(c.members) for c in result.clusters)
        summary.seconds["write"] = time.perf_counter() - started
    logger.info(
        "event=recluster mode=full engine=%s sightings=%s clusters=%s",
        engine,
        summary.sightings,
        summary.clusters,
    )
    return summary


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (reference counting still frees what a recluster
    drops; any cycles wait for the next collection). A full recluster allocates hundreds of thousands of
    long-lived objects (member sets, facts, event rows), and each collection the allocations triggered traversed
    all of them: about 40% of the process's CPU at 5M sightings. Process-wide, like ``gc.disable`` itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def link_all(
    columns: Columns,
    now: datetime,
    overrides: dict[int, linking.Override],
    *,
    labeller: linking.ComponentLabeller = linking.component_labels,
) -> linking.Linkage:
    """Link the whole exchange's shared sightings with today's rules (what a full recluster computes; the
    threshold dry run of graph.tuning links what-if columns the same way)."""
    rule = hub_rule()
    return linking.link_columns(
        columns.seller,
        columns.indicator,
        columns.kind,
        platform=columns.platform,
        kinds=KINDS,
        strength=strengths(),
        thresholds=rule.thresholds,
        platform_divisor=rule.platform_divisor,
        overrides=overrides,
        fresh=_fresh(now, columns.seller, created=columns.created),
        labeller=labeller,
    )


def read_shared(now: datetime) -> Columns:
    """The linkable sightings of shared indicators (the full recluster's read)."""
    return _read_full(now)


def overrides() -> dict[int, linking.Override]:
    """Every analyst override of an indicator's linking, by indicator id."""
    return _overrides()


def _live_clusters(ids: Iterable[int] | None = None) -> dict[int, frozenset[int]]:
    if ids is None and connection.vendor == "postgresql":
        # Every membership (hundreds of thousands on a full recluster) as two binary arrays, grouped in numpy.
        with _pg_cursor() as cursor:
            cursor.execute(
                "SELECT array_agg(CAST(cluster_id AS BIGINT)), array_agg(CAST(seller_id AS BIGINT))"
                " FROM graph_clustermember",
                binary=True,
            )
            row = cursor.fetchone()
        assert row is not None  # an aggregate without GROUP BY: one row, NULLs when there is no member
        if row[0] is None:
            return {}
        order = np.lexsort((row[1], row[0]))
        cluster, seller = row[0][order], row[1][order]
        cuts = np.flatnonzero(cluster[1:] != cluster[:-1]) + 1
        starts = np.concatenate([[0], cuts]).tolist()
        ends = [*cuts.tolist(), int(cluster.size)]
        sellers = seller.tolist()
        return {
            cid: frozenset(sellers[a:b])
            for cid, a, b in zip(cluster[starts].tolist(), starts, ends, strict=True)
        }
    members: dict[int, set[int]] = defaultdict(set)
    query = (
        ClusterMember.objects.all() if ids is None else ClusterMember.objects.filter(cluster_id__in=list(ids))
    )
    for cluster_id, seller_id in query.values_list("cluster_id", "seller_id").iterator(chunk_size=20000):
        members[cluster_id].add(seller_id)
    return {k: frozenset(v) for k, v in members.items()}


@observed_recluster
def recluster_incremental(sellers: Iterable[int] = (), indicators: Iterable[int] = ()) -> ReclusterSummary:
    """Recompute only the clusters that the given sellers/indicators could change."""
    summary = ReclusterSummary("incremental")
    touched, touched_indicators = set(sellers), set(indicators)
    if not touched and not touched_indicators:
        return summary
    now = timezone.now()
    with transaction.atomic():
        locks.hold(locks.RECOMPUTATION)
        started = time.perf_counter()
        columns, inactive, previous, previous_held = _read_neighbourhood(touched, touched_indicators, now)
        summary.sightings = len(columns)
        summary.seconds["read"] = time.perf_counter() - started
        started = time.perf_counter()
        rule = hub_rule()
        result = linking.relink_columns(
            columns.seller,
            columns.indicator,
            columns.kind,
            platform=columns.platform,
            touched_sellers=touched,
            previous=previous,
            touched_indicators=touched_indicators,
            kinds=KINDS,
            strength=strengths(),
            thresholds=rule.thresholds,
            platform_divisor=rule.platform_divisor,
            overrides=_overrides(columns.indicator),
            inactive=inactive,
            fresh=_fresh(now, columns.seller),
            previous_held=previous_held,
        )
        summary.seconds["link"] = time.perf_counter() - started
        started = time.perf_counter()
        retired = {cid: previous[cid] for cid in result.retired}
        _apply(retired, result.clusters, now, summary, result.platform_hubs)
        _sync_held(result.retired_held, result.held, result.clusters, now)
        summary.sellers_in_scope = len(result.scope)
        summary.seconds["write"] = time.perf_counter() - started
    logger.info(
        "event=recluster mode=incremental touched=%s scope=%s clusters=%s",
        len(touched),
        summary.sellers_in_scope,
        summary.clusters,
    )
    return summary


def refresh_expired(now: datetime | None = None) -> ReclusterSummary:
    """Expiry happens by the clock, not by a request: recompute around members that stopped being linkable.
    (A held merge does not age out: it waits for a decision or a second platform, see `_fresh`.)"""
    now = now or timezone.now()
    stale = list(
        ClusterMember.objects.exclude(seller__in=Seller.objects.linkable(now)).values_list(
            "seller_id", flat=True
        )
    )
    return recluster_incremental(stale)
