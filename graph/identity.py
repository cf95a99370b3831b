"""Stable cluster identity across recomputations (pure).

Each current cluster inherits the id of the previous cluster it overlaps most. Assignment is greedy over all
(previous, current) pairs by decreasing overlap, ties broken by the lower (older) previous id and then by the
current cluster's smallest member, so every previous id goes to at most one successor and the result does not
depend on input order. Current clusters left without an id get fresh ones from ``next_id`` in order of their
smallest member.

Restoration: a merge followed by the split that undoes it (a seller bridging two clusters, then retracted)
must give both clusters back as they were, not hand one cluster's id to the other's members. So before the
overlap rule, a current cluster whose members are exactly the members a former cluster had when its id last
stopped describing them (``former``: recorded when the cluster merged away, dissolved or lost its id, and for
a merge's survivor the members it had just before the merge) gets that id back. Exact equality, not a large
overlap, on purpose: it only fires when a membership really comes back, so it never overrides the overlap
rule in ordinary growth and shrinkage; a cluster that gained or lost members while merged falls back to the
overlap rule. An unchanged cluster always keeps its id first, and each id goes to at most one cluster (two
records of one member set: the lower id). The caller passes only ids free to come back: dissolved ones and
ids of ``previous``, never a live cluster outside the recomputation.

Events, so that analysts and reports can follow what happened (``members_before``/``members_after`` are the
cluster's members before and after; ``related`` are other cluster ids, never the cluster's own):

- ``created``: a cluster with a fresh id; ``related`` lists the previous clusters it took members from
  (a piece split off another cluster, or a cluster formed from pieces of others).
- ``restored``: a former (dissolved or merged-away) cluster's id came back with exactly its former members;
  ``related`` lists the previous clusters it took them from (the merged cluster it split off, or none when
  the members relinked from scratch). ``members_before`` is empty: the id had no members.
- ``grew`` / ``shrank``: same id, members added / removed (both events if both happened).
- ``merged``: a cluster absorbed one or more previous clusters whose ids did not survive. Recorded on the
  survivor (``related`` = the absorbed ids) and on each absorbed cluster (``related`` = the survivor's id,
  ``members_after`` = the survivor's members). A merge replaces the ``grew`` event of the survivor. A
  previous cluster whose members all went to a restored cluster is recorded as merged into it.
- ``split``: a previous cluster's members ended up in two or more current clusters; ``related`` = the ids
  of the other pieces, ``members_after`` = the members of the piece that kept its id (empty if none did).
  A split replaces the ``shrank`` event of the piece that kept the id.
- ``dissolved``: a previous cluster with no successor at all (its members no longer link).

An unchanged cluster produces no event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["created", "restored", "grew", "shrank", "merged", "split", "dissolved"]
NO_MEMBERS: frozenset[int] = frozenset()
EVENT_ORDER = ("dissolved", "split", "merged", "shrank", "grew", "created", "restored")


@dataclass(frozen=True, slots=True)
class ClusterChange:
    kind: EventKind
    cluster_id: int
    members_before: frozenset[int]
    members_after: frozenset[int]
    related: tuple[int, ...] = ()


def assign_identities(
    previous: Mapping[int, frozenset[int]],
    current: Sequence[frozenset[int]],
    next_id: Callable[[], int],
    former: Mapping[int, frozenset[int]] | None = None,
) -> tuple[dict[frozenset[int], int], list[ClusterChange]]:
    """Give every current cluster an id; return ``({members: id}, events)``.

    ``previous`` maps the ids of the clusters being replaced to their members; ``current`` are the new
    clusters (disjoint member sets); ``former`` maps ids that may come back (dissolved, or in ``previous``)
    to their recorded former members (see the module docstring). Events are ordered by cluster id, then kind.
    """
    if not previous and not former:
        return _first_identities(current, next_id)
    return _assign(previous, current, next_id, former)


def _first_identities(
    current: Sequence[frozenset[int]], next_id: Callable[[], int]
) -> tuple[dict[frozenset[int], int], list[ClusterChange]]:
    """`assign_identities` with nothing before (a first build): every cluster created, with a fresh id in order
    of its smallest member; what the general rules give then, without their per-member bookkeeping (0.15 ->
    0.10 s for a first build's 72,000 clusters)."""
    assigned = {members: next_id() for members in sorted(set(current), key=min)}
    events = [
        ClusterChange("created", cluster_id, NO_MEMBERS, members) for members, cluster_id in assigned.items()
    ]
    events.sort(key=lambda event: event.cluster_id)
    return assigned, events


def _assign(
    previous: Mapping[int, frozenset[int]],
    current: Sequence[frozenset[int]],
    next_id: Callable[[], int],
    former: Mapping[int, frozenset[int]] | None,
) -> tuple[dict[frozenset[int], int], list[ClusterChange]]:
    """`assign_identities` by the general rules."""
    current = sorted(set(current), key=min)
    owner: dict[int, int] = {}  # seller -> previous id
    for cluster_id, members in previous.items():
        for member in members:
            owner[member] = cluster_id

    overlap: dict[tuple[int, int], int] = {}  # (previous id, index into current) -> shared members
    for index, members in enumerate(current):
        for member in members:
            if member in owner:
                key = (owner[member], index)
                overlap[key] = overlap.get(key, 0) + 1

    assigned: dict[int, int] = {}  # index into current -> id
    successor_of: dict[int, int] = {}  # previous id -> index that inherited it
    taken: set[int] = set()  # ids given out so far (previous or restored)

    def give(index: int, cluster_id: int) -> None:
        assigned[index] = cluster_id
        taken.add(cluster_id)
        if cluster_id in previous:
            successor_of[cluster_id] = index

    # Unchanged clusters first: no record may take an id (or members) away from a cluster that did not change.
    unchanged = {members: cluster_id for cluster_id, members in previous.items()}
    for index, members in enumerate(current):
        if members in unchanged:
            give(index, unchanged[members])

    restored: set[int] = set()  # indices whose id came back from a record
    record_of: dict[frozenset[int], int] = {}  # recorded members -> the lowest id recorded with them
    for cluster_id in sorted(former or {}, reverse=True):
        if cluster_id not in taken:
            record_of[frozenset((former or {})[cluster_id])] = cluster_id
    for index, members in enumerate(current):
        if index not in assigned and members in record_of:
            give(index, record_of[members])
            restored.add(index)

    for (previous_id, index), _ in sorted(
        overlap.items(), key=lambda kv: (-kv[1], kv[0][0], min(current[kv[0][1]]))
    ):
        if index not in assigned and previous_id not in taken:
            give(index, previous_id)
    for index in range(len(current)):
        if index not in assigned:
            assigned[index] = next_id()

    pieces: dict[int, list[int]] = {}  # previous id -> indices it overlaps
    sources: dict[int, list[int]] = {}  # index -> previous ids it overlaps
    for previous_id, index in sorted(overlap):
        pieces.setdefault(previous_id, []).append(index)
        sources.setdefault(index, []).append(previous_id)

    events: list[ClusterChange] = []
    for previous_id in sorted(previous):
        before = previous[previous_id]
        parts = pieces.get(previous_id, [])
        if not parts:
            events.append(ClusterChange("dissolved", previous_id, before, NO_MEMBERS))
        elif len(parts) >= 2:
            kept = current[successor_of[previous_id]] if previous_id in successor_of else NO_MEMBERS
            related = tuple(sorted(assigned[index] for index in parts if assigned[index] != previous_id))
            events.append(ClusterChange("split", previous_id, before, kept, related))
        elif previous_id not in successor_of and assigned[parts[0]] not in previous:
            # Its one piece came back as a restored cluster: it lives on under that id.
            events.append(
                ClusterChange("merged", previous_id, before, current[parts[0]], (assigned[parts[0]],))
            )

    for index, members in enumerate(current):
        cluster_id = assigned[index]
        origins = sources.get(index, [])
        if cluster_id not in previous:
            kind: EventKind = "restored" if index in restored else "created"
            events.append(ClusterChange(kind, cluster_id, NO_MEMBERS, members, tuple(origins)))
            continue
        before = previous[cluster_id]
        # Absorbed: a previous cluster wholly carried into this one (one piece only) whose id did not survive.
        absorbed = tuple(
            other
            for other in origins
            if other != cluster_id and other not in successor_of and len(pieces[other]) == 1
        )
        if absorbed:
            events.append(ClusterChange("merged", cluster_id, before, members, absorbed))
            events.extend(
                ClusterChange("merged", other, previous[other], members, (cluster_id,)) for other in absorbed
            )
        elif members - before:
            events.append(ClusterChange("grew", cluster_id, before, members))
        if before - members and len(pieces.get(cluster_id, [])) < 2:
            events.append(ClusterChange("shrank", cluster_id, before, members))

    order = {kind: n for n, kind in enumerate(EVENT_ORDER)}
    events.sort(key=lambda event: (event.cluster_id, order[event.kind], event.related))
    return {current[index]: cluster_id for index, cluster_id in assigned.items()}, events
