"""The tuple convenience API (:func:`link`, :func:`relink`): encode :class:`Sighting` tuples into columns,
run the column core, decode indicator codes back to (kind, token) keys."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graph.linking.arrays import IntArray
from graph.linking.full import link_columns
from graph.linking.incremental import relink_columns
from graph.linking.records import (
    Cluster,
    IndicatorKey,
    IndicatorOverrides,
    Linkage,
    Override,
    Relinkage,
    Sighting,
    SuppressedIndicator,
    Token,
)
from graph.linking.rules import DEFAULT_PLATFORM_DIVISOR, DEFAULT_STRENGTH


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
