"""Held merges: one platform's fresh sellers that alone would join other platforms' parts of a link component
are held out of linking (see "Held merges" in :mod:`graph.linking`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from graph.linking.arrays import BoolArray, _id_array, _lookup, distinct
from graph.linking.components import (
    ComponentLabeller,
    _components,
    _Groups,
    _link_edges,
    _select,
    component_labels,
)
from graph.linking.prepare import _Prepared
from graph.linking.records import HeldMerge


def _fresh_mask(prep: _Prepared, fresh: Iterable[int]) -> BoolArray:
    mask = np.zeros(prep.n_sellers, dtype=np.bool_)
    mask[_lookup(prep.seller_ids, _id_array(fresh))] = True
    return mask


def _hold(
    prep: _Prepared,
    components: _Groups,
    fresh: BoolArray,
    row_mask: BoolArray | None,
    labeller: ComponentLabeller = component_labels,
) -> tuple[_Groups, tuple[HeldMerge, ...]]:
    """Hold the fresh sellers that alone join other platforms' parts of ``components``; return the clusters
    of ``components`` without them, and the held merges. ``row_mask`` limits edges as for ``components``;
    ``labeller`` computes every component of the sub-graphs (the same engine as ``components``)."""
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
    for platform in distinct(prep.seller_platform[candidates]).tolist():
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
        parts = _components(prep.n_sellers, *_link_edges(prep, keep), labeller)
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
    groups = _select(_components(prep.n_sellers, *_link_edges(prep, rows), labeller), in_components)
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
