"""Clusters keep their id across recomputation; merges, splits and the rest are recorded as events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph.identity import ClusterChange, assign_identities


def fs(*members: int) -> frozenset[int]:
    return frozenset(members)


def fresh_ids(start: int = 100) -> itertools.count[int]:
    return itertools.count(start)


def run(previous: dict[int, frozenset[int]], current: list[frozenset[int]]) -> tuple[dict, list[tuple]]:
    ids, events = assign_identities(previous, current, fresh_ids().__next__)
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
            [("split", 1, [1, 2, 3], (1, 100)), ("created", 100, [4, 5], (1,))],
            id="split: the larger piece keeps the id, the other piece is new",
        ),
        pytest.param(
            {1: fs(1, 2, 3), 2: fs(4, 5, 6)},
            [fs(1, 2, 3, 4), fs(5, 6)],
            {fs(1, 2, 3, 4): 1, fs(5, 6): 2},
            [("grew", 1, [1, 2, 3, 4], ()), ("split", 2, [5, 6], (1, 2))],
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
