"""Items of the similarity kinds stored, and grouped into near-duplicate groups (exchange.matching says how
each kind is compared; this module is the one place they are stored, searched and grouped).

A partner sends, per item, its wire form (a product photo: the PDQ hash with its quality and sub-crop hashes,
never the photo; exchange.contract). Items are not keyed: matching is by score (a photo's Hamming distance,
at most `EXCHANGE_IMAGE_MATCH_THRESHOLD` bits).

Groups. Every stored item belongs to one near-duplicate group, and each group is one `Indicator` of the
item's kind (an opaque random token, nothing of the items in it): a seller reported with an item gets a
`Sighting` of its group. So the linking core, hub counting (a brand's own product shot is a hub like a
forwarder's address), marking a group common, the evidence chain and the reports treat a group like any
indicator. A new item joins the group of the stored items it matches; when it matches items of several
groups, they merge into the oldest (their sightings move; a group marked common keeps the merged group
common), and the sellers of the merged groups are recomputed. Groups are the connected components of the
"matches" graph, built up one item at a time: two items of one group may be further apart than the threshold
through an item between them, exactly as two sellers are linked through a third. Names and addresses
(`Matcher.transitive` false) group around centres instead (exchange.matching.centre_labels), and two of their
items in different groups that match each other at the kind's direct threshold are a *direct match*
(`SimilarMatch`, exchange.matching.direct_matches): one more indicator of the kind, held by both items' sellers.

Search. A new item's candidates are the stored items sharing one of its matcher's integer keys: each process
keeps, per kind, an in-memory index of the stored items' keys and packed rows (`_KindIndex`, built from
`SimilarItem` on first use and then reading only the rows added since), so neither a lookup nor a submission
scans, and a photo is matched in memory against millions of hashes; the matched rows are then read and scored
again as stored. Grouping takes a transaction-level lock on PostgreSQL, so two submissions with copies of one
item cannot both start a group; SQLite serialises writers anyway. Memory: about 166 bytes per stored photo hash
(its 32 bytes, 16 chunk keys of 8 bytes), held by each process that matches photos (docs/scaling.md).

`store_items` is the one writer, called by `exchange.ingest` inside the submission's transaction.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, connections, router
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from exchange import locks
from exchange.contract import DOCUMENT_KIND, FUZZY_WIRE_KINDS, IMAGE_KIND
from exchange.key_index import KeyIndex
from exchange.matching import (
    CENTRE_DEPTH,
    MATCHERS,
    Item,
    Matcher,
    Probes,
    best_centre,
    direct_threshold,
    kept_direct_matches,
    lead_mask,
    matching_pairs,
    nearest_scores,
    pair_scores,
)
from exchange.models import (
    Indicator,
    Linking,
    MatchThreshold,
    SellerItem,
    Sighting,
    SimilarItem,
    SimilarMatch,
)

logger = logging.getLogger("exchange.similarity")

# The settings that hold each kind's match threshold (the fuzzy kinds': one per-kind mapping).
THRESHOLD_SETTINGS = {
    IMAGE_KIND: "EXCHANGE_IMAGE_MATCH_THRESHOLD",
    DOCUMENT_KIND: "EXCHANGE_DOCUMENT_MATCH_THRESHOLD",
    **dict.fromkeys(FUZZY_WIRE_KINDS, "EXCHANGE_FUZZY_MATCH_THRESHOLDS"),
}
assert set(THRESHOLD_SETTINGS) == set(MATCHERS)


def configured_threshold(kind: str) -> float:
    """The kind's threshold from the settings (what applies until an analyst sets one)."""
    value = getattr(settings, THRESHOLD_SETTINGS[kind])
    return float(value[kind] if isinstance(value, dict) else value)


def thresholds() -> dict[str, float]:
    """Every similarity kind's match threshold: an analyst's (MatchThreshold, set through graph.tuning after a
    dry run) or else the setting's. One query."""
    with connections[router.db_for_read(MatchThreshold)].cursor() as cursor:  # raw: every lookup runs it
        cursor.execute("SELECT kind, value FROM exchange_matchthreshold")
        chosen = dict(cursor.fetchall())
    return {kind: float(chosen.get(kind, configured_threshold(kind))) for kind in MATCHERS}


def threshold(kind: str) -> float:
    return thresholds()[kind]


def matcher(kind: str) -> Matcher:
    return MATCHERS[kind]


@dataclass
class ItemsStored:
    sightings_created: int = 0
    groups: int = 0  # distinct groups the batch's items are in
    # Sellers to recompute beyond the batch's: those of merged groups, and of stored items in new direct matches.
    touched_sellers: set[int] = field(default_factory=set)


def new_group_token() -> str:
    """A group's token: random, so it says nothing about its items (64 hex, like keyed tokens)."""
    return secrets.token_hex(32)


def _as_item(row: SimilarItem) -> Item:
    return Item(row.kind, row.value, row.extra)


