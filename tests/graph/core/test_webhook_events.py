"""graph.webhook_events, pure: which platform hears what from one recomputation's before and after."""

from __future__ import annotations

from graph.identity import assign_identities
from graph.webhook_events import Notice, membership_notices

# Sellers 1-3 on platform 10, 4-6 on platform 20, 7-9 on platform 30.
PLATFORM_OF = {s: 10 * ((s - 1) // 3 + 1) for s in range(1, 10)}
EVERYONE = {10, 20, 30}


def notices(
    previous: dict[int, frozenset[int]], current: list[frozenset[int]], platforms=EVERYONE
) -> list[Notice]:
    fresh = iter(range(100, 200))
    assigned, changes = assign_identities(previous, current, lambda: next(fresh))
    after = {cid: members for members, cid in assigned.items()}
    return membership_notices(previous, after, changes, PLATFORM_OF, platforms)


def kinds(found: list[Notice]) -> list[tuple[int, str, tuple[int, ...]]]:
    return sorted((n.platform, n.type, n.sellers) for n in found)


def test_a_single_platform_cluster_tells_nobody() -> None:
    assert notices({}, [frozenset({1, 2})]) == []


def test_a_new_cross_platform_cluster_tells_each_platform_of_its_own_sellers() -> None:
    assert kinds(notices({}, [frozenset({1, 2, 4})])) == [
        (10, "cluster.joined", (1, 2)),
        (20, "cluster.joined", (4,)),
    ]


def test_only_the_platforms_asked_for_are_told() -> None:
    assert kinds(notices({}, [frozenset({1, 4})], platforms={20})) == [(20, "cluster.joined", (4,))]
    assert notices({}, [frozenset({1, 4})], platforms=set()) == []


def test_growing_into_a_cross_platform_cluster_tells_the_members_already_there() -> None:
    found = notices({1: frozenset({1, 2})}, [frozenset({1, 2, 7})])
    assert kinds(found) == [(10, "cluster.joined", (1, 2)), (30, "cluster.joined", (7,))]
    assert {n.cluster for n in found} == {1}


def test_growing_a_cross_platform_cluster_tells_only_the_newcomer() -> None:
    assert kinds(notices({1: frozenset({1, 4})}, [frozenset({1, 4, 7})])) == [(30, "cluster.joined", (7,))]


def test_dissolving_tells_everyone_they_left() -> None:
    found = notices({1: frozenset({1, 4})}, [])
    assert kinds(found) == [(10, "cluster.left", (1,)), (20, "cluster.left", (4,))]


def test_a_merge_is_told_to_the_platforms_of_the_merged_clusters_once_each() -> None:
    found = notices({1: frozenset({1, 4}), 2: frozenset({2, 7})}, [frozenset({1, 2, 4, 7, 5})])
    merged = [n for n in found if n.type == "cluster.merged"]
    assert sorted((n.platform, n.cluster, n.sellers, n.related, n.count) for n in merged) == [
        (10, 1, (1, 2), (2,), 1),  # its seller 2 was in the absorbed cluster 2
        (20, 1, (4, 5), (), 1),  # its seller 5 is new: that is a join, not a merge it knew
        (30, 1, (7,), (2,), 1),
    ]
    assert kinds([n for n in found if n.type != "cluster.merged"]) == [(20, "cluster.joined", (5,))]


def test_a_split_names_each_platforms_pieces_and_who_left_linking() -> None:
    found = notices({1: frozenset({1, 2, 4, 7, 8})}, [frozenset({1, 4}), frozenset({7, 8})])
    splits = {n.platform: n for n in found if n.type == "cluster.split"}
    assert set(splits) == {10, 20, 30}
    assert splits[10].count == 2
    pieces_of_10 = dict(splits[10].pieces)
    assert pieces_of_10[None] == (2,)  # seller 2 is in no cluster now
    assert len(pieces_of_10) == 2
    # Seller 2 left; 7 and 8 are in a single-platform piece now: no longer in a cross-platform cluster.
    assert kinds([n for n in found if n.type == "cluster.left"]) == [
        (10, "cluster.left", (2,)),
        (30, "cluster.left", (7, 8)),
    ]


def test_an_unchanged_recomputation_tells_nobody() -> None:
    assert notices({1: frozenset({1, 4}), 2: frozenset({2, 3})}, [frozenset({1, 4}), frozenset({2, 3})]) == []
