"""Link components without a pairwise graph: star edges over strong indicators and weak pairs, then a
*component labeller* (SciPy's compiled ``connected_components`` by default, :func:`component_labels`; another
engine can be passed, see :data:`ComponentLabeller`). ``_Groups`` holds the components as one array."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from graph.linking.arrays import BoolArray, IntArray, _ranges, _run_starts
from graph.linking.prepare import _Prepared
from graph.linking.rules import weak_pairs_count


def _star_edges(row_seller: IntArray, row_group: IntArray) -> tuple[IntArray, IntArray]:
    """For rows sorted by group: edges from each group's first seller to the group's other sellers."""
    if row_seller.size == 0:
        return row_seller, row_seller
    is_first = _run_starts(row_group)
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
    # All pairs of weak indicators per seller that count (weak_pairs_count), by increasing offset within the
    # seller's (sorted) run.
    pair_keys: list[IntArray] = []
    pair_sellers: list[IntArray] = []
    candidates = np.flatnonzero(w_seller[1:] == w_seller[:-1])
    offset = 1
    while candidates.size:
        first, second = w_ind[candidates], w_ind[candidates + offset]
        # Only pairs that are two pieces of evidence (not an exact address and its own fuzzy group's kind).
        counts = weak_pairs_count(prep.kind[first], prep.kind[second], prep.kind_family)
        pair_keys.append(first[counts] * n_ind + second[counts])
        pair_sellers.append(w_seller[candidates[counts]])
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


ComponentLabeller = Callable[[int, IntArray, IntArray], IntArray]
"""``(n_sellers, src, dst) -> labels``: for the undirected graph on seller codes ``0..n_sellers-1`` with edges
``src[i] - dst[i]``, every seller's label is the smallest seller code of its component (an isolated seller
labels itself). Everything after the labels is a function of them alone, so two labellers that agree give
identical clusters, held merges and context: :func:`component_labels` (SciPy, in memory) is the default;
:class:`graph.linking.spark.SparkComponents` computes the same labels on a Spark cluster."""


def component_labels(n_sellers: int, src: IntArray, dst: IntArray) -> IntArray:
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


def _components(
    n_sellers: int, src: IntArray, dst: IntArray, labeller: ComponentLabeller = component_labels
) -> _Groups:
    """Connected components with >= 2 sellers, ordered by their smallest member."""
    if src.size == 0:
        return _Groups(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    label = labeller(n_sellers, src, dst)
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