def matching_items(item: Item, limits: dict[str, float] | None = None) -> list[tuple[int, int, float]]:
    """(stored item id, its group id, score) of every stored item of the kind that matches `item`, at `limits`
    (the current `thresholds()` unless given)."""
    limits = thresholds() if limits is None else limits
    [found] = _stored_matches([item], limits)
    return found


def matching_group_tokens(items: Sequence[Item], limits: dict[str, float] | None = None) -> list[list[str]]:
    """Per item, the tokens of the near-duplicate groups it matches (a lookup: nothing is stored), in group
    order. The items are searched together: one refresh and one read of matched rows per kind, one read of
    the groups' tokens, however many photos a lookup holds."""
    limits = thresholds() if limits is None else limits
    groups = [sorted({group_id for _, group_id, _ in found}) for found in _stored_matches(items, limits)]
    wanted = sorted({group for item_groups in groups for group in item_groups})
    token = dict(Indicator.objects.filter(pk__in=wanted).values_list("pk", "token")) if wanted else {}
    return [[token[group] for group in item_groups if group in token] for item_groups in groups]


def _stored_matches(
    items: Sequence[Item], limits: dict[str, float], probes: dict[str, Probes] | None = None
) -> list[list[tuple[int, int, float]]]:
    """Per item, (stored item id, group id, score) of the stored items of its kind it matches: candidates and
    scores from the in-memory index, then one read of the matched rows' groups (an item deleted since the
    index read it cannot match; items never change in place, so the index's copy scores as the row would)."""
    found: list[list[tuple[int, int, float]]] = [[] for _ in items]
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_kind[item.kind].append(i)
    proposed: dict[int, list[tuple[int, float]]] = {}
    for kind, rows in sorted(by_kind.items()):
        index = _index(kind)
        with index.lock:
            index.refresh()
            found_ids = index.matches([items[i] for i in rows], limits[kind], (probes or {}).get(kind))
            for i, ids in zip(rows, found_ids, strict=True):
                proposed[i] = ids
    group_of = _groups_of(sorted({pk for ids in proposed.values() for pk, _ in ids}))
    for i, ids in proposed.items():
        found[i] = [(pk, group_of[pk], score) for pk, score in ids if pk in group_of]
    return found


def _groups_of(ids: list[int]) -> dict[int, int]:
    """The group of each of the item ids that are still stored."""
    if connection.vendor != "postgresql":
        groups: dict[int, int] = {}
        for start in range(0, len(ids), 20_000):
            groups.update(
                SimilarItem.objects.filter(pk__in=ids[start : start + 20_000]).values_list("pk", "group_id")
            )
        return groups
    with psycopg.Cursor(connection.connection) as cursor:  # the ids as one binary array
        cursor.execute("SELECT id, group_id FROM exchange_similaritem WHERE id = ANY(%b::bigint[])", [ids])
        return dict(cursor.fetchall())


# --- the in-memory index -----------------------------------------------------------------------------------------


