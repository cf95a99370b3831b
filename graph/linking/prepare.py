"""The first step of every run: active, deduplicated, densely coded sightings of shared indicators
(``_Prepared``), with analyst overrides and hub suppression applied per indicator and per platform."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from graph.linking.arrays import (
    BoolArray,
    IntArray,
    _densify,
    _id_array,
    _lookup,
    _on_several_rows,
    _ranges,
    _run_starts,
    distinct,
    distinct_inverse,
    isin,
)
from graph.linking.records import Override
from graph.linking.rules import _Rules


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
    kind_family: IntArray  # the weak rule's table per *kind* code (``_Rules.family``, ``family_codes``)
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
    rows = _shared_rows(seller, indicator, kind, platform, inactive)
    common, include = _override_masks(rows.indicator_ids, overrides)
    threshold, cap = rules.threshold[rows.kind], rules.cap[rows.kind]
    counted, effective, row_usable, platform_hubs = _hub_suppression(rows, threshold, cap, common, include)
    return _Prepared(
        seller_ids=rows.seller_ids,
        indicator_ids=rows.indicator_ids,
        row_seller=rows.row_seller,
        row_indicator=rows.row_indicator,
        seller_platform=rows.seller_platform,
        indicator_start=rows.indicator_start,
        count=rows.holders,
        counted=counted,
        kind=rows.kind,
        strong=rules.strong[rows.kind],
        kind_family=rules.family,
        threshold=threshold,
        cap=cap,
        common=common,
        include=include,
        effective=effective,
        row_usable=row_usable,
        platform_hubs=platform_hubs,
    )


class _Rows(NamedTuple):
    """Active sightings of shared indicators: deduplicated, densely coded, sorted by (indicator, seller)."""

    seller_ids: IntArray  # dense seller code -> seller id (ascending)
    indicator_ids: IntArray  # dense indicator code -> indicator id (ascending)
    row_seller: IntArray
    row_indicator: IntArray
    row_platform: IntArray  # platform id per row
    seller_platform: IntArray  # dense seller code -> platform id
    indicator_start: IntArray  # rows of indicator i are indicator_start[i]:indicator_start[i + 1]
    holders: IntArray  # sellers per indicator (``count`` would shadow ``tuple.count``)
    kind: IntArray  # kind code per indicator


def _shared_rows(
    seller: IntArray, indicator: IntArray, kind: IntArray, platform: IntArray, inactive: IntArray
) -> _Rows:
    """Drop inactive sellers' rows, duplicate rows and indicators held by fewer than two sellers; code the
    rest."""
    if inactive.size:
        active = ~isin(seller, inactive)
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
    keys = distinct(ind_code * n_sellers + seller_code)
    row_indicator, row_seller = np.divmod(keys, n_sellers)
    # Drop indicators that only had duplicate rows of one seller.
    rows_per = np.bincount(row_indicator, minlength=ind_ids.size)
    keep = rows_per[row_indicator] >= 2
    row_indicator, row_seller = row_indicator[keep], row_seller[keep]
    # Re-code indicators compactly (rows are sorted by indicator) and sellers likewise.
    starts_mask = _run_starts(row_indicator)
    first_rows = np.flatnonzero(starts_mask)
    old_codes = row_indicator[first_rows]
    row_indicator = np.cumsum(starts_mask, dtype=np.int64) - 1
    seller_code2, seller_ids2 = (
        _densify(seller_ids[row_seller]) if row_seller.size else (row_seller, row_seller)
    )
    indicator_start = np.append(first_rows, row_indicator.size).astype(np.int64)
    row_platform = platform_of[row_seller]
    seller_platform = np.zeros(seller_ids2.size, dtype=np.int64)
    seller_platform[seller_code2] = row_platform
    return _Rows(
        seller_ids=seller_ids2,
        indicator_ids=ind_ids[old_codes],
        row_seller=seller_code2,
        row_indicator=row_indicator,
        row_platform=row_platform,
        seller_platform=seller_platform,
        indicator_start=indicator_start,
        holders=np.diff(indicator_start),
        kind=kind_of[old_codes],
    )


def _override_masks(
    indicator_ids: IntArray, overrides: Mapping[int, Override]
) -> tuple[BoolArray, BoolArray]:
    """Per indicator code: marked ``"common"`` and marked ``"include"`` by an analyst."""
    common = np.zeros(indicator_ids.size, dtype=np.bool_)
    include = np.zeros(indicator_ids.size, dtype=np.bool_)
    if overrides:
        bad = {value for value in overrides.values() if value not in ("common", "include")}
        if bad:
            raise ValueError(f"override must be 'common' or 'include', got {sorted(bad)}")
        common[_lookup(indicator_ids, _id_array(k for k, v in overrides.items() if v == "common"))] = True
        include[_lookup(indicator_ids, _id_array(k for k, v in overrides.items() if v == "include"))] = True
    return common, include


def _hub_suppression(
    rows: _Rows, threshold: IntArray, cap: IntArray, common: BoolArray, include: BoolArray
) -> tuple[IntArray, BoolArray, BoolArray, IntArray]:
    """Hub suppression (:class:`~graph.linking.rules.HubRule`) over the coded rows: the counted holders and
    whether it links per indicator, whether each row links, and the (indicator code, platform id) pairs whose
    platform alone is over the threshold."""
    count, row_indicator = rows.holders, rows.row_indicator
    counted = count.copy()
    effective = ((count <= threshold) | include) & ~common
    row_usable = effective[row_indicator]
    platform_hubs = np.zeros((0, 2), dtype=np.int64)
    # Capping only lowers a count and no platform holds more than all of them, so only indicators over their
    # threshold by the plain count need the per-platform pass (a few hubs, not the millions of rows).
    over = np.flatnonzero((count > threshold) & ~include & ~common)
    if over.size:
        split = _per_platform(
            row_indicator, rows.row_platform, rows.indicator_start, over, np.zeros((0, 3), np.int64)
        )
        counted[over] = split.capped_total(cap)[over]
        effective[over] = counted[over] <= threshold[over]
        local = split.holders > threshold[split.indicator]
        platform_hubs = np.stack([split.indicator[local], split.platform[local]], axis=1)
        row_usable = effective[row_indicator]
        row_usable[split.rows] &= ~local[split.row_pair]
    return counted, effective, row_usable, platform_hubs


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
    keys, inverse = distinct_inverse(ind * n_plat + plat_code)
    count = np.bincount(inverse, weights=weight, minlength=keys.size).astype(np.int64)
    pair_ind, pair_plat = np.divmod(keys, n_plat)
    return _Split(pair_ind, plat_ids[pair_plat], count, rows, inverse[: rows.size])
