"""Recomputing actor clusters from the database and persisting them (the Django side of `graph.linking`).

- `recluster_full()` reads every linkable sighting of a shared indicator, links, and replaces all clusters.
- `recluster_incremental(sellers, indicators)` loads only the neighbourhood of what changed (by a breadth-first
  walk in the database through indicators that link or may start/stop linking), relinks it with
  `graph.linking.relink_columns`, and replaces only the clusters it retires. Same result as a full run.
- Both create, update and close `PendingMerge` rows for the merges the linking core holds (one platform's
  fresh sellers alone joining other platforms' clusters) in the same transaction.

Both run in one transaction under a lock (a PostgreSQL advisory lock; SQLite serialises writers), so only one
recomputation writes at a time and a crash mid-way leaves the previous clusters intact. Stable identity and
events come from `graph.identity.assign_identities`.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from exchange.models import LINKABLE_SQL, Indicator, Linking, Seller, Sighting
from graph import linking
from graph.evidence import link_summary
from graph.identity import ClusterChange, assign_identities
from graph.metrics import observed_recluster
from graph.models import (
    ActorCluster,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    MergeState,
    PendingMerge,
    PendingMergeSeller,
)
from graph.risk import risk_score

logger = logging.getLogger("exchange.graph")

LOCK_KEY = 0x6578_6368  # pg_advisory_xact_lock key for "one recomputation writes at a time"
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


def _read_full(now: datetime) -> Columns:
    """Linkable sightings of indicators held by >= 2 linkable sellers (singletons never reach Python)."""
    # Indicator.holders (kept by ingest, indexed where >= 2) finds the few shared indicators without
    # touching the millions of single-holder ones; their sightings are joined with their sellers to drop
    # retracted and expired ones (the linking core drops indicators left with one linkable holder).
    sql = f"""
        SELECT CAST(s.seller_id AS BIGINT), CAST(s.indicator_id AS BIGINT), CAST({_kind_case()} AS INTEGER),
               CAST(sel.platform_id AS BIGINT)
          FROM exchange_indicator i
          JOIN exchange_sighting s ON s.indicator_id = i.id
          JOIN exchange_seller sel ON sel.id = s.seller_id
         WHERE i.holders >= 2 AND {LINKABLE_SQL.format(alias="sel")}
    """  # noqa: S608 - only constant kind names and the linkable rule are interpolated
    if connection.vendor == "postgresql":
        return _copy_columns(sql, [now])
    with connection.cursor() as cursor:
        cursor.execute(sql, [now])
        return Columns.from_rows(cursor.fetchall())


_ROW = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("seller", ">i8"),
        ("l2", ">i4"),
        ("indicator", ">i8"),
        ("l3", ">i4"),
        ("kind", ">i4"),
        ("l4", ">i4"),
        ("platform", ">i8"),
    ]
)


def _copy_columns(sql: str, params: list[Any]) -> Columns:
    """Binary COPY of (bigint, bigint, integer, bigint) rows straight into numpy: ~10x faster and far leaner than
    fetching Python tuples. COPY takes no server-side parameters, hence a client-binding cursor."""
    chunks: list[bytes] = []
    raw = connection.connection  # psycopg connection (Django has connected: the caller ran ensure_connection)
    with (
        psycopg.ClientCursor(raw) as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy,
    ):
        for data in copy:
            chunks.append(bytes(data))
    buffer = b"".join(chunks)
    # Header: 11-byte signature, int32 flags, int32 extension length (+ extension); trailer: int16 -1.
    extension = struct.unpack(">i", buffer[15:19])[0]
    body = memoryview(buffer)[19 + extension : len(buffer) - 2]
    rows = np.frombuffer(body, dtype=_ROW)
    return Columns(
        rows["seller"].astype(np.int64),
        rows["indicator"].astype(np.int64),
        rows["kind"].astype(np.int64),
        rows["platform"].astype(np.int64),
    )


def _select_by_ids(pg_sql: str, ids: Iterable[int]) -> list[tuple[Any, ...]] | None:
    """Run `pg_sql` (with one `= ANY(%s)` array parameter) on PostgreSQL with server-side binding, or
    return None elsewhere. Thousands of ids as one bound array instead of a rendered IN list."""
    if connection.vendor != "postgresql":
        return None
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(pg_sql, [sorted(set(ids))])
        return cursor.fetchall()


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
        linkable |= set(
            Seller.objects.linkable(now).filter(id__in=holder_ids | frontier).values_list("id", flat=True)
        )
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


def _fresh(now: datetime, among: Iterable[int] | None = None) -> set[int]:
    """Sellers whose bridges between other platforms' clusters are held (`graph.linking`, "Held merges").

    A seller is fresh for EXCHANGE_HELD_MERGE_DAYS after the exchange first received it (its own clock: a
    partner's `reported_at` could be backdated), unless an analyst approved a merge that held it; a seller
    held by a rejected or a still pending merge stays held whatever its age. The latest decision about a
    seller wins.
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
    wanted = None if among is None else sorted(set(among))
    fresh: set[int] = set()
    days = settings.EXCHANGE_HELD_MERGE_DAYS
    if days > 0:
        cutoff = now - timedelta(days=days)
        if wanted is None:
            fresh = set(Seller.objects.filter(created_at__gte=cutoff).values_list("id", flat=True))
        else:
            rows = _select_by_ids("SELECT id, created_at FROM exchange_seller WHERE id = ANY(%s)", wanted)
            if rows is None:
                rows = []
                for start in range(0, len(wanted), 5000):
                    rows.extend(
                        Seller.objects.filter(id__in=wanted[start : start + 5000]).values_list(
                            "id", "created_at"
                        )
                    )
            fresh = {pk for pk, created in rows if created >= cutoff}
    fresh |= {s for s, state in decided.items() if state == MergeState.REJECTED}
    fresh -= {s for s, state in decided.items() if state == MergeState.APPROVED}
    # A merge waiting for a decision stays held after the hold period: only an analyst's approval or a second
    # platform's link releases it, never the passage of time (an unreviewed glue must not land by default).
    fresh |= set(
        PendingMergeSeller.objects.filter(held=True, merge__state=MergeState.PENDING).values_list(
            "seller_id", flat=True
        )
    )
    return fresh if wanted is None else fresh & set(wanted)


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
    clusters: Sequence[linking.Cluster[int]], now: datetime, platform_hubs: frozenset[tuple[int, int]]
) -> dict[frozenset[int], ClusterFacts]:
    """Risk, platforms and linking kinds of each cluster (reads its members' sightings). A sighting of an
    indicator that its seller's platform alone holds too often links nothing (`platform_hubs`)."""
    members = sorted({m for c in clusters for m in c.members})
    seller_rows = _select_by_ids(
        "SELECT id, platform_id, status, reported_at FROM exchange_seller WHERE id = ANY(%s)", members
    )
    if seller_rows is None:
        seller_rows = []
        for start in range(0, len(members), 5000):
            seller_rows.extend(
                Seller.objects.filter(id__in=members[start : start + 5000]).values_list(
                    "id", "platform_id", "status", "reported_at"
                )
            )
    sellers: dict[int, tuple[int, str, datetime]] = {pk: (p, st, r) for pk, p, st, r in seller_rows}
    sightings: dict[int, list[linking.Sighting]] = defaultdict(list)
    # Only indicators someone else holds can link; a member's single-holder indicators are irrelevant here.
    for seller_id, indicator_id, kind, platform_id in _sightings_of("seller_id", members, shared_only=True):
        if (indicator_id, platform_id) in platform_hubs:
            continue
        sightings[seller_id].append(
            linking.Sighting(seller_id, sellers[seller_id][0], KINDS[kind], str(indicator_id))
        )
    facts: dict[frozenset[int], ClusterFacts] = {}
    for cluster in clusters:
        rows = [s for m in cluster.members for s in sightings[m]]
        suppressed = {(s.kind, str(s.indicator)) for s in cluster.suppressed}
        strong, weak, kinds = link_summary(rows, suppressed=suppressed)
        info = [sellers[m] for m in cluster.members]
        platforms = len({p for p, _, _ in info})
        score = risk_score(
            platforms=platforms,
            confirmed=sum(1 for _, st, _ in info if st == "confirmed"),
            suspected=sum(1 for _, st, _ in info if st != "confirmed"),
            strong_links=strong,
            weak_links=weak,
            last_reported=max(r for _, _, r in info),
            now=now,
        )
        facts[cluster.member_set] = ClusterFacts(
            len(cluster.members), platforms, score.total, score.parts, kinds
        )
    return facts