class _KindIndex:
    """One kind's stored items in this process's memory: their ids, their packed rows (`Matcher.pack`) and a
    `KeyIndex` of their index keys, read from `SimilarItem` once and then only the rows added since
    (`refresh`: items are never changed in place, and their ids grow; a highest id lower than the last one read
    means rows this process read were rolled back, and the index is read again)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rule = matcher(kind)
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.watermark = 0
        self.keys = KeyIndex(self.rule.key_dtype, self.rule.key_space)
        self._ids: list[np.ndarray] = []  # per item: its SimilarItem id
        self._item_of: list[np.ndarray] = []  # per unit: its item's position
        self._units: list[np.ndarray] = []  # per unit: its packed row
        self.size = 0  # items
        self.unit_count = 0
        self._leads: np.ndarray | None = None

    def refresh(self, progress: Callable[[int], None] | None = None) -> None:
        """Read the rows added since the last refresh (all of them the first time); `progress` is told the
        number of items held after each chunk read (a long first build can keep a watchdog fed)."""
        # Raw SQL, where the ORM would read (every lookup and submission runs it: compiling the ORM's
        # aggregate cost 0.44 ms of CPU, five times the query).
        with connections[router.db_for_read(SimilarItem)].cursor() as cursor:
            cursor.execute("SELECT max(id) FROM exchange_similaritem WHERE kind = %s", [self.kind])
            top = cursor.fetchone()[0] or 0
        if top < self.watermark:
            self.reset()
        if top == self.watermark:
            return
        rows = (
            SimilarItem.objects.filter(kind=self.kind, pk__gt=self.watermark, pk__lte=top)
            .order_by("pk")
            .values_list("pk", "value", "extra")
        )
        batch: list[tuple[int, str, Any]] = []
        for row in rows.iterator(chunk_size=_READ_CHUNK):
            batch.append(row)
            if len(batch) == _READ_CHUNK:
                self._add(batch)
                batch = []
                if progress is not None:
                    progress(self.size)
        self._add(batch)
        self.watermark = top

    def _add(self, rows: list[tuple[int, str, Any]]) -> None:
        if not rows:
            return
        items = [Item(self.kind, value, extra) for _, value, extra in rows]
        item_of, units = self.rule.units(items)
        unit_rows, keys = self.rule.key_arrays(items, (item_of, units))
        self._ids.append(np.fromiter((pk for pk, _, _ in rows), dtype=np.int64, count=len(rows)))
        self._item_of.append((item_of + self.size).astype(np.int32))
        self._units.append(units)
        self.keys.add(unit_rows + self.unit_count, keys)
        self.size += len(rows)
        self.unit_count += len(units)
        self._leads = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item ids, the item position of each unit, the packed units), joined once after additions."""
        if len(self._ids) > 1:
            self._ids = [np.concatenate(self._ids)]
            self._item_of = [np.concatenate(self._item_of)]
            self._units = [np.concatenate(self._units)]
        if not self._ids:
            _, empty = self.rule.units([])
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), empty
        return self._ids[0], self._item_of[0], self._units[0]

    def leads(self) -> np.ndarray:
        """The positions of the stored items' leads (each item's first unit), kept until items are added."""
        if self._leads is None:
            _, item_of, _ = self.arrays()
            self._leads = np.flatnonzero(lead_mask(item_of))
        return self._leads

    def nbytes(self) -> int:
        ids, item_of, units = self.arrays()
        return int(ids.nbytes + item_of.nbytes + units.nbytes + self.keys.nbytes())

    def matches(
        self, items: Sequence[Item], limit: float, probes: Probes | None = None
    ) -> list[list[tuple[int, float]]]:
        """Per item, (id, score) of the stored items it matches at `limit`, as this index holds them."""
        ids, item_of, stored = self.arrays()
        probes = probes or Probes(self.rule, items, limit)
        pairs = probes.stored_pairs(self.keys, stored, self.leads())
        mine, theirs, scores = nearest_scores(
            self.rule, pairs, (probes.item_of, probes.units), (item_of, stored)
        )
        out: list[list[tuple[int, float]]] = [[] for _ in items]
        for row, pk, score in zip(mine.tolist(), ids[theirs].tolist(), scores.tolist(), strict=True):
            out[row].append((pk, score))
        return out


_READ_CHUNK = 20_000
_INDEXES: dict[tuple[str, str], _KindIndex] = {}
_INDEXES_LOCK = threading.Lock()


def _index(kind: str) -> _KindIndex:
    key = (str(connection.settings_dict.get("NAME")), kind)
    with _INDEXES_LOCK:
        if key not in _INDEXES:
            _INDEXES[key] = _KindIndex(kind)
        return _INDEXES[key]


@dataclass(frozen=True, slots=True)
class IndexSize:
    items: int
    keys: int
    bytes: int  # held by the index's arrays


def warm_index(kind: str, progress: Callable[[int], None] | None = None) -> IndexSize:
    """Build (or bring up to date) this process's in-memory index of `kind`, e.g. when a worker starts
    (gunicorn_config.py's post_worker_init), so that the first request does not pay for reading every stored
    item; `progress` is told the items held after each chunk read. Returns its size."""
    index = _index(kind)
    with index.lock:
        index.refresh(progress)
        index.keys.compact()  # no tail left to sort at the first probe
        index.rule.prepare()  # photos: the compiled probe, loaded from numba's cache or compiled
        return IndexSize(index.size, len(index.keys), index.nbytes())


def warm_all_indexes(progress: Callable[[int], None] | None = None) -> dict[str, IndexSize]:
    """`warm_index` for every similarity kind that has stored items; logs each index's size."""
    sizes = {}
    for kind in sorted(MATCHERS):
        if not SimilarItem.objects.filter(kind=kind).exists():  # the (kind, value) index: no scan
            continue
        sizes[kind] = size = warm_index(kind, progress)
        logger.info(
            "event=similarity_index_warm kind=%s items=%s keys=%s bytes=%s",
            kind,
            size.items,
            size.keys,
            size.bytes,
        )
    return sizes


def forget_indexes() -> None:
    """Drop this process's in-memory indexes (tests, whose transactions roll back, start each from nothing)."""
    with _INDEXES_LOCK:
        _INDEXES.clear()


class _Components:
    """Union-find over ("g", group id) and ("n", new item index) nodes."""

    def __init__(self) -> None:
        self.parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(self, node: tuple[str, int]) -> tuple[str, int]:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: tuple[str, int], b: tuple[str, int]) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# A direct match's two ends: ("s", a stored item's id) or ("n", a new item's position in the batch).
_End = tuple[str, int]


