"""A full linking run over columns (:func:`link_columns`), and the cluster, suppression and platform-hub
records built from components (shared with the incremental run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from exchange.normalization import LINK_KINDS
from graph.linking.arrays import ArrayLike, IntArray, _as_int_array, _id_array, distinct
from graph.linking.components import ComponentLabeller, _components, _Groups, _link_edges, component_labels
from graph.linking.held import _fresh_mask, _hold
from graph.linking.prepare import _prepare, _Prepared
from graph.linking.records import Cluster, Linkage, Override, SuppressedIndicator
from graph.linking.rules import DEFAULT_PLATFORM_DIVISOR, _rules


def _clusters_from(prep: _Prepared, groups: _Groups, kinds: Sequence[str]) -> tuple[Cluster[int], ...]:
    if not len(groups):
        return ()
    label = np.full(prep.n_sellers, -1, dtype=np.int64)
    label[groups.nodes] = np.repeat(np.arange(len(groups), dtype=np.int64), np.diff(groups.bounds))
    # Context per cluster: the non-linking indicators its members hold.
    per_cluster: list[list[SuppressedIndicator[int]]] = [[] for _ in range(len(groups))]
    rows = np.flatnonzero(~prep.effective[prep.row_indicator] & (label[prep.row_seller] >= 0))  # global only
    if rows.size:
        pairs = distinct(label[prep.row_seller[rows]] * prep.n_indicators + prep.row_indicator[rows])
        cluster_index, indicator_code = np.divmod(pairs, prep.n_indicators)
        codes = distinct(indicator_code)
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
    kinds: Sequence[str] = LINK_KINDS,
    strength: Mapping[str, str] | None = None,
    thresholds: Mapping[str, int] | None = None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
    overrides: Mapping[int, Override] | None = None,
    inactive: Iterable[int] = (),
    fresh: Iterable[int] = (),
    labeller: ComponentLabeller = component_labels,
) -> Linkage[int]:
    """Cluster sellers from parallel columns, one row per sighting.

    ``seller`` and ``indicator`` are integer ids (e.g. primary keys; one indicator id per (kind, token)),
    ``kind[i]`` is the index of row i's kind in ``kinds`` and ``platform[i]`` the id of the platform that
    reported row i's seller (the same on every row of a seller; hub counts cap each platform's share, see
    :class:`HubRule`). ``overrides`` and the returned :class:`SuppressedIndicator` records use indicator ids.
    Duplicate rows are harmless. Sightings of sellers in ``inactive`` are ignored. Sellers in ``fresh`` may be
    held out of linking (see "Held merges" in the module docstring). ``labeller`` computes all the connected
    components of the run, the held-merge passes included (:data:`ComponentLabeller`): SciPy in memory by
    default, or e.g. :class:`graph.linking.spark.SparkComponents` when the graph outgrows one machine.
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
    components = _components(prep.n_sellers, *_link_edges(prep), labeller)
    groups, held = _hold(prep, components, _fresh_mask(prep, fresh), None, labeller)
    return Linkage(
        clusters=_clusters_from(prep, groups, rules.kinds),
        suppressed=tuple(_suppressed_records(prep, np.flatnonzero(~prep.effective), rules.kinds)),
        platform_hubs=_platform_hub_pairs(prep),
        held=held,
    )


def _platform_hub_pairs(prep: _Prepared) -> tuple[tuple[int, int], ...]:
    pairs = prep.platform_hubs
    return tuple(sorted(zip(prep.indicator_ids[pairs[:, 0]].tolist(), pairs[:, 1].tolist(), strict=True)))