def _most_advanced(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: STATUS_ORDER.index(ClusterStatus(s)), default=ClusterStatus.NEW)


def _apply(
    previous: dict[int, frozenset[int]],
    clusters: Sequence[linking.Cluster[int]],
    now: datetime,
    summary: ReclusterSummary,
    platform_hubs: Iterable[tuple[int, int]] = (),
) -> None:
    """Replace the `previous` clusters by `clusters`, keeping ids by largest overlap, recording events."""
    placeholders = itertools.count(-1, -1)
    assigned, changes = assign_identities(
        previous, [c.member_set for c in clusters], lambda: next(placeholders)
    )
    facts = _facts(clusters, now, frozenset(platform_hubs))
    old = ActorCluster.objects.in_bulk(list(previous))
    involved = {m for ms in previous.values() for m in ms} | {m for c in clusters for m in c.members}
    platform_rows = _select_by_ids("SELECT id, platform_id FROM exchange_seller WHERE id = ANY(%s)", involved)
    if platform_rows is None:
        platform_rows = list(Seller.objects.filter(id__in=involved).values_list("id", "platform_id"))
    platform_of = dict(platform_rows)

    inherit = _inheritance(changes, assigned, old)
    created: dict[int, ActorCluster] = {}
    changed: list[ActorCluster] = []
    for members, cid in sorted(assigned.items(), key=lambda item: item[1]):
        f = facts[members]
        row = old[cid] if cid >= 0 else ActorCluster(created_at=now, changed_at=now)
        before = _state(row)
        row.size, row.platform_count, row.cross_platform = f.size, f.platform_count, f.platform_count >= 2
        row.risk, row.risk_parts, row.kinds = f.risk, f.risk_parts, f.kinds
        if cid >= 0 and previous[cid] != members:
            row.changed_at = now
        _carry_analyst_work(row, [old[s] for s in inherit.get(cid, []) if s in old and s != cid])
        if cid < 0:
            created[cid] = row
        elif _state(row) != before:
            changed.append(row)
    ActorCluster.objects.bulk_create(list(created.values()), batch_size=2000)
    real = {cid: (created[cid].pk if cid < 0 else cid) for cid in assigned.values()}
    for cid in previous:
        if cid not in real.values():
            row = old[cid]
            row.dissolved_at, row.size, row.changed_at = now, 0, now
            changed.append(row)
    _update_clusters(changed)
    _write_memberships(previous, assigned, real, now)
    ClusterEvent.objects.bulk_create(_events(changes, real, platform_of, now, summary), batch_size=2000)
    summary.clusters = len(clusters)
    summary.cross_platform = sum(1 for f in facts.values() if f.platform_count >= 2)