def _group_new_items(
    new: list[Item], version: int, first: list[datetime], now: datetime, result: ItemsStored
) -> tuple[list[int], list[tuple[_End, _End, float]]]:
    """The group of each new item: the stored items it matches (the in-memory index, then one read of the
    matched rows) and the batch's other new items it matches decide; groups a new item bridges are merged, and
    the items matching nothing stored start groups (created in one statement). Returns the group ids in
    `new`'s order, and the direct matches of the new items of kinds grouped around centres (older end, newer
    end, score: `exchange.matching.direct_matches`)."""
    limits = thresholds()
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(new):
        by_kind[item.kind].append(i)
    probes = {  # in _stored_matches' order: the kinds' items as they come in `new`
        kind: Probes(matcher(kind), [new[i] for i in rows], limits[kind]) for kind, rows in by_kind.items()
    }
    parts = _Components()
    stored = _stored_matches(new, limits, probes)
    for i, found in enumerate(stored):
        parts.find(("n", i))
        if matcher(new[i].kind).transitive:
            for _, group_id, _ in found:
                parts.union(("n", i), ("g", group_id))
    own: dict[str, tuple[list[tuple[int, int]], list[float]]] = {}  # kinds around centres: their own pairs
    for kind, rows in by_kind.items():  # the batch's own items, through a throwaway index of their keys
        rule = matcher(kind)
        pairs = matching_pairs(rule, [new[i] for i in rows], limits[kind], probes[kind])
        if rule.transitive:
            for a, b in pairs:
                parts.union(("n", rows[a]), ("n", rows[b]))
        else:
            scores = pair_scores(rule, [new[i] for i in rows], pairs)
            own[kind] = (pairs, scores)
            for position, target in _around_centres(
                rule, [new[i] for i in rows], rows, pairs, scores, stored, limits[kind]
            ).items():
                parts.union(("n", rows[position]), target)
    members: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for node in list(parts.parent):
        members[parts.find(node)].append(node)
    group_of_root: dict[tuple[str, int], int] = {}
    starting: list[tuple[tuple[str, int], NewGroup]] = []  # new groups, created in one statement
    for root, nodes in sorted(members.items()):
        groups = sorted(n for tag, n in nodes if tag == "g")
        if groups:
            if len(groups) > 1:
                result.touched_sellers |= merge_groups(groups[0], groups[1:], now)
            group_of_root[root] = groups[0]
        else:
            starters = sorted(n for tag, n in nodes if tag == "n")
            group = NewGroup(
                new[starters[0]].kind, new_group_token(), version, min(first[n] for n in starters)
            )
            starting.append((root, group))
    for (root, _), pk in zip(starting, _create_groups([g for _, g in starting]), strict=True):
        group_of_root[root] = pk
    groups = [group_of_root[parts.find(("n", i))] for i in range(len(new))]
    direct: list[tuple[_End, _End, float]] = []
    for kind, (pairs, scores) in sorted(own.items()):
        rule, rows = matcher(kind), by_kind[kind]
        limit = direct_threshold(rule, limits[kind])
        # Each new item's direct matches with the items before it, as (score, age, match): stored items (older
        # than the batch's, in id order), then the batch's earlier items; it keeps the nearest few
        # (`kept_direct_matches`, as the model's `direct_matches`).
        options: dict[int, list[tuple[float, tuple[int, int], tuple[_End, _End, float]]]] = {
            i: [
                (score, (0, pk), (("s", pk), ("n", i), score))
                for pk, group_id, score in stored[i]
                if group_id != groups[i] and rule.matches(score, limit)
            ]
            for i in rows
        }
        for (a, b), score in zip(pairs, scores, strict=True):
            if groups[rows[a]] != groups[rows[b]] and rule.matches(score, limit):
                options[rows[a]].append((score, (1, rows[b]), (("n", rows[b]), ("n", rows[a]), score)))
        for i in rows:
            direct += kept_direct_matches(options[i], rule.closer_is_lower)
    return groups, direct


