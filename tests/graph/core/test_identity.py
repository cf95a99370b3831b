"""Clusters keep their id across recomputation; merges, splits and the rest are recorded as events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph import identity
from graph.identity import ClusterChange, assign_identities


def fs(*members: int) -> frozenset[int]:
    return frozenset(members)


def fresh_ids(start: int = 100) -> itertools.count[int]:
    return itertools.count(start)


def run(
    previous: dict[int, frozenset[int]],
    current: list[frozenset[int]],
    former: dict[int, frozenset[int]] | None = None,
) -> tuple[dict, list[tuple]]:
    ids, events = assign_identities(previous, current, fresh_ids().__next__, former)
    return ids, [(e.kind, e.cluster_id, sorted(e.members_after), e.related) for e in events]


@pytest.mark.parametrize(
    ("previous", "current", "expected_ids", "expected_events"),
    [
        pytest.param({1: fs(1, 2)}, [fs(1, 2)], {fs(1, 2): 1}, [], id="unchanged: same id, no event"),
        pytest.param({}, [fs(1, 2)], {fs(1, 2): 100}, [("created", 100, [1, 2], ())], id="created"),
        pytest.param(
            {1: fs(1, 2)},
            [fs(1, 2, 3)],
            {fs(1, 2, 3): 1},
            [("grew", 1, [1, 2, 3], ())],
            id="grew keeps the id",
        ),
        pytest.param(
            {1: fs(1, 2, 3)}, [fs(1, 2)], {fs(1, 2): 1}, [("shrank", 1, [1, 2], ())], id="shrank keeps the id"
        ),
        pytest.param({1: fs(1, 2)}, [], {}, [("dissolved", 1, [], ())], id="dissolved"),
        pytest.param(
            {1: fs(1, 2, 3), 2: fs(4, 5)},
            [fs(1, 2, 3, 4, 5)],
            {fs(1, 2, 3, 4, 5): 1},
            [("merged", 1, [1, 2, 3, 4, 5], (2,)), ("merged", 2, [1, 2, 3, 4, 5], (1,))],
            id="merged: the larger overlap survives, the absorbed id points at it",
        ),
        pytest.param(
            {7: fs(1, 2), 3: fs(4, 5)},
            [fs(1, 2, 4, 5)],
            {fs(1, 2, 4, 5): 3},
            [("merged", 3, [1, 2, 4, 5], (7,)), ("merged", 7, [1, 2, 4, 5], (3,))],
            id="merged: equal overlaps go to the older (lower) id",
        ),
        pytest.param(
            {1: fs(1, 2, 3, 4, 5)},
            [fs(1, 2, 3), fs(4, 5)],
            {fs(1, 2, 3): 1, fs(4, 5): 100},
            [("split", 1, [1, 2, 3], (100,)), ("created", 100, [4, 5], (1,))],
            id="split: the larger piece keeps the id, the other piece is new",
        ),
        pytest.param(
            {1: fs(1, 2, 3), 2: fs(4, 5, 6)},
            [fs(1, 2, 3, 4), fs(5, 6)],
            {fs(1, 2, 3, 4): 1, fs(5, 6): 2},
            [("grew", 1, [1, 2, 3, 4], ()), ("split", 2, [5, 6], (1,))],
            id="a member moving between clusters: one grew, the other split",
        ),
    ],
)
def test_identity_and_events(
    previous: dict[int, frozenset[int]],
    current: list[frozenset[int]],
    expected_ids: dict[frozenset[int], int],
    expected_events: list[tuple],
) -> None:
    ids, events = run(previous, current)
    assert ids == expected_ids
    assert events == expected_events


def test_each_previous_id_goes_to_at_most_one_successor() -> None:
    ids, _ = run({1: fs(1, 2, 3, 4)}, [fs(1, 2), fs(3, 4)])
    assert sorted(ids.values()) == [1, 100]
    assert ids[fs(1, 2)] == 1  # equal overlap: the piece with the smaller member wins


def test_assignment_does_not_depend_on_input_order() -> None:
    previous = {1: fs(1, 2, 3), 2: fs(4, 5), 3: fs(6, 7)}
    current = [fs(1, 2), fs(3, 4, 5), fs(6, 7, 8), fs(9, 10)]
    first = assign_identities(previous, current, fresh_ids().__next__)
    second = assign_identities(dict(reversed(previous.items())), current[::-1], fresh_ids().__next__)
    assert first == second


def test_event_carries_members_before_and_after() -> None:
    _, events = assign_identities({1: fs(1, 2)}, [fs(1, 2, 3)], fresh_ids().__next__)
    assert events == [ClusterChange("grew", 1, fs(1, 2), fs(1, 2, 3))]


# Restoration. Cluster 1 = {5, 6} and cluster 2 = {3, 4}; seller 9 bridged them and cluster 1 survived the
# merge (equal overlaps: the older id), so the records are 1: {5, 6} (its members before the merge) and
# 2: {3, 4} (its members when it merged away). Then 9 is retracted.
MERGED = {1: fs(3, 4, 5, 6, 9)}
RECORDS = {1: fs(5, 6), 2: fs(3, 4)}


def test_without_records_the_undoing_split_hands_one_clusters_id_to_the_other() -> None:
    ids, _ = run(MERGED, [fs(3, 4), fs(5, 6)])
    # The bug of issue 19: equal overlaps, the smaller member wins: cluster 2's sellers get cluster 1's id.
    assert ids == {fs(3, 4): 1, fs(5, 6): 100}


def test_split_that_undoes_a_merge_gives_both_clusters_their_ids_back() -> None:
    ids, events = run(MERGED, [fs(3, 4), fs(5, 6)], RECORDS)
    assert ids == {fs(5, 6): 1, fs(3, 4): 2}
    assert events == [("split", 1, [5, 6], (2,)), ("restored", 2, [3, 4], (1,))]


@pytest.mark.parametrize(
    ("previous", "current", "former", "expected_ids", "expected_events"),
    [
        pytest.param(
            {},
            [fs(1, 2)],
            {7: fs(1, 2)},
            {fs(1, 2): 7},
            [("restored", 7, [1, 2], ())],
            id="a dissolved cluster's exact membership relinking gets its id back",
        ),
        pytest.param(
            {1: fs(1, 2, 3, 4, 9)},
            [fs(1, 2, 8), fs(3, 4)],
            {1: fs(1, 2), 2: fs(3, 4)},
            {fs(3, 4): 2, fs(1, 2, 8): 1},
            [("split", 1, [1, 2, 8], (2,)), ("grew", 1, [1, 2, 8], ()), ("restored", 2, [3, 4], (1,))],
            id="a piece that grew while merged keeps the id by overlap; the exact one is restored",
        ),
        pytest.param(
            {1: fs(1, 2, 3, 4, 9)},
            [fs(1, 2, 8), fs(3, 4, 7)],
            {1: fs(1, 2), 2: fs(3, 4)},
            {fs(1, 2, 8): 1, fs(3, 4, 7): 100},
            [
                ("split", 1, [1, 2, 8], (100,)),
                ("grew", 1, [1, 2, 8], ()),
                ("created", 100, [3, 4, 7], (1,)),
            ],
            id="no exact membership: the overlap rule alone",
        ),
        pytest.param(
            {1: fs(1, 2, 3, 4)},
            [fs(3, 4)],
            {2: fs(3, 4)},
            {fs(3, 4): 2},
            [("merged", 1, [3, 4], (2,)), ("restored", 2, [3, 4], (1,))],
            id="a cluster shrinking back to a former cluster lives on as that cluster",
        ),
        pytest.param(
            {1: fs(1, 2)},
            [fs(1, 2)],
            {2: fs(1, 2)},
            {fs(1, 2): 1},
            [],
            id="an unchanged cluster keeps its id whatever the records say",
        ),
        pytest.param(
            {},
            [fs(1, 2)],
            {8: fs(1, 2), 5: fs(1, 2)},
            {fs(1, 2): 5},
            [("restored", 5, [1, 2], ())],
            id="two records of one membership: the older id",
        ),
    ],
)
def test_restoration(
    previous: dict[int, frozenset[int]],
    current: list[frozenset[int]],
    former: dict[int, frozenset[int]],
    expected_ids: dict[frozenset[int], int],
    expected_events: list[tuple],
) -> None:
    ids, events = run(previous, current, former)
    assert ids == expected_ids
    assert events == expected_events


partitions = st.lists(st.sets(st.integers(0, 30), min_size=2, max_size=6), max_size=6).map(
    lambda sets: [frozenset(s - set().union(*sets[:n])) for n, s in enumerate(sets)]
)


@given(partitions, partitions)
def test_ids_are_unique_and_inherited_at_most_once(
    before: list[frozenset[int]], after: list[frozenset[int]]
) -> None:
    previous = {10 + n: members for n, members in enumerate(m for m in before if len(m) >= 2)}
    current = [members for members in after if len(members) >= 2]
    ids, events = assign_identities(previous, current, fresh_ids().__next__)
    assert set(ids) == set(current)
    assert len(set(ids.values())) == len(current)
    for members, cluster_id in ids.items():
        if cluster_id in previous:
            assert members & previous[cluster_id]  # an id only passes to an overlapping successor
    changed = {e.cluster_id for e in events}
    for cluster_id, members in previous.items():
        if ids.get(members) != cluster_id:
            assert cluster_id in changed  # every previous cluster that did not survive as is has an event


@given(partitions, partitions, partitions)
def test_restored_ids_are_unique_exact_and_never_their_own_successor(
    before: list[frozenset[int]], after: list[frozenset[int]], records: list[frozenset[int]]
) -> None:
    previous = {10 + n: members for n, members in enumerate(m for m in before if len(m) >= 2)}
    current = [members for members in after if len(members) >= 2]
    # Former records: of dissolved ids (50+) and of some ids being replaced.
    former = {50 + n: members for n, members in enumerate(m for m in records if len(m) >= 2)}
    former.update(
        {cluster_id: members - {min(members)} for cluster_id, members in list(previous.items())[:2]}
    )
    ids, events = assign_identities(previous, current, fresh_ids().__next__, former)
    assert set(ids) == set(current)
    assert len(set(ids.values())) == len(current)
    unchanged = {members: cluster_id for cluster_id, members in previous.items()}
    for members, cluster_id in ids.items():
        if members in unchanged:
            assert cluster_id == unchanged[members]
        elif cluster_id in former and cluster_id not in previous:
            assert former[cluster_id] == members  # a former id only comes back with exactly its members
    for event in events:
        assert event.cluster_id not in event.related
        if event.kind == "restored":
            assert ids[event.members_after] == event.cluster_id and event.cluster_id in former


@given(partitions, st.sampled_from([1, -1]))
def test_a_first_build_gets_what_the_general_rules_give(after: list[frozenset[int]], step: int) -> None:
    """With nothing before, `assign_identities` takes a shortcut (`_first_identities`): the same ids and
    events as the general rules, whichever way the fresh ids run (a full recluster's placeholders descend)."""
    current = [members for members in after if len(members) >= 2]
    shortcut = assign_identities({}, current, itertools.count(0, step).__next__)
    general = identity._assign({}, current, itertools.count(0, step).__next__, None)
    assert shortcut == general
    assert list(shortcut[0].values()) == list(general[0].values())  # in the same order, too
