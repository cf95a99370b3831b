"""Link reported sellers into actor clusters (pure: no Django, plain data in, plain data out).

Rules (PRODUCT.md, "Linking"):

- An indicator is the pair (kind, token). Two sellers are *linked* when they share at least one strong indicator,
  or at least two *different* weak ones. Clusters are the connected components of that link graph with at
  least two members; a seller that links to nobody is in no cluster.
- Only active sellers link. The caller either passes active sightings only, or passes every sighting plus the
  ``inactive`` seller ids (retracted or expired), which are then ignored for linking. The incremental
  :func:`relink` needs the second form so that it can see what a newly inactive seller used to hold.
- An indicator held by a single seller cannot link anyone and is dropped before any graph is built.
- Held merges: one platform's *fresh* sellers (the caller decides: recently reported and not covered by an
  approved merge, or in a rejected one) must not glue other platforms' clusters alone. For each link
  component and each platform ``P`` with fresh sellers in it, the component without ``P``'s fresh sellers
  falls into parts; if two or more parts of >= 2 sellers contain no seller of ``P`` (so only ``P``'s fresh
  sellers join them), those fresh sellers are held: they link nobody, the parts stay separate clusters,
  and the result lists a :class:`HeldMerge`. Each platform is judged on the whole component (another
  platform's sellers, held or not, making the same link corroborate it), so the decision is a function of
  the component alone, which keeps incremental runs equal to full ones.
- Hub suppression: an indicator whose *counted* holders exceed its kind's threshold (``counted > threshold``;
  exactly ``threshold`` still link) does not link; it is reported as context on the clusters of the sellers
  that hold it. Each platform's contribution to the count is capped (:class:`HubRule`): counted =
  sum over platforms of ``min(active holders on that platform, ceil(threshold / platform_divisor))``, so one
  platform alone (a hostile or compromised member inventing holders) can never push an indicator over its
  threshold and unlink other platforms' clusters; only an indicator common across several platforms is
  suppressed. A platform whose own active holders exceed the threshold (its support phone, typed in by its
  sellers) is reporting a hub of its own: *its* holders do not link through the indicator, which leaves
  every other platform's links through it untouched. Analyst overrides per indicator: ``"common"``
  suppresses it whatever its count, ``"include"`` lets it link whatever its count.

How (performance): the link graph is never materialised pairwise. Everything is column-oriented numpy over
integer-coded indicators; for connectivity it suffices that

- the holders of a strong indicator are joined by a *star* (first holder to each other holder), and
- sellers holding both weak indicators ``w1`` and ``w2`` are pairwise linked, so a star over the holders of each
  weak *pair* ``(w1, w2)`` suffices. Pairs are enumerated per seller (``C(k, 2)`` for a seller with ``k``
  shared weak indicators), so the cost does not depend on how popular an "include"-overridden weak indicator is.

Components of the star edges come from SciPy's compiled ``connected_components`` over a sparse adjacency
matrix, then each component is labelled by its smallest seller code with one numpy ``minimum.at`` (see
:func:`_component_labels`): NetworkX's per-edge Python cost alone was 40-80x the SciPy floor at 5M sightings.
NetworkX is used where graphs are per cluster and small (:mod:`graph.evidence`). :func:`link_columns` is the
fast entry point for the database side (``seller``/``indicator`` ids and kind codes as parallel arrays);
:func:`link` is the convenience wrapper over :class:`Sighting` tuples.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# One list of kinds for the whole exchange: the hashing spec's (pure, no Django).
from exchange.normalization import KINDS, STRONG_KINDS, WEAK_KINDS

Strength = Literal["strong", "weak"]
Override = Literal["common", "include"]
SuppressionReason = Literal["common", "threshold"]
Token = bytes | str
IndicatorKey = tuple[str, Token]
# Mapping keys are invariant: accept maps keyed by (kind, str) or (kind, bytes) as well.
IndicatorOverrides = (
    Mapping[IndicatorKey, Override]
    | Mapping[tuple[str, str], Override]
    | Mapping[tuple[str, bytes], Override]
)
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = Sequence[int] | npt.NDArray[np.integer]

# A kind's code in the column API is its index in KINDS (unless the caller passes ``kinds``).
DEFAULT_STRENGTH: Mapping[str, Strength] = MappingProxyType(
    {**dict.fromkeys(STRONG_KINDS, "strong"), **dict.fromkeys(WEAK_KINDS, "weak")}
)

# Maximum number of sellers an indicator may have and still link. A genuine actor rarely runs more than a couple
# of dozen accounts on one bank account or phone; a warehouse or a forwarder address is shared legitimately by
# more people, and store names, domains and device ids collide easily (template shops, emulator device ids).
DEFAULT_THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {
        "email": 25,
        "phone": 25,
        "tax_id": 25,
        "business_registration": 25,
        "bank_account": 25,
        "payment_account": 25,
        "crypto_wallet": 25,
        "shipping_address": 15,
        "return_address": 15,
        "store_name": 10,
        "website_domain": 10,
        "device_id": 10,
    }
)


# Any one platform's holders count for at most ceil(threshold / DEFAULT_PLATFORM_DIVISOR) towards the threshold.
# With 3, an indicator needs holders on at least three platforms (four when 3 divides the threshold) before it
# is suppressed automatically; below that an exchange analyst marks it common.
DEFAULT_PLATFORM_DIVISOR = 3


def platform_cap(threshold: int, divisor: int) -> int:
    """How many of one platform's holders count towards ``threshold``: ``ceil(threshold / divisor)``."""
    return -(-threshold // divisor)


@dataclass(frozen=True, slots=True)
class HubRule:
    """The one statement of hub suppression, for the linking core and for every display of an indicator.

    ``holders_by_platform`` are the indicator's active holders counted per platform (any iterable of counts).
    """

    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR

    def __post_init__(self) -> None:
        if self.platform_divisor < 1:
            raise ValueError(f"platform_divisor must be >= 1, got {self.platform_divisor}")

    def threshold(self, kind: str) -> int:
        return self.thresholds[kind]

    def cap(self, kind: str) -> int:
        return platform_cap(self.thresholds[kind], self.platform_divisor)

    def counted(self, kind: str, holders_by_platform: Iterable[int]) -> int:
        cap = self.cap(kind)
        return sum(min(int(n), cap) for n in holders_by_platform)

    def suppression(
        self, kind: str, holders_by_platform: Iterable[int], override: str | None = None
    ) -> SuppressionReason | None:
        """Why the indicator does not link (``"common"`` or ``"threshold"``), or None when it links."""
        if override == "common":
            return "common"
        if override == "include":
            return None
        return "threshold" if self.counted(kind, holders_by_platform) > self.thresholds[kind] else None

    def platform_hub(self, kind: str, holders_on_platform: int, override: str | None = None) -> bool:
        """Whether one platform's holders of a (not suppressed) indicator are too many to link through it."""
        return override != "include" and holders_on_platform > self.thresholds[kind]


class Sighting(NamedTuple):
    """One seller holding one indicator (as loaded from the database)."""

    seller_id: int
    platform_id: int
    kind: str
    token: Token
    first_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class SuppressedIndicator[K]:
    """An indicator held by >= 2 active sellers that was kept from linking, shown as context."""

    indicator: K
    kind: str
    sellers: int  # active holders
    reason: SuppressionReason
    counted: int = 0  # holders counted towards the threshold (each platform's share capped)


@dataclass(frozen=True, slots=True)
class Cluster[K]:
    """One actor cluster: its members (sorted seller ids) and the suppressed indicators they hold."""

    members: tuple[int, ...]
    suppressed: tuple[SuppressedIndicator[K], ...]

    @property
    def member_set(self) -> frozenset[int]:
        return frozenset(self.members)


@dataclass(frozen=True, slots=True)
class HeldMerge:
    """A merge held for an exchange analyst: ``platform``'s fresh ``sellers`` alone would join ``parts``.

    ``members`` is the whole link component (held sellers, the parts, everything else in it): an incremental
    run that touches any of them recomputes all of it.
    """

    platform: int
    sellers: tuple[int, ...]
    parts: tuple[tuple[int, ...], ...]  # the parts with no seller of ``platform``, by smallest member
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Linkage[K]:
    """Result of a full linking run. Clusters are ordered by their smallest member."""

    clusters: tuple[Cluster[K], ...]
    suppressed: tuple[SuppressedIndicator[K], ...]  # every suppressed indicator, sorted by indicator
    # (indicator, platform) pairs where that platform alone holds more than the threshold: its holders do
    # not link through the indicator (sorted)
    platform_hubs: tuple[tuple[K, int], ...] = ()
    held: tuple[HeldMerge, ...] = ()  # by (smallest member, platform)


@dataclass(frozen=True, slots=True)
class Relinkage[K, C: Hashable]:
    """Result of an incremental run: replace the ``retired`` previous clusters by ``clusters``.

    ``scope`` is the set of sellers whose cluster was recomputed; every previous cluster intersecting it is in
    ``retired`` and every returned cluster lies inside it. Clusters outside the scope are unchanged.
    """

    clusters: tuple[Cluster[K], ...]
    retired: tuple[C, ...]
    scope: frozenset[int]
    platform_hubs: tuple[tuple[K, int], ...] = ()  # as in Linkage, for the indicators held in scope
    held: tuple[HeldMerge, ...] = ()  # the held merges inside ``scope``
    retired_held: tuple[Any, ...] = ()  # the previous held merges to replace by ``held``


# --------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True, slots=True)
class _Rules:
    strong: BoolArray  # per kind code
    threshold: IntArray  # per kind code
    cap: IntArray  # per kind code: one platform's largest contribution to the holder count
    kinds: tuple[str, ...]


def _rules(
    kinds: Sequence[str],
    strength: Mapping[str, str] | None,
    thresholds: Mapping[str, int] | None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
) -> _Rules:
    strength = DEFAULT_STRENGTH if strength is None else strength
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    unknown = [kind for kind in kinds if kind not in strength or kind not in thresholds]
    if unknown:
        raise ValueError(f"no strength or threshold configured for indicator kinds: {sorted(unknown)}")
    bad = {kind: strength[kind] for kind in kinds if strength[kind] not in ("strong", "weak")}
    if bad:
        raise ValueError(f"strength must be 'strong' or 'weak': {bad}")
    rule = HubRule(thresholds, platform_divisor)
    return _Rules(
        strong=np.array([strength[kind] == "strong" for kind in kinds], dtype=np.bool_),
        threshold=np.array([rule.threshold(kind) for kind in kinds], dtype=np.int64),
        cap=np.array([rule.cap(kind) for kind in kinds], dtype=np.int64),
        kinds=tuple(kinds),
    )


# --------------------------------------------------------------------------------------------------------------
# Column core


def _as_int_array(values: ArrayLike | Iterable[int]) -> IntArray:
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False)
    if isinstance(values, Sequence):
        return np.asarray(values, dtype=np.int64)
    return np.fromiter(values, dtype=np.int64)