def _around_centres(
    rule: Matcher,
    items: list[Item],
    rows: list[int],
    pairs: list[tuple[int, int]],
    scores: list[float],
    stored: list[list[tuple[int, int, float]]],
    limit: float,
) -> dict[int, tuple[str, int]]:
    """Groups around centres (`Matcher.transitive` false) for a batch's new items of one kind (`items`, at
    `rows`, their positions in the batch, oldest first), as `exchange.matching.centre_labels` forms them: an
    item joins the group of the centre it matches best (a group's centre is its first item), stored or one of
    the batch's new centres, the oldest of equally near ones (stored items are older than the batch's); failing
    that, the group of the member of depth 1 it matches best (a stored item matching its group's centre at
    `limit`, or one of the batch's items that joined a centre); or it is a centre. Returns, per position in
    `rows` that joins something, what it joins: ("g", group id) or ("n", the centre's position in the batch)."""
    groups = {group_id for i in rows for _, group_id, _ in stored[i]}
    centre_of = dict(
        SimilarItem.objects.filter(group_id__in=sorted(groups))
        .values("group_id")
        .annotate(centre=Min("pk"))
        .values_list("group_id", "centre")
    )
    depth_of = _stored_depths(rule, [stored[i] for i in rows], centre_of, limit)
    earlier: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for (a, b), score in zip(pairs, scores, strict=True):
        earlier[a].append((b, score))
    joins: dict[int, tuple[str, int]] = {}
    depth: dict[int, int] = {}  # the batch's positions: 0 a centre, else the step it joined at
    for position, i in enumerate(rows):
        for step in range(1, CENTRE_DEPTH + 1):
            # (score, age: stored items by id before the batch's by position, what joining means)
            options: list[tuple[float, tuple[int, int], tuple[str, int]]] = [
                (score, (0, pk), ("g", group_id))
                for pk, group_id, score in stored[i]
                if depth_of.get(pk) == step - 1
            ]
            options += [
                (score, (1, b), joins.get(b, ("n", rows[b])))
                for b, score in earlier.get(position, ())
                if depth[b] == step - 1
            ]
            choice = best_centre(options, rule.closer_is_lower)
            if choice is not None:
                joins[position], depth[position] = choice, step
                break
        else:
            depth[position] = 0
    return joins


def _stored_depths(
    rule: Matcher, matches: list[list[tuple[int, int, float]]], centre_of: dict[int, int], limit: float
) -> dict[int, int]:
    """Stored item id -> 0 for a centre, 1 for an item matching its group's centre at `limit`, of the stored
    items in `matches` (per new item, what it matches); the others, two steps out, are left out. An item's
    depth is only needed when it matched no centre, so the rest are read and scored then, in one query."""
    depths = {pk: 0 for found in matches for pk, group_id, _ in found if centre_of.get(group_id) == pk}
    wanted = {
        (pk, centre_of[group_id])
        for found in matches
        if not any(pk in depths for pk, _, _ in found)
        for pk, group_id, _ in found
        if group_id in centre_of
    }
    if not wanted:
        return depths
    values = {
        row.pk: _as_item(row)
        for row in SimilarItem.objects.filter(pk__in=sorted({x for pair in wanted for x in pair}))
    }
    for pk, centre in sorted(wanted):
        if pk in values and centre in values and rule.matches(rule.score(values[pk], values[centre]), limit):
            depths[pk] = 1
    return depths


def store_items(rows: Sequence[tuple[int, datetime, Item]], version: int, now: datetime) -> ItemsStored:
    """Store (seller id, reported at, item) rows of one submission: each item in its group, each seller's
    sighting of the group and its item. Call inside the submission's transaction."""
    result = ItemsStored()
    if not rows:
        return result
    locks.hold(locks.GROUPING)
    distinct: dict[tuple[str, str], Item] = {}
    first_reported: dict[tuple[str, str], datetime] = {}
    for _, reported_at, item in rows:
        key = (item.kind, item.value)
        distinct.setdefault(key, item)
        first_reported[key] = min(reported_at, first_reported.get(key, reported_at))
    stored: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, value) -> (item id, group id)
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in distinct:
        by_kind[kind].append(value)
    stored.update(_stored_items(by_kind))
    new_keys = sorted(set(distinct) - set(stored))
    new = [distinct[key] for key in new_keys]
    groups, direct = _group_new_items(new, version, [first_reported[key] for key in new_keys], now, result)
    if result.touched_sellers:  # merged groups: stored items of the batch may have moved
        stored.update(_stored_items(by_kind))
    new_ids = _insert_items(new, groups, now)
    for key, pk, group_id in zip(new_keys, new_ids, groups, strict=True):
        stored[key] = (pk, group_id)
    fresh = create_direct_matches(
        [
            (pk_a if end_a == "s" else new_ids[pk_a], new_ids[i_b], score, new[i_b].kind)
            for (end_a, pk_a), (_, i_b), score in direct
        ],
        version,
        now,
    )
    wanted = [(seller_id, stored[(i.kind, i.value)], at) for seller_id, at, i in rows]
    links = [(seller_id, pk, at) for seller_id, (pk, _), at in wanted]
    _link_sellers(links)
    match_rows, matches_touched = _direct_match_sightings(
        [link for link, (_, _, i) in zip(links, rows, strict=True) if not matcher(i.kind).transitive],
        set(fresh),
    )
    result.sightings_created = _sightings(
        [(seller_id, group_id, at) for seller_id, (_, group_id), at in wanted] + match_rows
    )
    result.touched_sellers |= {seller_id for seller_id, _, _ in match_rows} - {s for s, _, _ in rows}
    groups_touched = {group_id for _, (_, group_id), _ in wanted}
    recount(groups_touched | matches_touched)
    result.groups = len(groups_touched)
    logger.info(
        "event=similar_items_stored items=%s new=%s groups=%s merged_sellers=%s",
        len(distinct),
        len(new),
        result.groups,
        len(result.touched_sellers),
    )
    return result