def _inheritance(
    changes: Sequence[ClusterChange], assigned: Mapping[frozenset[int], int], old: Mapping[int, ActorCluster]
) -> dict[int, list[int]]:
    """{cluster id: the earlier clusters whose analyst work it inherits}: a split's pieces inherit the
    parent; a merge inherits every cluster merged into it."""
    inherit: dict[int, list[int]] = defaultdict(list)
    for change in changes:
        if change.kind == "created":
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
    notes += [f"[from cluster {s.pk}] {s.notes}" for s in sources if s.notes and s.notes not in row.notes]
    row.notes = "\n\n".join(notes)


def _write_memberships(
    previous: Mapping[int, frozenset[int]],
    assigned: Mapping[frozenset[int], int],
    real: Mapping[int, int],
    now: datetime,
) -> None:
    """Membership: delete what moved or left, insert what arrived."""
    wanted = {m: real[cid] for members, cid in assigned.items() for m in members}
    had = {m: cid for cid, members in previous.items() for m in members}
    leaving = sorted(m for m, cid in had.items() if wanted.get(m) != cid)
    arriving = sorted((m, cid) for m, cid in wanted.items() if had.get(m) != cid)
    if connection.vendor == "postgresql":
        # Set-based: tens of thousands of memberships on a first build (bulk_create managed ~11k rows/s).
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute("DELETE FROM graph_clustermember WHERE seller_id = ANY(%s)", [leaving])
            cursor.execute(
                "INSERT INTO graph_clustermember (seller_id, cluster_id, joined_at)"
                " SELECT s, c, %s FROM unnest(%s::bigint[], %s::bigint[]) AS u(s, c)",
                [now, [m for m, _ in arriving], [c for _, c in arriving]],
            )
    else:
        for start in range(0, len(leaving), 5000):
            ClusterMember.objects.filter(seller_id__in=leaving[start : start + 5000]).delete()
        ClusterMember.objects.bulk_create(
            [ClusterMember(cluster_id=cid, seller_id=m, joined_at=now) for m, cid in arriving],
            batch_size=5000,
        )