def _densify(values: IntArray) -> tuple[IntArray, IntArray]:
    """Map ids to 0..n-1 preserving order; return (codes, ids) with ``ids[codes] == values``."""
    if values.size == 0:
        return values, values
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < 4 * values.size + 1024:  # database ids are compact: avoid a sort
        present = np.zeros(hi - lo + 1, dtype=np.bool_)
        present[values - lo] = True
        remap = np.cumsum(present, dtype=np.int64) - 1
        return remap[values - lo], np.flatnonzero(present).astype(np.int64) + lo
    order = np.argsort(values)
    ordered = values[order]
    is_new = np.ones(ordered.size, dtype=np.bool_)
    is_new[1:] = ordered[1:] != ordered[:-1]
    codes = np.empty(values.size, dtype=np.int64)
    codes[order] = np.cumsum(is_new) - 1
    return codes, ordered[is_new]


def _on_several_rows(values: IntArray) -> BoolArray:
    """Mask of the rows whose value occurs on at least two rows."""
    if values.size == 0:
        return np.zeros(0, dtype=np.bool_)
    lo = int(values.min())
    if int(values.max()) - lo < 4 * values.size + 1024:  # compact ids: count directly, no sort
        offset = values - lo
        return np.bincount(offset)[offset] >= 2
    codes, ids = _densify(values)
    return np.bincount(codes, minlength=ids.size)[codes] >= 2