def create_direct_matches(found: list[tuple[int, int, float, str]], version: int, now: datetime) -> list[int]:
    """Store new direct matches, (older item id, newer item id, score, kind) each: an indicator of the kind (a
    random token, like a group's) and its `SimilarMatch`. Returns the new indicators' ids in order."""
    if not found:
        return []
    ids = _create_groups(
        [
            NewGroup(kind=kind, token=new_group_token(), key_version=version, first_seen=now)
            for *_, kind in found
        ]
    )
    SimilarMatch.objects.bulk_create(
        SimilarMatch(indicator_id=pk, older_id=older, newer_id=newer, score=score)
        for pk, (older, newer, score, _) in zip(ids, found, strict=True)
    )
    return ids


def _direct_match_sightings(
    batch: list[tuple[int, int, datetime]], fresh: set[int]
) -> tuple[list[tuple[int, int, datetime]], set[int]]:
    """Sightings of direct matches: a seller the batch reports with an item (`batch`: seller id, item id,
    reported at, of the kinds grouped around centres) sees every direct match of the item, and every seller of
    either item of a new match (`fresh`: their indicator ids) sees it, first seen when reported with the item.
    Returns (seller id, indicator id, at) rows for `_sightings`, and the direct matches touched."""
    items = sorted({item for _, item, _ in batch})
    matches_of: dict[int, set[int]] = defaultdict(set)
    ends: dict[int, tuple[int, int]] = {}
    for start in range(0, len(items), 5_000):
        chunk = items[start : start + 5_000]
        for indicator_id, older, newer in SimilarMatch.objects.filter(
            Q(older_id__in=chunk) | Q(newer_id__in=chunk)
        ).values_list("indicator_id", "older_id", "newer_id"):
            matches_of[older].add(indicator_id)
            matches_of[newer].add(indicator_id)
            ends[indicator_id] = (older, newer)
    out = [(seller, match, at) for seller, item, at in batch for match in sorted(matches_of.get(item, ()))]
    fresh_items = sorted({item for match in fresh for item in ends[match]})
    for start in range(0, len(fresh_items), 5_000):
        for seller, item, seen in SellerItem.objects.filter(
            item_id__in=fresh_items[start : start + 5_000]
        ).values_list("seller_id", "item_id", "first_seen"):
            out += [(seller, match, seen) for match in sorted(matches_of[item] & fresh)]
    return out, set(ends)


# On PostgreSQL a submission's items, their sellers' links and sightings are each one INSERT from binary arrays
# (server-side binding): the ORM's bulk_create rendered every value, a photo's 18 crop hashes included, as a
# literal in the statement's text, about a second of the 5,000-photo submission's CPU.


