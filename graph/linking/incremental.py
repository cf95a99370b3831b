"""The incremental run (:func:`relink_columns`): widen the touched sellers to everything whose clustering may
have changed (flipped hub suppression, previous clusters and held merges), then relink only that scope."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from exchange.normalization import LINK_KINDS
from graph.linking.arrays import (
    ArrayLike,
    BoolArray,
    IntArray,
    _as_int_array,
    _find,
    _id_array,
    _lookup,
    _ranges,
    distinct,
    isin,
)
from graph.linking.components import _components, _link_edges, _select
from graph.linking.full import _clusters_from, _platform_hub_pairs
from graph.linking.held import _fresh_mask, _hold
from graph.linking.prepare import _per_platform, _prepare, _Prepared, _Split
from graph.linking.records import Override, Relinkage
from graph.linking.rules import DEFAULT_PLATFORM_DIVISOR, _rules


def _reachable(prep: _Prepared, seeds: IntArray) -> BoolArray:
    """Sellers reachable from ``seeds`` through linking indicators (a superset of their link components)."""
    by_seller = np.argsort(prep.row_seller, kind="stable")
    seller_start = np.zeros(prep.n_sellers + 1, dtype=np.int64)
    np.cumsum(np.bincount(prep.row_seller, minlength=prep.n_sellers), out=seller_start[1:])
    seen_seller = np.zeros(prep.n_sellers, dtype=np.bool_)
    seen_indicator = ~prep.effective  # never expand through a suppressed indicator
    frontier = distinct(seeds)
    seen_seller[frontier] = True
    while frontier.size:
        rows = by_seller[_ranges(seller_start[frontier], seller_start[frontier + 1])]
        indicators = distinct(prep.row_indicator[rows])
        indicators = indicators[~seen_indicator[indicators]]
        seen_indicator[indicators] = True
        rows = _ranges(prep.indicator_start[indicators], prep.indicator_start[indicators + 1])
        frontier = distinct(prep.row_seller[rows])
        frontier = frontier[~seen_seller[frontier]]
        seen_seller[frontier] = True
    return seen_seller


def _flippable(
    prep: _Prepared,
    seller: IntArray,
    indicator: IntArray,
    platform: IntArray,
    touched: IntArray,
    inactive: IntArray,
) -> BoolArray:
    """Indicators whose suppression may differ from before the touched sellers changed.

    Only touched sellers changed. On each platform ``p`` let ``u`` be the indicator's active holders that were
    not touched and ``d`` its touched holders (in any status): ``p``'s previous holder count lay in
    ``[u, u + d]``, and since ``min(., cap)`` is monotone the previous counted total lay in
    ``[sum min(u, cap), sum min(u + d, cap)]``. If the threshold lies inside that range, its suppression may
    have flipped.
    """
    flip = np.zeros(prep.n_indicators, dtype=np.bool_)
    rows = isin(seller, touched)
    code, found = _find(prep.indicator_ids, indicator[rows])
    if not found.any():
        return flip
    triples = np.unique(np.stack([code[found], seller[rows][found], platform[rows][found]]), axis=1)
    active = ~isin(triples[1], inactive)
    held = np.bincount(triples[0], minlength=prep.n_indicators)
    held_active = np.bincount(triples[0][active], minlength=prep.n_indicators)
    # The capped total and every platform's own count are at most the plain count: an indicator whose plain
    # upper bound is within its threshold cannot flip, which leaves only a few candidates for exact bounds.
    high_plain = prep.count - held_active + held
    candidate = (prep.threshold < high_plain) & ~prep.common & ~prep.include
    codes = np.flatnonzero(candidate)
    if not codes.size:
        return flip
    keep = candidate[triples[0]]
    ind, plat, act = triples[0][keep], triples[2][keep], active[keep]
    minus_active = np.stack([ind[act], plat[act], -np.ones(int(act.sum()), dtype=np.int64)], axis=1)
    plus_all = np.stack([ind, plat, np.ones(ind.size, dtype=np.int64)], axis=1)
    row_platform = prep.seller_platform[prep.row_seller]
    args = (prep.row_indicator, row_platform, prep.indicator_start, codes)
    low = _per_platform(*args, minus_active)
    high = _per_platform(*args, np.concatenate([minus_active, plus_all]))
    threshold = prep.threshold[codes]
    low_total, high_total = low.capped_total(prep.cap)[codes], high.capped_total(prep.cap)[codes]
    flip[codes] = (low_total <= threshold) & (threshold < high_total)
    # A platform's own holders crossing the threshold changes which rows link. The pairs of ``high`` are
    # those of ``low`` (the same rows and triples, plus more triples of pairs already present).
    high_count, low_count = high.holders, _pair_counts(low, high)
    local = (low_count <= prep.threshold[high.indicator]) & (prep.threshold[high.indicator] < high_count)
    flip[high.indicator[local]] = True
    return flip


def _pair_counts(part: _Split, whole: _Split) -> IntArray:
    """``part``'s count for each of ``whole``'s (indicator, platform) pairs (0 where ``part`` lacks it)."""
    out = np.zeros(whole.holders.size, dtype=np.int64)
    if not part.holders.size:
        return out
    width = int(max(part.platform.max(initial=0), whole.platform.max(initial=0))) + 1
    part_keys = part.indicator * width + part.platform
    whole_keys = whole.indicator * width + whole.platform
    pos, found = _find(part_keys, whole_keys)
    out[found] = part.holders[pos[found]]
    return out


def _affected(
    prep: _Prepared, changed: BoolArray, touched: IntArray, touched_indicators: Iterable[int]
) -> set[int]:
    """The ``touched`` sellers and every active holder of a ``changed`` indicator (whose hub suppression may
    have flipped, see :func:`_flippable`) or of one in ``touched_indicators`` (``changed`` is updated)."""
    changed[_lookup(prep.indicator_ids, _id_array(touched_indicators))] = True
    codes = np.flatnonzero(changed)
    holder_rows = _ranges(prep.indicator_start[codes], prep.indicator_start[codes + 1])
    return set(touched.tolist()) | set(prep.seller_ids[distinct(prep.row_seller[holder_rows])].tolist())


def _with_previous_groups[C: Hashable](
    affected: set[int], previous: Mapping[C, Collection[int]], held_before: Mapping[Any, Collection[int]]
) -> set[int]:
    """``affected`` with the previous clusters and held merges of its sellers, whole and transitively (a held
    merge's members span several clusters)."""
    groups_of: dict[int, list[tuple[bool, Any]]] = {}
    for cluster_id, members in previous.items():
        for member in members:
            groups_of.setdefault(member, []).append((False, cluster_id))
    for held_id, members in held_before.items():
        for member in members:
            groups_of.setdefault(member, []).append((True, held_id))
    seeds = set(affected)
    pending, taken = list(affected), set()
    while pending:
        for group in groups_of.get(pending.pop(), ()):
            if group in taken:
                continue
            taken.add(group)
            for member in held_before[group[1]] if group[0] else previous[group[1]]:
                if member not in seeds:
                    seeds.add(member)
                    pending.append(member)
    return seeds


def relink_columns[C: Hashable](
    seller: ArrayLike,
    indicator: ArrayLike,
    kind: ArrayLike,
    *,
    platform: ArrayLike,
    touched_sellers: Iterable[int],
    previous: Mapping[C, Collection[int]],
    touched_indicators: Iterable[int] = (),
    kinds: Sequence[str] = LINK_KINDS,
    strength: Mapping[str, str] | None = None,
    thresholds: Mapping[str, int] | None = None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
    overrides: Mapping[int, Override] | None = None,
    inactive: Iterable[int] = (),
    fresh: Iterable[int] = (),
    previous_held: Mapping[Any, Collection[int]] | None = None,
) -> Relinkage[int, C]:
    """Recompute only the clusters that contain, or used to contain, sellers affected by a change.

    Input contract:

    - the columns hold every current sighting, *including* those of inactive sellers (listed in ``inactive``),
      so that a newly retracted or expired seller's indicators are known;
    - ``touched_sellers`` are the sellers whose sightings or status (active/inactive) changed since ``previous``
      was computed (include sellers whose expiry has passed);
    - ``touched_indicators`` are indicators whose override changed, or that lost a sighting which is no longer
      in the columns (a purged sighting of a still-active seller);
    - ``previous`` is the stored cluster state (cluster id -> members), as computed with the same rules;
    - ``fresh`` is as for :func:`link_columns`; sellers whose freshness changed count as touched;
    - ``previous_held`` are the stored held merges (id -> ``HeldMerge.members``). A held seller links
      nobody, so its component's clusters are connected only through the held merge: whatever touches one
      of them brings in the whole component.

    The touched set is widened to every active holder of an indicator whose hub suppression may have flipped
    (the counted holders are global), then to the previous clusters of all of those sellers. The new components
    reachable from that seed set, together with the seeds, form ``scope``; it is closed under both the old and
    the new clustering, so replacing the ``retired`` clusters by the returned ones yields exactly the clusters of
    a full :func:`link_columns` run.
    """
    rules = _rules(kinds, strength, thresholds, platform_divisor)
    seller_a, indicator_a, platform_a = (
        _as_int_array(seller),
        _as_int_array(indicator),
        _as_int_array(platform),
    )
    inactive_a, touched = _id_array(inactive), _id_array(touched_sellers)
    prep = _prepare(
        seller_a, indicator_a, _as_int_array(kind), platform_a, rules, overrides or {}, inactive_a
    )

    changed = _flippable(prep, seller_a, indicator_a, platform_a, touched, inactive_a)
    affected = _affected(prep, changed, touched, touched_indicators)
    held_before = previous_held or {}
    seeds = _with_previous_groups(affected, previous, held_before)
    seed_codes = _lookup(prep.seller_ids, _id_array(seeds))
    region = _reachable(prep, seed_codes)
    is_seed = np.zeros(prep.n_sellers, dtype=np.bool_)
    is_seed[seed_codes] = True
    region_rows = region[prep.row_seller]
    components = _select(_components(prep.n_sellers, *_link_edges(prep, region_rows)), is_seed)
    groups, held = _hold(prep, components, _fresh_mask(prep, fresh), region_rows)
    scope = frozenset(seeds.union(prep.seller_ids[components.nodes].tolist()))
    retired = tuple(cluster_id for cluster_id, members in previous.items() if not scope.isdisjoint(members))
    retired_held = tuple(held_id for held_id, members in held_before.items() if not scope.isdisjoint(members))
    return Relinkage(
        clusters=_clusters_from(prep, groups, rules.kinds),
        retired=retired,
        scope=scope,
        platform_hubs=_platform_hub_pairs(prep),
        held=held,
        retired_held=retired_held,
    )