def _unique(values: IntArray) -> IntArray:
    """Sorted distinct values (sort-based: several times faster than ``np.unique`` on large int arrays)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.ones(ordered.size, dtype=np.bool_)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """Concatenate ``arange(s, e)`` for every pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


@dataclass(slots=True)
class _Prepared:
    """Active, deduplicated sightings of indicators held by >= 2 sellers, sorted by (indicator, seller)."""

    seller_ids: IntArray  # dense seller code -> seller id (ascending)
    indicator_ids: IntArray  # dense indicator code -> indicator id (ascending)
    row_seller: IntArray
    row_indicator: IntArray
    seller_platform: IntArray  # dense seller code -> platform id
    indicator_start: IntArray  # rows of indicator i are indicator_start[i]:indicator_start[i + 1]
    count: IntArray  # sellers per indicator
    counted: IntArray  # sellers per indicator counted towards the threshold (each platform's share capped)
    kind: IntArray  # kind code per indicator
    strong: BoolArray
    threshold: IntArray
    cap: IntArray
    common: BoolArray
    include: BoolArray
    effective: BoolArray  # links
    row_usable: BoolArray  # per row: the indicator links and the row's platform is not over the threshold
    platform_hubs: IntArray  # (indicator code, platform id) pairs whose platform alone is over the threshold

    @property
    def n_sellers(self) -> int:
        return int(self.seller_ids.size)

    @property
    def n_indicators(self) -> int:
        return int(self.indicator_ids.size)


def _lookup(sorted_ids: IntArray, wanted: IntArray) -> IntArray:
    """Positions of the ``wanted`` ids that occur in ``sorted_ids`` (others are left out)."""
    if sorted_ids.size == 0 or wanted.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, wanted)
    clipped = np.minimum(pos, sorted_ids.size - 1)
    return clipped[sorted_ids[clipped] == wanted].astype(np.int64)


def _id_array(ids: Iterable[int]) -> IntArray:
    return _unique(_as_int_array(list(ids)))