def _stored_items(values_by_kind: Mapping[str, list[str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(kind, value) -> (item id, group id) of the given values that are stored."""
    stored = {}
    for kind, values in sorted(values_by_kind.items()):
        if connection.vendor == "postgresql":  # the values as one binary array, not 5,000 parameters
            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(
                    "SELECT id, value, group_id FROM exchange_similaritem WHERE kind = %b AND value = ANY(%b::text[])",
                    [kind, sorted(values)],
                )
                rows = cursor.fetchall()
        else:
            rows = list(
                SimilarItem.objects.filter(kind=kind, value__in=sorted(values)).values_list(
                    "pk", "value", "group_id"
                )
            )
        for pk, value, group_id in rows:
            stored[(kind, value)] = (pk, group_id)
    return stored


class NewGroup(NamedTuple):
    """A group to create: an indicator of the kind, the rest of its fields as the model's defaults (a plain
    tuple: a submission creates thousands, and a model instance costs its signals)."""

    kind: str
    token: str
    key_version: int
    first_seen: datetime


def _create_groups(groups: list[NewGroup]) -> list[int]:
    """Create the new groups; their ids in order."""
    if connection.vendor != "postgresql":
        return [group.pk for group in Indicator.objects.bulk_create(Indicator(**g._asdict()) for g in groups)]
    if not groups:
        return []
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            """
            INSERT INTO exchange_indicator (kind, token, key_version, first_seen, linking, linking_reason,
                                            linking_changed_by, holders)
            SELECT k, t, v, f, %b, '', '', 0
              FROM unnest(%b::text[], %b::text[], %b::int[], %b::timestamptz[]) AS u(k, t, v, f)
            RETURNING id, token
            """,
            [
                Linking.AUTO.value,
                [g.kind for g in groups],
                [g.token for g in groups],
                [g.key_version for g in groups],
                [g.first_seen for g in groups],
            ],
        )
        ids = {token: pk for pk, token in cursor.fetchall()}
    return [ids[g.token] for g in groups]


def _insert_items(new: list[Item], groups: list[int], now: datetime) -> list[int]:
    """Insert the batch's new items (distinct by kind and value), each in its group; their ids in order."""
    if connection.vendor != "postgresql":
        created = SimilarItem.objects.bulk_create(
            SimilarItem(kind=i.kind, value=i.value, extra=dict(i.extra), group_id=g, first_seen=now)
            for i, g in zip(new, groups, strict=True)
        )
        return [row.pk for row in created]
    if not new:
        return []
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            """
            INSERT INTO exchange_similaritem (kind, value, extra, group_id, first_seen)
            SELECT k, v, CAST(e AS jsonb), g, %b
              FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[]) AS u(k, v, e, g)
            RETURNING id, kind, value
            """,
            [
                now,
                [i.kind for i in new],
                [i.value for i in new],
                [json.dumps(dict(i.extra)) for i in new],
                groups,
            ],
        )
        ids = {(kind, value): pk for pk, kind, value in cursor.fetchall()}
    return [ids[(i.kind, i.value)] for i in new]


def _link_sellers(rows: list[tuple[int, int, datetime]]) -> None:
    """Record which seller reported which item, first seen at (a pair already recorded is left as it is)."""
    if connection.vendor != "postgresql":
        SellerItem.objects.bulk_create(
            [SellerItem(seller_id=seller, item_id=item, first_seen=at) for seller, item, at in rows],
            ignore_conflicts=True,
        )
        return
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            """
            INSERT INTO exchange_selleritem (seller_id, item_id, first_seen)
            SELECT s, i, f FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[]) AS u(s, i, f)
            ON CONFLICT (seller_id, item_id) DO NOTHING
            """,
            [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
        )


def _sightings(rows: Iterable[tuple[int, int, datetime]]) -> int:
    """Upsert (seller, group) sightings with first/last seen; returns how many were created."""
    wanted: dict[tuple[int, int], tuple[datetime, datetime]] = {}
    for seller_id, group_id, at in rows:
        first, last = wanted.get((seller_id, group_id), (at, at))
        wanted[(seller_id, group_id)] = (min(first, at), max(last, at))
    if connection.vendor == "postgresql":
        return _upsert_sightings_pg(wanted)
    existing = {
        (s.seller_id, s.indicator_id): s
        for s in Sighting.objects.filter(
            seller_id__in={seller for seller, _ in wanted}, indicator_id__in={group for _, group in wanted}
        )
    }
    created, changed = [], []
    for key, (first, last) in sorted(wanted.items()):
        sighting = existing.get(key)
        if sighting is None:
            created.append(Sighting(seller_id=key[0], indicator_id=key[1], first_seen=first, last_seen=last))
        elif first < sighting.first_seen or last > sighting.last_seen:
            sighting.first_seen = min(first, sighting.first_seen)
            sighting.last_seen = max(last, sighting.last_seen)
            changed.append(sighting)
    Sighting.objects.bulk_create(created)
    Sighting.objects.bulk_update(changed, ["first_seen", "last_seen"])
    return len(created)


def _upsert_sightings_pg(wanted: dict[tuple[int, int], tuple[datetime, datetime]]) -> int:
    if not wanted:
        return 0
    keys = sorted(wanted)  # in key order, as the ORM path writes them (rows locked in one order)
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            """
            INSERT INTO exchange_sighting AS g (seller_id, indicator_id, first_seen, last_seen)
            SELECT s, i, f, l FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[], %b::timestamptz[])
                AS u(s, i, f, l)
            ON CONFLICT (seller_id, indicator_id) DO UPDATE SET
                first_seen = LEAST(g.first_seen, EXCLUDED.first_seen),
                last_seen = GREATEST(g.last_seen, EXCLUDED.last_seen)
            RETURNING (xmax = 0)
            """,
            [
                [seller for seller, _ in keys],
                [group for _, group in keys],
                [wanted[key][0] for key in keys],
                [wanted[key][1] for key in keys],
            ],
        )
        return sum(1 for (created,) in cursor.fetchall() if created)


def recount(group_ids: Iterable[int]) -> None:
    """Each group's holders: its sellers (what ingest maintains for every indicator)."""
    ids = sorted(set(group_ids))
    if connection.vendor == "postgresql" and ids:  # the ids as one binary array, not 5,000 parameters
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(
                """
                UPDATE exchange_indicator i SET holders = c.n
                  FROM (
                    SELECT g.id, count(s.seller_id) AS n
                      FROM unnest(%b::bigint[]) AS g(id)
                      LEFT JOIN exchange_sighting s ON s.indicator_id = g.id
                     GROUP BY g.id
                  ) c
                 WHERE i.id = c.id AND i.holders IS DISTINCT FROM c.n
                """,
                [ids],
            )
        return
    for start in range(0, len(ids), 5_000):  # one statement per 5,000 groups: each group's distinct sellers
        Indicator.objects.filter(pk__in=ids[start : start + 5_000]).update(
            holders=Coalesce(
                Subquery(
                    Sighting.objects.filter(indicator_id=OuterRef("pk"))
                    .order_by()
                    .values("indicator_id")
                    .annotate(n=Count("seller_id", distinct=True))
                    .values("n")
                ),
                0,
            )
        )