def _events(
    changes: Sequence[ClusterChange],
    real: Mapping[int, int],
    platform_of: Mapping[int, int],
    now: datetime,
    summary: ReclusterSummary,
) -> list[ClusterEvent]:
    """One event per identity change, on the clusters' real ids, naming the platforms involved."""
    events = []
    for change in changes:
        moved = (change.members_after - change.members_before) | (
            change.members_before - change.members_after
        )
        events.append(
            ClusterEvent(
                cluster_id=real.get(change.cluster_id, change.cluster_id),
                kind=change.kind,
                members_before=len(change.members_before),
                members_after=len(change.members_after),
                related=[real.get(r, r) for r in change.related],
                platforms=sorted({platform_of[m] for m in moved | change.members_after if m in platform_of}),
                created_at=now,
            )
        )
        summary.events[change.kind] = summary.events.get(change.kind, 0) + 1
    return events


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


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


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
    with transaction.atomic():
        _lock()
        connection.ensure_connection()
        started = time.perf_counter()
        say("reading shared sightings")
        columns = _read_full(now)
        summary.sightings = len(columns)
        summary.seconds["read"] = time.perf_counter() - started
        say(f"linking {len(columns)} sightings ({engine} engine)")
        started = time.perf_counter()
        rule = hub_rule()
        result = linking.link_columns(
            columns.seller,
            columns.indicator,
            columns.kind,
            platform=columns.platform,
            kinds=KINDS,
            thresholds=rule.thresholds,
            platform_divisor=rule.platform_divisor,
            overrides=_overrides(),
            fresh=_fresh(now),
            labeller=labeller,
        )
        summary.seconds["link"] = time.perf_counter() - started
        started = time.perf_counter()
        say(f"writing {len(result.clusters)} clusters")
        previous = _live_clusters()
        _apply(previous, result.clusters, now, summary, result.platform_hubs)
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


def _live_clusters(ids: Iterable[int] | None = None) -> dict[int, frozenset[int]]:
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
        _lock()
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
            thresholds=rule.thresholds,
            platform_divisor=rule.platform_divisor,
            overrides=_overrides(columns.indicator),
            inactive=inactive,
            fresh=_fresh(now, np.unique(columns.seller).tolist()),
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