def _prepare(
    seller: IntArray,
    indicator: IntArray,
    kind: IntArray,
    platform: IntArray,
    rules: _Rules,
    overrides: Mapping[int, Override],
    inactive: IntArray,
) -> _Prepared:
    if not (seller.shape == indicator.shape == kind.shape == platform.shape):
        raise ValueError("seller, indicator, kind and platform columns must have the same length")
    if kind.size and (int(kind.min()) < 0 or int(kind.max()) >= len(rules.kinds)):
        raise ValueError(f"kind codes must index kinds={rules.kinds!r}")
    if inactive.size:
        active = ~np.isin(seller, inactive)
        seller, indicator, kind, platform = seller[active], indicator[active], kind[active], platform[active]
    # Cheap first cut: an indicator on a single row cannot be shared (this drops most of the data).
    # One scan for the positions, then four cheap takes (a boolean gather scans the whole column each time).
    shared = np.flatnonzero(_on_several_rows(indicator))
    seller, indicator, kind, platform = seller[shared], indicator[shared], kind[shared], platform[shared]
    ind_code, ind_ids = _densify(indicator)
    kind_of = np.zeros(ind_ids.size, dtype=np.int64)
    kind_of[ind_code] = kind
    seller_code, seller_ids = _densify(seller)
    platform_of = np.zeros(seller_ids.size, dtype=np.int64)
    platform_of[seller_code] = platform
    if (platform_of[seller_code] != platform).any():
        raise ValueError("every row of one seller must name the same platform")
    n_sellers = max(int(seller_ids.size), 1)
    # Deduplicate (indicator, seller) and sort by indicator then seller in one go.
    keys = _unique(ind_code * n_sellers + seller_code)
    row_indicator, row_seller = np.divmod(keys, n_sellers)
    # Drop indicators that only had duplicate rows of one seller.
    rows_per = np.bincount(row_indicator, minlength=ind_ids.size)
    keep = rows_per[row_indicator] >= 2
    row_indicator, row_seller = row_indicator[keep], row_seller[keep]
    # Re-code indicators compactly (rows are sorted by indicator) and sellers likewise.
    starts_mask = np.ones(row_indicator.size, dtype=np.bool_)
    starts_mask[1:] = row_indicator[1:] != row_indicator[:-1]
    first_rows = np.flatnonzero(starts_mask)
    old_codes = row_indicator[first_rows]
    indicator_ids = ind_ids[old_codes]
    kind_per = kind_of[old_codes]
    row_indicator = np.cumsum(starts_mask, dtype=np.int64) - 1
    seller_code2, seller_ids2 = (
        _densify(seller_ids[row_seller]) if row_seller.size else (row_seller, row_seller)
    )
    indicator_start = np.append(first_rows, row_indicator.size).astype(np.int64)
    count = np.diff(indicator_start)

    common = np.zeros(indicator_ids.size, dtype=np.bool_)
    include = np.zeros(indicator_ids.size, dtype=np.bool_)
    if overrides:
        bad = {value for value in overrides.values() if value not in ("common", "include")}
        if bad:
            raise ValueError(f"override must be 'common' or 'include', got {sorted(bad)}")
        common[_lookup(indicator_ids, _id_array(k for k, v in overrides.items() if v == "common"))] = True
        include[_lookup(indicator_ids, _id_array(k for k, v in overrides.items() if v == "include"))] = True
    threshold, cap = rules.threshold[kind_per], rules.cap[kind_per]
    row_platform = platform_of[row_seller]
    seller_platform = np.zeros(seller_ids2.size, dtype=np.int64)
    seller_platform[seller_code2] = row_platform
    counted = count.copy()
    effective = ((count <= threshold) | include) & ~common
    row_usable = effective[row_indicator]
    platform_hubs = np.zeros((0, 2), dtype=np.int64)
    # Capping only lowers a count and no platform holds more than all of them, so only indicators over their
    # threshold by the plain count need the per-platform pass (a few hubs, not the millions of rows).
    over = np.flatnonzero((count > threshold) & ~include & ~common)
    if over.size:
        split = _per_platform(row_indicator, row_platform, indicator_start, over, np.zeros((0, 3), np.int64))
        counted[over] = split.capped_total(cap)[over]
        effective[over] = counted[over] <= threshold[over]
        local = split.holders > threshold[split.indicator]
        platform_hubs = np.stack([split.indicator[local], split.platform[local]], axis=1)
        row_usable = effective[row_indicator]
        row_usable[split.rows] &= ~local[split.row_pair]
    return _Prepared(
        seller_ids=seller_ids2,
        indicator_ids=indicator_ids,
        row_seller=seller_code2,
        row_indicator=row_indicator,
        seller_platform=seller_platform,
        indicator_start=indicator_start,
        count=count,
        counted=counted,
        kind=kind_per,
        strong=rules.strong[kind_per],
        threshold=threshold,
        cap=cap,
        common=common,
        include=include,
        effective=effective,
        row_usable=row_usable,
        platform_hubs=platform_hubs,
    )


class _Split(NamedTuple):
    """Holders of some indicators per (indicator, platform) pair."""

    indicator: IntArray  # per pair: indicator code
    platform: IntArray  # per pair: platform id
    holders: IntArray  # per pair
    rows: IntArray  # the indicators' rows
    row_pair: IntArray  # per row in ``rows``: its pair

    def capped_total(self, cap: IntArray) -> IntArray:
        """Per indicator code (indexed like ``cap``): the sum over its platforms of min(holders, cap)."""
        total = np.zeros(int(cap.size), dtype=np.int64)
        np.add.at(total, self.indicator, np.minimum(np.maximum(self.holders, 0), cap[self.indicator]))
        return total


def _per_platform(
    row_indicator: IntArray,
    row_platform: IntArray,
    indicator_start: IntArray,
    codes: IntArray,
    extra: IntArray,
) -> _Split:
    """Holders per platform of the indicators ``codes``, from deduplicated rows sorted by indicator, plus
    ``extra`` (indicator code, platform, n) triples as a (k, 3) array (bounds in incremental runs)."""
    rows = _ranges(indicator_start[codes], indicator_start[codes + 1])
    ind = np.concatenate([row_indicator[rows], extra[:, 0]])
    plat = np.concatenate([row_platform[rows], extra[:, 1]])
    weight = np.concatenate([np.ones(rows.size, dtype=np.int64), extra[:, 2]])
    plat_code, plat_ids = _densify(plat)
    n_plat = max(int(plat_ids.size), 1)
    keys, inverse = np.unique(ind * n_plat + plat_code, return_inverse=True)
    count = np.bincount(inverse, weights=weight, minlength=keys.size).astype(np.int64)
    pair_ind, pair_plat = np.divmod(keys, n_plat)
    return _Split(pair_ind, plat_ids[pair_plat], count, rows, inverse[: rows.size])