def merge_groups(keep: int, others: Sequence[int], now: datetime) -> set[int]:
    """Merge the groups `others` into `keep` (a new item matched items of each): their items and sightings
    move to `keep`, which stays common if any of them was marked common; the others are deleted. Returns the
    sellers of every merged group (their clusters are recomputed)."""
    merged = [keep, *others]
    sellers = set(Sighting.objects.filter(indicator_id__in=merged).values_list("seller_id", flat=True))
    SimilarItem.objects.filter(group_id__in=others).update(group_id=keep)
    moved = list(
        Sighting.objects.filter(indicator_id__in=others).values_list("seller_id", "first_seen", "last_seen")
    )
    Sighting.objects.filter(indicator_id__in=others).delete()
    _sightings(
        [(seller_id, keep, first) for seller_id, first, _ in moved]
        + [(seller_id, keep, last) for seller_id, _, last in moved]
    )
    target = Indicator.objects.get(pk=keep)
    fields = ["first_seen"]
    target.first_seen = min(Indicator.objects.filter(pk__in=merged).values_list("first_seen", flat=True))
    common = Indicator.objects.filter(pk__in=others, linking=Linking.COMMON).first()
    if common is not None and target.linking != Linking.COMMON:
        target.linking = Linking.COMMON
        target.linking_reason = f"merged with a group marked common ({common.linking_reason})"[:1000]
        target.linking_changed_by = "system"
        target.linking_changed_at = now
        fields += ["linking", "linking_reason", "linking_changed_by", "linking_changed_at"]
    target.save(update_fields=fields)
    Indicator.objects.filter(pk__in=others).delete()
    logger.info("event=similar_groups_merged groups=%s sellers=%s", len(merged), len(sellers))
    return sellers


# --- what analysts see ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupFacts:
    items: int
    sellers: int
    spread: float | None  # the least near pair's score among its first items (None with one item)
    direct_match: bool = False  # a direct match between two groups' items (SimilarMatch), not a group


def describe_group(group: Indicator, most: int = 200) -> GroupFacts:
    """What an analyst sees of a near-duplicate group: items, sellers, spread (over its first `most` items); of
    a direct match (`SimilarMatch`): its two items, their sellers and their score."""
    rule = matcher(group.kind)
    match = SimilarMatch.objects.filter(indicator_id=group.pk).first()
    if match is not None:
        ends = [match.older_id, match.newer_id]
        sellers = SellerItem.objects.filter(item_id__in=ends).values("seller_id").distinct().count()
        return GroupFacts(2, sellers, match.score, direct_match=True)
    rows = [_as_item(row) for row in SimilarItem.objects.filter(group=group).order_by("pk")[:most]]
    sellers = SellerItem.objects.filter(item__group=group).values("seller_id").distinct().count()
    scores = [rule.score(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    return GroupFacts(SimilarItem.objects.filter(group=group).count(), sellers, rule.farthest(scores))


def _nearest_between(a: int, b: int, indicator: Indicator) -> tuple[float | None, bool]:
    """The nearest score between seller `a`'s and seller `b`'s items in the group or direct match `indicator`
    (None: either has none there, e.g. a group that merged after the page was read), and whether it is a
    direct match."""
    rule = matcher(indicator.kind)
    links = SellerItem.objects.filter(seller_id__in=[a, b]).select_related("item")
    match = SimilarMatch.objects.filter(indicator_id=indicator.pk).values_list("older_id", "newer_id").first()
    links = links.filter(item_id__in=match) if match is not None else links.filter(item__group=indicator)
    items: dict[int, list[Item]] = {a: [], b: []}
    for link in links:
        items[link.seller_id].append(_as_item(link.item))
    return rule.nearest([rule.score(x, y) for x in items[a] for y in items[b]]), match is not None


def describe_direct(kind: str, score: float) -> str:
    """A direct match's score in words, against the kind's direct threshold (`direct_threshold`)."""
    rule = matcher(kind)
    return rule.describe(score, direct_threshold(rule, threshold(kind)))


def note(a: int, b: int, group: Indicator) -> str:
    """A similarity link between two sellers in words: the kind's description of their nearest items, and,
    when those do not match by themselves, that the group joins them (two variants that each match the
    group's first item, or one another's, need not match each other: exchange.matching.centre_labels); for a
    direct match (exchange.matching.direct_matches), that their items match across two groups."""
    score, direct = _nearest_between(a, b, group)
    if score is None:
        return "near-duplicates"
    if direct:
        return describe_direct(group.kind, score) + "; a direct match between items of two groups"
    rule, limit = matcher(group.kind), threshold(group.kind)
    text = rule.describe(score, limit)
    if not rule.matches(score, limit):
        text += "; not a match by themselves: the group's other members join them"
    return text
