"""Which platform hears what when a recomputation changes clusters (pure: no Django).

The facts are the ones the cluster events (`ClusterEvent`) are made of, in the same step of the same
recomputation (`graph.clustering._apply`): the identity changes of `graph.identity.assign_identities` and the
clusters' members before and after. From them, for each platform that receives webhooks:

- ``cluster.joined``: its sellers that are now in a cross-platform cluster and were not in one before (a new
  cross-platform cluster; sellers joining one; a cluster of theirs becoming cross-platform by growing).
  One event per cluster, naming the sellers.
- ``cluster.left``: its sellers that were in a cross-platform cluster and are in none now (retracted or
  expired reports, links that stopped, a cluster that dissolved or is no longer cross-platform).
- ``cluster.merged``: a cluster its sellers were in was merged with others (cross-platform before or after):
  one event on the merged cluster, naming the platform's sellers in it and the former clusters it knew.
- ``cluster.split``: a cross-platform cluster its sellers were in split: one event on the former cluster,
  with the pieces its own sellers went to (and how many pieces there are in all).

A seller moved between two cross-platform clusters is reported by the merge or split that moved it, not as
left and joined. Other platforms' sellers are never named: `Notice.sellers` and the pieces hold only the
receiving platform's own sellers, `related` only clusters that platform had sellers in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from exchange.client.webhooks import CLUSTER_JOINED, CLUSTER_LEFT, CLUSTER_MERGED, CLUSTER_SPLIT
from graph.identity import ClusterChange

Members = frozenset[int]
Cross = Callable[[bool, int], bool]  # (after?, cluster id) -> whether it spans two or more platforms


@dataclass(frozen=True, slots=True)
class Notice:
    """One event for one platform about one cluster (ids, not yet payloads)."""

    platform: int
    type: str
    cluster: int
    sellers: tuple[int, ...]  # the platform's own sellers concerned, sorted
    related: tuple[int, ...] = ()  # merged: its former clusters that were absorbed
    pieces: tuple[tuple[int | None, tuple[int, ...]], ...] = ()  # split: (cluster or None, own sellers)
    count: int = 0  # merged: clusters absorbed; split: pieces in all


def membership_notices(
    previous: Mapping[int, Members],
    current: Mapping[int, Members],
    changes: Sequence[ClusterChange],
    platform_of: Mapping[int, int],
    platforms: Collection[int],
) -> list[Notice]:
    """The events for `platforms` when the clusters `previous` (id -> members) were replaced by `current`.

    `changes` are the identity changes between them, on the clusters' real ids; `platform_of` maps every
    seller of both to its platform."""
    if not platforms:
        return []
    cross_cache: dict[tuple[bool, int], bool] = {}

    def cross(after: bool, cluster: int) -> bool:
        key = (after, cluster)
        if key not in cross_cache:
            members = (current if after else previous)[cluster]
            cross_cache[key] = len({platform_of.get(m) for m in members} - {None}) >= 2
        return cross_cache[key]

    before_of = _owner(previous, platform_of, platforms)
    after_of = _owner(current, platform_of, platforms)
    notices: list[Notice] = []

    joined: dict[tuple[int, int], list[int]] = defaultdict(list)
    left: dict[tuple[int, int], list[int]] = defaultdict(list)
    for seller in sorted(before_of.keys() | after_of.keys()):
        was, now = before_of.get(seller), after_of.get(seller)
        was_cross = was if was is not None and cross(False, was) else None
        now_cross = now if now is not None and cross(True, now) else None
        if now_cross is not None and was_cross is None:
            joined[(platform_of[seller], now_cross)].append(seller)
        elif was_cross is not None and now_cross is None:
            left[(platform_of[seller], was_cross)].append(seller)
    for (platform, cluster), sellers in sorted(joined.items()):
        notices.append(Notice(platform, CLUSTER_JOINED, cluster, tuple(sellers)))
    for (platform, cluster), sellers in sorted(left.items()):
        notices.append(Notice(platform, CLUSTER_LEFT, cluster, tuple(sellers)))

    notices += _merges(previous, current, changes, platform_of, platforms, before_of, cross)
    notices += _splits(previous, current, changes, platform_of, platforms, after_of, cross)
    return notices


def _owner(
    clusters: Mapping[int, Members], platform_of: Mapping[int, int], platforms: Collection[int] | None
) -> dict[int, int]:
    """{seller: its cluster} for the sellers of `platforms` (None: every seller)."""
    return {
        m: cid
        for cid, members in clusters.items()
        for m in members
        if platforms is None or platform_of.get(m) in platforms
    }


def _merges(
    previous: Mapping[int, Members],
    current: Mapping[int, Members],
    changes: Iterable[ClusterChange],
    platform_of: Mapping[int, int],
    platforms: Collection[int],
    before_of: Mapping[int, int],
    cross: Cross,
) -> list[Notice]:
    # A merge is recorded on the survivor (related: the absorbed) and on each absorbed cluster (related: the
    # survivor); a previous cluster absorbed by a restored one has only the latter.
    absorbed: dict[int, set[int]] = defaultdict(set)
    for change in changes:
        if change.kind != "merged":
            continue
        if change.cluster_id in current:
            absorbed[change.cluster_id].update(change.related)
        elif change.related:
            absorbed[change.related[0]].add(change.cluster_id)
    notices = []
    for survivor, parts_absorbed in sorted(absorbed.items()):
        parts = sorted(({survivor} if survivor in previous else set()) | parts_absorbed)
        parts = [p for p in parts if p in previous]
        if not (cross(True, survivor) or any(cross(False, p) for p in parts)):
            continue
        own: dict[int, list[int]] = defaultdict(list)
        for seller in sorted(current[survivor]):
            if platform_of.get(seller) in platforms:
                own[platform_of[seller]].append(seller)
        for platform, sellers in sorted(own.items()):
            known = sorted({before_of[s] for s in sellers if before_of.get(s) in parts})
            if not known:
                continue  # all its sellers are new here: they joined (cluster.joined), nothing it knew merged
            notices.append(
                Notice(
                    platform,
                    CLUSTER_MERGED,
                    survivor,
                    tuple(sellers),
                    related=tuple(p for p in known if p != survivor),
                    count=len(parts_absorbed),
                )
            )
    return notices


def _splits(
    previous: Mapping[int, Members],
    current: Mapping[int, Members],
    changes: Iterable[ClusterChange],
    platform_of: Mapping[int, int],
    platforms: Collection[int],
    after_of: Mapping[int, int],
    cross: Cross,
) -> list[Notice]:
    notices = []
    owner: dict[int, int] | None = None  # every seller's current cluster, made at the first split
    for change in changes:
        if change.kind != "split" or change.cluster_id not in previous:
            continue
        former = change.cluster_id
        if not cross(False, former):
            continue
        members = previous[former]
        owner = owner if owner is not None else _owner(current, platform_of, None)
        all_pieces = {owner[m] for m in members if m in owner}
        own: dict[int, list[int]] = defaultdict(list)
        for seller in sorted(members):
            if platform_of.get(seller) in platforms:
                own[platform_of[seller]].append(seller)
        for platform, sellers in sorted(own.items()):
            by_piece: dict[int | None, list[int]] = defaultdict(list)
            for seller in sellers:
                by_piece[after_of.get(seller)].append(seller)
            pieces = tuple(
                (piece, tuple(by_piece[piece]))
                for piece in sorted(by_piece, key=lambda p: (p is None, p or 0))
            )
            notices.append(
                Notice(platform, CLUSTER_SPLIT, former, tuple(sellers), pieces=pieces, count=len(all_pieces))
            )
    return notices