def _star_edges(row_seller: IntArray, row_group: IntArray) -> tuple[IntArray, IntArray]:
    """For rows sorted by group: edges from each group's first seller to the group's other sellers."""
    if row_seller.size == 0:
        return row_seller, row_seller
    is_first = np.ones(row_group.size, dtype=np.bool_)
    is_first[1:] = row_group[1:] != row_group[:-1]
    first_index = np.maximum.accumulate(np.where(is_first, np.arange(row_group.size), 0))
    others = ~is_first
    return row_seller[first_index[others]], row_seller[others]


def _link_edges(prep: _Prepared, row_mask: BoolArray | None = None) -> tuple[IntArray, IntArray]:
    """Star edges (dense seller codes) whose components are exactly the link graph's components."""
    usable = prep.row_usable if row_mask is None else prep.row_usable & row_mask
    strong_rows = usable & prep.strong[prep.row_indicator]
    src_strong, dst_strong = _star_edges(prep.row_seller[strong_rows], prep.row_indicator[strong_rows])

    weak_rows = usable & ~prep.strong[prep.row_indicator]
    n_ind = max(prep.n_indicators, 1)
    by_seller = np.sort(prep.row_seller[weak_rows] * n_ind + prep.row_indicator[weak_rows])
    w_seller, w_ind = np.divmod(by_seller, n_ind)
    # All pairs of weak indicators per seller, by increasing offset within the seller's (sorted) run.
    pair_keys: list[IntArray] = []
    pair_sellers: list[IntArray] = []
    candidates = np.flatnonzero(w_seller[1:] == w_seller[:-1])
    offset = 1
    while candidates.size:
        pair_keys.append(w_ind[candidates] * n_ind + w_ind[candidates + offset])
        pair_sellers.append(w_seller[candidates])
        offset += 1
        candidates = candidates[candidates + offset < w_seller.size]
        candidates = candidates[w_seller[candidates + offset] == w_seller[candidates]]
    if pair_keys:
        keys = np.concatenate(pair_keys)
        sellers = np.concatenate(pair_sellers)
        order = np.argsort(keys, kind="stable")
        src_weak, dst_weak = _star_edges(sellers[order], keys[order])
    else:
        src_weak = dst_weak = np.zeros(0, dtype=np.int64)
    return np.concatenate([src_strong, src_weak]), np.concatenate([dst_strong, dst_weak])


def _component_labels(n_sellers: int, src: IntArray, dst: IntArray) -> IntArray:
    """Label every seller with the smallest seller code of its component (isolated sellers label themselves).

    Components come from SciPy's compiled ``connected_components`` over the star edges: NetworkX's per-edge
    Python cost was 40-80x that at 5M sightings, and SciPy is the established tool for this (not a home-made
    graph library). NetworkX still builds the small per-cluster graphs for evidence.
    """
    adjacency = coo_matrix(
        (np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n_sellers, n_sellers)
    ).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    smallest = np.full(int(labels.max()) + 1 if labels.size else 0, n_sellers, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n_sellers, dtype=np.int64))
    return smallest[labels]


class _Groups(NamedTuple):
    """Components as one array: group ``g`` is ``nodes[bounds[g]:bounds[g + 1]]`` (sorted seller codes)."""

    nodes: IntArray
    bounds: IntArray

    def __len__(self) -> int:
        return int(self.bounds.size) - 1


def _components(n_sellers: int, src: IntArray, dst: IntArray) -> _Groups:
    """Connected components with >= 2 sellers, ordered by their smallest member."""
    if src.size == 0:
        return _Groups(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    label = _component_labels(n_sellers, src, dst)
    size = np.bincount(label, minlength=n_sellers)
    linked = np.flatnonzero(size[label] >= 2)
    linked = linked[np.argsort(label[linked], kind="stable")]  # by component minimum, then by seller
    cuts = np.flatnonzero(np.diff(label[linked])) + 1
    return _Groups(linked, np.concatenate([[0], cuts, [linked.size]]).astype(np.int64))


def _select(groups: _Groups, wanted: BoolArray) -> _Groups:
    """The groups that contain at least one seller flagged in ``wanted``."""
    if not len(groups):
        return groups
    hit = np.maximum.reduceat(wanted[groups.nodes].astype(np.int8), groups.bounds[:-1]) > 0
    lengths = np.diff(groups.bounds)[hit]
    starts = groups.bounds[:-1][hit]
    nodes = groups.nodes[_ranges(starts, starts + lengths)]
    return _Groups(nodes, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def _find(sorted_ids: IntArray, wanted: IntArray) -> tuple[IntArray, BoolArray]:
    """Positions of ``wanted`` in ``sorted_ids`` and a mask of which were found."""
    if sorted_ids.size == 0:
        return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=np.bool_)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), sorted_ids.size - 1).astype(np.int64)
    return pos, sorted_ids[pos] == wanted


