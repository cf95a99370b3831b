"""Why a cluster holds together (pure, over one cluster's sightings).

Every function takes the sightings of one cluster's active members and the indicators that are suppressed
from linking (``Linkage.suppressed`` or the stored state: hub suppression depends on *global* counts, which one
cluster's sightings cannot tell). Tokens are returned so that the exchange's own analysts can see them; the
Django side strips them (and other platforms' seller ids) before anything reaches a partner.

The member link graph is built pairwise per linking indicator. That is quadratic in an indicator's holders,
but within a cluster a linking indicator has at most its kind's threshold of holders (an "include" override is
the analyst's explicit choice), so it stays small.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import networkx as nx
import numpy as np
import numpy.typing as npt

from graph.linking import (
    DEFAULT_STRENGTH,
    BoolArray,
    IndicatorKey,
    IntArray,
    Sighting,
    Strength,
    Token,
    distinct,
    distinct_inverse,
    indicator_sort_key,
    isin,
    weak_groups_link,
    weak_indicators_link,
)


class NotLinked(ValueError):
    """The two sellers are not connected by links within the given sightings."""


@dataclass(frozen=True, slots=True)
class SharedIndicator:
    kind: str
    token: Token
    strength: Strength
    sellers: int  # holders: globally if ``seller_counts`` was given, else among the given sightings
    platforms: int  # platforms of the holders among the given sightings
    first_seen: datetime | None  # earliest sighting among the given sightings

    @property
    def key(self) -> IndicatorKey:
        return (self.kind, self.token)


@dataclass(frozen=True, slots=True)
class Link:
    """Two members and the linking indicators they share (strong first)."""

    a: int
    b: int
    indicators: tuple[SharedIndicator, ...]

    @property
    def strong(self) -> bool:
        return any(indicator.strength == "strong" for indicator in self.indicators)


@dataclass(frozen=True, slots=True)
class HoldingIndicator:
    indicator: SharedIndicator
    links: int  # member pairs whose link it is part of


def _sort_key(indicator: SharedIndicator) -> tuple[bool, int, tuple[str, bool, Token]]:
    return (indicator.strength != "strong", -indicator.sellers, indicator_sort_key(indicator.key))


def link_graph(
    cluster_sightings: Iterable[Sighting],
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    seller_counts: Mapping[IndicatorKey, int] | None = None,
) -> nx.Graph:
    """Members as nodes, links as edges with attribute ``link`` (a :class:`Link`). Deterministic order."""
    strength = DEFAULT_STRENGTH if strength is None else strength
    suppressed = frozenset(suppressed)
    holders: dict[IndicatorKey, set[int]] = {}
    platforms: dict[IndicatorKey, set[int]] = {}
    first_seen: dict[IndicatorKey, datetime | None] = {}
    members: set[int] = set()
    for sighting in cluster_sightings:
        key = (sighting.kind, sighting.token)
        members.add(sighting.seller_id)
        holders.setdefault(key, set()).add(sighting.seller_id)
        platforms.setdefault(key, set()).add(sighting.platform_id)
        seen = sighting.first_seen
        earliest = first_seen.get(key, seen)
        first_seen[key] = seen if earliest is None else earliest if seen is None else min(earliest, seen)

    shared: dict[tuple[int, int], list[SharedIndicator]] = {}
    for key in sorted(holders, key=indicator_sort_key):
        sellers = holders[key]
        if len(sellers) < 2 or key in suppressed:
            continue
        indicator = SharedIndicator(
            kind=key[0],
            token=key[1],
            strength="strong" if strength[key[0]] == "strong" else "weak",
            sellers=seller_counts.get(key, len(sellers)) if seller_counts is not None else len(sellers),
            platforms=len(platforms[key]),
            first_seen=first_seen[key],
        )
        for pair in itertools.combinations(sorted(sellers), 2):
            shared.setdefault(pair, []).append(indicator)

    graph = nx.Graph()
    graph.add_nodes_from(sorted(members))
    for (a, b), indicators in sorted(shared.items()):
        link = Link(a, b, tuple(sorted(indicators, key=_sort_key)))
        if link.strong or weak_indicators_link(indicator.kind for indicator in indicators):
            graph.add_edge(a, b, link=link)
    return graph


def evidence_chain(
    cluster_sightings: Iterable[Sighting],
    a: int,
    b: int,
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    seller_counts: Mapping[IndicatorKey, int] | None = None,
) -> list[Link]:
    """The shortest chain of links from ``a`` to ``b`` (oriented along the chain); ``[]`` when ``a == b``.

    Raises :class:`NotLinked` if there is no chain.
    """
    graph = link_graph(
        cluster_sightings, suppressed=suppressed, strength=strength, seller_counts=seller_counts
    )
    if a not in graph or b not in graph:
        raise NotLinked(f"seller {a if a not in graph else b} is not among the sightings")
    try:
        path = nx.shortest_path(graph, a, b)
    except nx.NetworkXNoPath as error:
        raise NotLinked(f"sellers {a} and {b} are not linked") from error
    return [Link(u, v, graph.edges[u, v]["link"].indicators) for u, v in itertools.pairwise(path)]


def evidence_tree(
    cluster_sightings: Iterable[Sighting],
    order: Sequence[int],
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    seller_counts: Mapping[IndicatorKey, int] | None = None,
) -> list[Link]:
    """The evidence for a whole cluster: links that reach every member from a root by its shortest chain (a
    breadth-first spanning forest of the link graph, one link fewer than the members of each component).

    Roots are taken, and a member's neighbours visited, in the order of ``order`` (members it leaves out come
    after it, by id), so the same data gives the same links. Each link is oriented away from its root.
    """
    graph = link_graph(
        cluster_sightings, suppressed=suppressed, strength=strength, seller_counts=seller_counts
    )
    rank = {seller: n for n, seller in enumerate(order)}

    def key(seller: int) -> tuple[int, int]:
        return (rank.get(seller, len(rank)), seller)

    reached: set[int] = set()
    links: list[Link] = []
    for root in sorted(graph.nodes, key=key):
        if root in reached:
            continue
        reached.add(root)
        queue = deque([root])
        while queue:
            here = queue.popleft()
            for there in sorted(graph.neighbors(here), key=key):
                if there not in reached:
                    reached.add(there)
                    queue.append(there)
                    links.append(Link(here, there, graph.edges[here, there]["link"].indicators))
    return links


def holding_indicators(
    cluster_sightings: Iterable[Sighting],
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    seller_counts: Mapping[IndicatorKey, int] | None = None,
) -> list[HoldingIndicator]:
    """Indicators that are part of at least one link between members; strong first, most holders first."""
    graph = link_graph(
        cluster_sightings, suppressed=suppressed, strength=strength, seller_counts=seller_counts
    )
    counts: dict[IndicatorKey, int] = {}
    by_key: dict[IndicatorKey, SharedIndicator] = {}
    for _, _, link in graph.edges(data="link"):
        for indicator in link.indicators:
            counts[indicator.key] = counts.get(indicator.key, 0) + 1
            by_key[indicator.key] = indicator
    ordered = sorted(by_key.values(), key=_sort_key)
    return [HoldingIndicator(indicator, counts[indicator.key]) for indicator in ordered]


def bridges(
    cluster_sightings: Iterable[Sighting],
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
    seller_counts: Mapping[IndicatorKey, int] | None = None,
) -> list[SharedIndicator]:
    """Indicators whose removal would split the cluster (more connected components without them).

    Approach: removal check per holding indicator. Removing indicator X drops exactly the links whose pair
    no longer qualifies without X (no other strong indicator and no two other weak ones that link); the cluster
    splits if the remaining link graph has more components. Articulation points of the seller-indicator graph
    are not enough on their own because two weak indicators are needed per link, so this check is exact
    where that shortcut would not be; it costs O(holding indicators x links), fine for one cluster.
    """
    graph = link_graph(
        cluster_sightings, suppressed=suppressed, strength=strength, seller_counts=seller_counts
    )
    baseline = nx.number_connected_components(graph)
    using: dict[IndicatorKey, list[tuple[int, int]]] = {}
    by_key: dict[IndicatorKey, SharedIndicator] = {}
    for a, b, link in graph.edges(data="link"):
        for indicator in link.indicators:
            rest = [other for other in link.indicators if other.key != indicator.key]
            survives = any(other.strength == "strong" for other in rest) or weak_indicators_link(
                other.kind for other in rest
            )
            by_key[indicator.key] = indicator
            if not survives:
                using.setdefault(indicator.key, []).append((a, b))
    result: list[SharedIndicator] = []
    for key, needed in using.items():
        without = graph.copy()
        without.remove_edges_from(needed)
        if nx.number_connected_components(without) > baseline:
            result.append(by_key[key])
    return sorted(result, key=_sort_key)


def link_counts(graph: nx.Graph) -> tuple[int, int]:
    """(strong links, weak-only links) of a :func:`link_graph`: input to the risk score."""
    strong = sum(1 for _, _, link in graph.edges(data="link") if link.strong)
    return strong, graph.number_of_edges() - strong


def link_summary(
    cluster_sightings: Iterable[Sighting],
    *,
    suppressed: Collection[IndicatorKey] = (),
    strength: Mapping[str, str] | None = None,
) -> tuple[int, int, list[str]]:
    """(strong links, weak-only links, kinds on links) without building a graph: what every recomputation
    needs for the risk score of thousands of clusters. Equal to :func:`link_counts` of :func:`link_graph`."""
    strength = DEFAULT_STRENGTH if strength is None else strength
    suppressed = frozenset(suppressed)
    holders: dict[IndicatorKey, set[int]] = {}
    for sighting in cluster_sightings:
        holders.setdefault((sighting.kind, sighting.token), set()).add(sighting.seller_id)
    strong: set[tuple[int, int]] = set()
    weak: dict[tuple[int, int], list[str]] = {}  # kinds of the pair's shared weak indicators
    kinds_of: dict[tuple[int, int], set[str]] = {}
    for key, sellers in holders.items():
        if len(sellers) < 2 or key in suppressed:
            continue
        is_strong = strength[key[0]] == "strong"
        for pair in itertools.combinations(sorted(sellers), 2):
            if is_strong:
                strong.add(pair)
            else:
                weak.setdefault(pair, []).append(key[0])
            kinds_of.setdefault(pair, set()).add(key[0])
    linked = strong | {pair for pair, kinds in weak.items() if weak_indicators_link(kinds)}
    kinds = sorted({kind for pair in linked for kind in kinds_of[pair]})
    return len(strong), len(linked) - len(strong), kinds


def link_summaries(
    cluster: npt.ArrayLike,
    seller: npt.ArrayLike,
    indicator: npt.ArrayLike,
    kind: npt.ArrayLike,
    strong_kind: npt.ArrayLike,
    kind_family: npt.ArrayLike,
    n_clusters: int,
) -> tuple[IntArray, IntArray, IntArray]:
    """:func:`link_summary` of many clusters at once, over parallel columns with one row per sighting.

    ``cluster[i]`` is row i's cluster (0..n_clusters-1; a seller belongs to one cluster), ``seller[i]`` and
    ``indicator[i]`` are ids (an indicator id stands for one (kind, token)), ``kind[i]`` its kind code (< 63)
    ``strong_kind[k]`` whether kind code k is strong and ``kind_family[k]`` its family code
    (:func:`graph.linking.family_codes`: the weak rule, :func:`graph.linking.weak_indicators_link`). Suppressed indicators' rows must be left out (what
    ``suppressed`` does for :func:`link_summary`); duplicate rows are harmless.

    Returns per cluster (strong links, weak-only links, kinds on links as a bit mask: bit k for kind code k).
    Member pairs are enumerated per shared indicator as :func:`link_summary` does, but as whole columns: one
    numpy pass per position offset within an indicator's holders instead of a Python loop per pair.
    """
    cluster_ = np.asarray(cluster, dtype=np.int64)
    seller_ = np.asarray(seller, dtype=np.int64)
    indicator_ = np.asarray(indicator, dtype=np.int64)
    kind_ = np.asarray(kind, dtype=np.int64)
    strong_of_kind: BoolArray = np.asarray(strong_kind, dtype=np.bool_)
    family_of_kind = np.asarray(kind_family, dtype=np.int64)
    strong_links = np.zeros(n_clusters, dtype=np.int64)
    weak_links = np.zeros(n_clusters, dtype=np.int64)
    kind_mask = np.zeros(n_clusters, dtype=np.int64)
    if seller_.size == 0:
        return strong_links, weak_links, kind_mask
    # Rows sorted by (cluster, indicator, seller) without duplicates: each holder group is one run.
    order = np.lexsort((seller_, indicator_, cluster_))
    cluster_, seller_, indicator_, kind_ = cluster_[order], seller_[order], indicator_[order], kind_[order]
    new_row = np.ones(seller_.size, dtype=np.bool_)
    new_row[1:] = (
        (cluster_[1:] != cluster_[:-1]) | (indicator_[1:] != indicator_[:-1]) | (seller_[1:] != seller_[:-1])
    )
    cluster_, seller_, indicator_, kind_ = (
        cluster_[new_row],
        seller_[new_row],
        indicator_[new_row],
        kind_[new_row],
    )
    seller_ids, seller_code = distinct_inverse(seller_)
    n_sellers = int(seller_ids.size)
    seller_cluster = np.empty(n_sellers, dtype=np.int64)
    seller_cluster[seller_code] = cluster_  # a seller is in one cluster
    same_group = (cluster_[1:] == cluster_[:-1]) & (indicator_[1:] == indicator_[:-1])
    # Every pair of holders (a < b: sellers ascend within a run), one numpy pass per offset within the run.
    firsts: list[IntArray] = []
    offsets: list[int] = []
    candidates = np.flatnonzero(same_group)
    offset = 1
    while candidates.size:
        firsts.append(candidates)
        offsets.append(offset)
        offset += 1
        candidates = candidates[candidates + offset < seller_.size]
        candidates = candidates[
            (cluster_[candidates + offset] == cluster_[candidates])
            & (indicator_[candidates + offset] == indicator_[candidates])
        ]
    if not firsts:
        return strong_links, weak_links, kind_mask
    a = np.concatenate(firsts)
    b = np.concatenate([first + off for first, off in zip(firsts, offsets, strict=True)])
    pair = seller_code[a] * n_sellers + seller_code[b]  # a seller is in one cluster: so is the pair
    pair_cluster, pair_kind = cluster_[a], kind_[a]
    is_strong = strong_of_kind[pair_kind]
    # Sort-based set operations throughout (graph.linking.distinct, isin): numpy 2's hash-based np.unique and
    # the np.isin / np.union1d built on it cost several times more on the hundreds of thousands of pairs here.
    strong_pairs = distinct(pair[is_strong])
    # A pair linked by weak indicators alone needs two different ones (rows are distinct per indicator) that are
    # not all of different kinds within one family (weak_indicators_link, counted per pair as whole columns).
    weak_pairs, weak_pair_of = distinct_inverse(pair[~is_strong])
    weak_linked = weak_pairs[
        weak_groups_link(weak_pair_of, pair_kind[~is_strong], family_of_kind, weak_pairs.size)
    ]
    weak_only = weak_linked[~isin(weak_linked, strong_pairs, test_sorted=True)]
    linked = np.sort(np.concatenate([strong_pairs, weak_only]))  # disjoint, each distinct
    cluster_of_pair = seller_cluster[linked // max(n_sellers, 1)]
    is_strong_pair = isin(linked, strong_pairs, test_sorted=True)
    strong_links = np.bincount(cluster_of_pair[is_strong_pair], minlength=n_clusters).astype(np.int64)
    weak_links = np.bincount(cluster_of_pair[~is_strong_pair], minlength=n_clusters).astype(np.int64)
    # Kinds on links: one bit per distinct (cluster, kind) of the pair rows on a link.
    on_link = isin(pair, linked, test_sorted=True)
    cluster_kind = distinct(pair_cluster[on_link] * 64 + pair_kind[on_link])
    np.bitwise_or.at(kind_mask, cluster_kind // 64, np.left_shift(1, cluster_kind % 64))
    return strong_links, weak_links, kind_mask