def _clusters_from(prep: _Prepared, groups: _Groups, kinds: Sequence[str]) -> tuple[Cluster[int], ...]:
    if not len(groups):
        return ()
    label = np.full(prep.n_sellers, -1, dtype=np.int64)
    label[groups.nodes] = np.repeat(np.arange(len(groups), dtype=np.int64), np.diff(groups.bounds))
    # Context per cluster: the non-linking indicators its members hold.
    per_cluster: list[list[SuppressedIndicator[int]]] = [[] for _ in range(len(groups))]
    rows = np.flatnonzero(~prep.effective[prep.row_indicator] & (label[prep.row_seller] >= 0))  # global only
    if rows.size:
        pairs = _unique(label[prep.row_seller[rows]] * prep.n_indicators + prep.row_indicator[rows])
        cluster_index, indicator_code = np.divmod(pairs, prep.n_indicators)
        codes = _unique(indicator_code)
        by_code = dict(zip(codes.tolist(), _suppressed_records(prep, codes, kinds), strict=True))
        for c, i in zip(cluster_index.tolist(), indicator_code.tolist(), strict=True):
            per_cluster[c].append(by_code[i])
    members = prep.seller_ids[groups.nodes].tolist()
    bounds = groups.bounds.tolist()
    return tuple(
        Cluster(members=tuple(members[bounds[g] : bounds[g + 1]]), suppressed=tuple(per_cluster[g]))
        for g in range(len(groups))
    )


def _suppressed_records(
    prep: _Prepared, codes: IntArray, kinds: Sequence[str]
) -> list[SuppressedIndicator[int]]:
    return [
        SuppressedIndicator(
            indicator=int(prep.indicator_ids[code]),
            kind=kinds[int(prep.kind[code])],
            sellers=int(prep.count[code]),
            reason="common" if prep.common[code] else "threshold",
            counted=int(prep.counted[code]),
        )
        for code in codes.tolist()
    ]


def link_columns(
    seller: ArrayLike,
    indicator: ArrayLike,
    kind: ArrayLike,
    *,
    platform: ArrayLike,
    kinds: Sequence[str] = KINDS,
    strength: Mapping[str, str] | None = None,
    thresholds: Mapping[str, int] | None = None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
    overrides: Mapping[int, Override] | None = None,
    inactive: Iterable[int] = (),
    fresh: Iterable[int] = (),
) -> Linkage[int]:
    """Cluster sellers from parallel columns, one row per sighting.

    ``seller`` and ``indicator`` are integer ids (e.g. primary keys; one indicator id per (kind, token)),
    ``kind[i]`` is the index of row i's kind in ``kinds`` and ``platform[i]`` the id of the platform that
    reported row i's seller (the same on every row of a seller; hub counts cap each platform's share, see
    :class:`HubRule`). ``overrides`` and the returned :class:`SuppressedIndicator` records use indicator ids.
    Duplicate rows are harmless. Sightings of sellers in ``inactive`` are ignored. Sellers in ``fresh`` may be
    held out of linking (see "Held merges" in the module docstring).
    """
    rules = _rules(kinds, strength, thresholds, platform_divisor)
    prep = _prepare(
        _as_int_array(seller),
        _as_int_array(indicator),
        _as_int_array(kind),
        _as_int_array(platform),
        rules,
        overrides or {},
        _id_array(inactive),
    )
    components = _components(prep.n_sellers, *_link_edges(prep))
    groups, held = _hold(prep, components, _fresh_mask(prep, fresh), None)
    return Linkage(
        clusters=_clusters_from(prep, groups, rules.kinds),
        suppressed=tuple(_suppressed_records(prep, np.flatnonzero(~prep.effective), rules.kinds)),
        platform_hubs=_platform_hub_pairs(prep),
        held=held,
    )


def _fresh_mask(prep: _Prepared, fresh: Iterable[int]) -> BoolArray:
    mask = np.zeros(prep.n_sellers, dtype=np.bool_)
    mask[_lookup(prep.seller_ids, _id_array(fresh))] = True
    return mask


def _hold(
    prep: _Prepared, components: _Groups, fresh: BoolArray, row_mask: BoolArray | None
) -> tuple[_Groups, tuple[HeldMerge, ...]]:
    """Hold the fresh sellers that alone join other platforms' parts of ``components``; return the clusters
    of ``components`` without them, and the held merges. ``row_mask`` limits edges as for ``components``."""
    if not len(components) or not fresh.any():
        return components, ()
    label = np.full(prep.n_sellers, -1, dtype=np.int64)
    label[components.nodes] = np.repeat(
        np.arange(len(components), dtype=np.int64), np.diff(components.bounds)
    )
    size = np.diff(components.bounds)
    candidates = fresh & (label >= 0)
    held = np.zeros(prep.n_sellers, dtype=np.bool_)
    found: list[tuple[int, int, BoolArray, list[tuple[int, ...]]]] = []  # (component, platform, held, parts)
    for platform in _unique(prep.seller_platform[candidates]).tolist():
        mine = candidates & (prep.seller_platform == platform)
        fresh_per = np.bincount(label[mine], minlength=len(components))
        # Two parts of two sellers each, besides the fresh ones, or nothing can be held.
        possible = (fresh_per > 0) & (size - fresh_per >= 4)
        if not possible.any():
            continue
        inside = np.zeros(prep.n_sellers, dtype=np.bool_)
        inside[label >= 0] = possible[label[label >= 0]]
        keep = inside[prep.row_seller] & ~mine[prep.row_seller]
        if row_mask is not None:
            keep &= row_mask
        parts = _components(prep.n_sellers, *_link_edges(prep, keep))
        if not len(parts):
            continue
        starts = parts.bounds[:-1]
        of_platform = (prep.seller_platform[parts.nodes] == platform).astype(np.int8)
        foreign = np.maximum.reduceat(of_platform, starts) == 0  # parts with no seller of the platform
        part_component = label[parts.nodes[starts]]
        joined = np.bincount(part_component[foreign], minlength=len(components))
        for component in np.flatnonzero(joined >= 2).tolist():
            in_component = mine & (label == component)
            held |= in_component
            ends = parts.bounds[1:]
            own_parts = [
                tuple(prep.seller_ids[parts.nodes[a:b]].tolist())
                for a, b, f, c in zip(
                    starts.tolist(), ends.tolist(), foreign.tolist(), part_component.tolist(), strict=True
                )
                if f and c == component
            ]
            found.append((component, platform, in_component, own_parts))
    if not found:
        return components, ()
    rows = ~held[prep.row_seller] if row_mask is None else row_mask & ~held[prep.row_seller]
    in_components = label >= 0
    groups = _select(_components(prep.n_sellers, *_link_edges(prep, rows)), in_components)
    merges = []
    for component, platform, in_component, parts_of in found:
        nodes = components.nodes[components.bounds[component] : components.bounds[component + 1]]
        merges.append(
            HeldMerge(
                platform=platform,
                sellers=tuple(prep.seller_ids[np.flatnonzero(in_component)].tolist()),
                parts=tuple(sorted(parts_of)),
                members=tuple(prep.seller_ids[nodes].tolist()),
            )
        )
    merges.sort(key=lambda m: (m.members[0], m.platform))
    return groups, tuple(merges)


def _platform_hub_pairs(prep: _Prepared) -> tuple[tuple[int, int], ...]:
    pairs = prep.platform_hubs
    return tuple(sorted(zip(prep.indicator_ids[pairs[:, 0]].tolist(), pairs[:, 1].tolist(), strict=True)))


# --------------------------------------------------------------------------------------------------------------
# Incremental


def _reachable(prep: _Prepared, seeds: IntArray) -> BoolArray:
    """Sellers reachable from ``seeds`` through linking indicators (a superset of their link components)."""
    by_seller = np.argsort(prep.row_seller, kind="stable")
    seller_start = np.zeros(prep.n_sellers + 1, dtype=np.int64)
    np.cumsum(np.bincount(prep.row_seller, minlength=prep.n_sellers), out=seller_start[1:])
    seen_seller = np.zeros(prep.n_sellers, dtype=np.bool_)
    seen_indicator = ~prep.effective  # never expand through a suppressed indicator
    frontier = _unique(seeds)
    seen_seller[frontier] = True
    while frontier.size:
        rows = by_seller[_ranges(seller_start[frontier], seller_start[frontier + 1])]
        indicators = _unique(prep.row_indicator[rows])
        indicators = indicators[~seen_indicator[indicators]]
        seen_indicator[indicators] = True
        rows = _ranges(prep.indicator_start[indicators], prep.indicator_start[indicators + 1])
        frontier = _unique(prep.row_seller[rows])
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
    rows = np.isin(seller, touched)
    code, found = _find(prep.indicator_ids, indicator[rows])
    if not found.any():
        return flip
    triples = np.unique(np.stack([code[found], seller[rows][found], platform[rows][found]]), axis=1)
    active = ~np.isin(triples[1], inactive)
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


def relink_columns[C: Hashable](
    seller: ArrayLike,
    indicator: ArrayLike,
    kind: ArrayLike,
    *,
    platform: ArrayLike,
    touched_sellers: Iterable[int],
    previous: Mapping[C, Collection[int]],
    touched_indicators: Iterable[int] = (),
    kinds: Sequence[str] = KINDS,
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
    changed[_lookup(prep.indicator_ids, _id_array(touched_indicators))] = True
    codes = np.flatnonzero(changed)
    holder_rows = _ranges(prep.indicator_start[codes], prep.indicator_start[codes + 1])
    affected = set(touched.tolist()) | set(prep.seller_ids[_unique(prep.row_seller[holder_rows])].tolist())

    # Previous clusters and held merges of affected sellers come along whole, transitively (a held merge's
    # members span several clusters).
    held_before = previous_held or {}
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


# --------------------------------------------------------------------------------------------------------------
# Tuple convenience API


@dataclass(slots=True)
class _Encoded:
    seller: IntArray
    indicator: IntArray
    kind: IntArray
    platform: IntArray
    kinds: tuple[str, ...]
    keys: list[IndicatorKey]  # indicator code -> (kind, token)
    codes: dict[IndicatorKey, int]


def _encode(sightings: Iterable[Sighting], strength: Mapping[str, str] | None) -> _Encoded:
    kinds = tuple(DEFAULT_STRENGTH if strength is None else strength)
    kind_code = {kind: index for index, kind in enumerate(kinds)}
    codes: dict[IndicatorKey, int] = {}
    sellers: list[int] = []
    indicators: list[int] = []
    kind_codes: list[int] = []
    platforms: list[int] = []
    for sighting in sightings:
        key = (sighting.kind, sighting.token)
        if sighting.kind not in kind_code:
            raise ValueError(f"unknown indicator kind {sighting.kind!r}")
        sellers.append(sighting.seller_id)
        indicators.append(codes.setdefault(key, len(codes)))
        kind_codes.append(kind_code[sighting.kind])
        platforms.append(sighting.platform_id)
    return _Encoded(
        seller=np.asarray(sellers, dtype=np.int64),
        indicator=np.asarray(indicators, dtype=np.int64),
        kind=np.asarray(kind_codes, dtype=np.int64),
        platform=np.asarray(platforms, dtype=np.int64),
        kinds=kinds,
        keys=list(codes),
        codes=codes,
    )


def indicator_sort_key(key: IndicatorKey) -> tuple[str, bool, Token]:
    """Total order over (kind, token) even when bytes and str tokens are mixed."""
    return (key[0], isinstance(key[1], str), key[1])


def _decode_suppressed(
    records: Iterable[SuppressedIndicator[int]], keys: list[IndicatorKey]
) -> tuple[SuppressedIndicator[IndicatorKey], ...]:
    decoded = [
        SuppressedIndicator(
            indicator=keys[r.indicator], kind=r.kind, sellers=r.sellers, reason=r.reason, counted=r.counted
        )
        for r in records
    ]
    return tuple(sorted(decoded, key=lambda r: indicator_sort_key(r.indicator)))


def _decode_clusters(
    clusters: Iterable[Cluster[int]], keys: list[IndicatorKey]
) -> tuple[Cluster[IndicatorKey], ...]:
    return tuple(
        Cluster(members=c.members, suppressed=_decode_suppressed(c.suppressed, keys)) for c in clusters
    )


def _encode_overrides(
    overrides: IndicatorOverrides | None, codes: dict[IndicatorKey, int]
) -> dict[int, Override]:
    return {codes[key]: value for key, value in (overrides or {}).items() if key in codes}


def link(
    sightings: Iterable[Sighting],
    *,
    strength: Mapping[str, str] | None = None,
    thresholds: Mapping[str, int] | None = None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
    overrides: IndicatorOverrides | None = None,
    inactive: Iterable[int] = (),
    fresh: Iterable[int] = (),
) -> Linkage[IndicatorKey]:
    """Cluster sellers from :class:`Sighting` tuples; see :func:`link_columns` and the module docstring."""
    enc = _encode(sightings, strength)
    result = link_columns(
        enc.seller,
        enc.indicator,
        enc.kind,
        platform=enc.platform,
        kinds=enc.kinds,
        strength=strength,
        thresholds=thresholds,
        platform_divisor=platform_divisor,
        overrides=_encode_overrides(overrides, enc.codes),
        inactive=inactive,
        fresh=fresh,
    )
    return Linkage(
        clusters=_decode_clusters(result.clusters, enc.keys),
        suppressed=_decode_suppressed(result.suppressed, enc.keys),
        platform_hubs=_decode_hubs(result.platform_hubs, enc.keys),
        held=result.held,
    )


def _decode_hubs(
    pairs: Iterable[tuple[int, int]], keys: list[IndicatorKey]
) -> tuple[tuple[IndicatorKey, int], ...]:
    decoded = [(keys[indicator], platform) for indicator, platform in pairs]
    return tuple(sorted(decoded, key=lambda pair: (indicator_sort_key(pair[0]), pair[1])))


def relink[C: Hashable](
    sightings: Iterable[Sighting],
    *,
    touched_sellers: Iterable[int],
    previous: Mapping[C, Collection[int]],
    touched_indicators: Iterable[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    thresholds: Mapping[str, int] | None = None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
    overrides: IndicatorOverrides | None = None,
    inactive: Iterable[int] = (),
    fresh: Iterable[int] = (),
    previous_held: Mapping[Any, Collection[int]] | None = None,
) -> Relinkage[IndicatorKey, C]:
    """Incremental :func:`link` over :class:`Sighting` tuples; see :func:`relink_columns` for the contract."""
    enc = _encode(sightings, strength)
    result = relink_columns(
        enc.seller,
        enc.indicator,
        enc.kind,
        platform=enc.platform,
        touched_sellers=touched_sellers,
        previous=previous,
        touched_indicators=[enc.codes[key] for key in touched_indicators if key in enc.codes],
        kinds=enc.kinds,
        strength=strength,
        thresholds=thresholds,
        platform_divisor=platform_divisor,
        overrides=_encode_overrides(overrides, enc.codes),
        inactive=inactive,
        fresh=fresh,
        previous_held=previous_held,
    )
    return Relinkage(
        clusters=_decode_clusters(result.clusters, enc.keys),
        retired=result.retired,
        scope=result.scope,
        platform_hubs=_decode_hubs(result.platform_hubs, enc.keys),
        held=result.held,
        retired_held=result.retired_held,
    )
