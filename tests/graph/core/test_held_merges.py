"""Held merges: one platform's fresh sellers alone do not glue other platforms' clusters (issue 12, item 8)."""

from __future__ import annotations

from graph.linking import HeldMerge, Sighting, link, relink

ACME, BAZAAR, HOSTILE = 1, 2, 9


def two_clusters() -> list[Sighting]:
    """X = Acme 101 + Bazaar 201 (an email); Y = Acme 102 + Bazaar 202 (a phone)."""
    return [
        Sighting(101, ACME, "email", "x"),
        Sighting(201, BAZAAR, "email", "x"),
        Sighting(102, ACME, "phone", "y"),
        Sighting(202, BAZAAR, "phone", "y"),
    ]


def bridge(seller: int, platform: int) -> list[Sighting]:
    return [Sighting(seller, platform, "email", "x"), Sighting(seller, platform, "phone", "y")]


def test_a_fresh_bridge_of_one_platform_between_others_clusters_is_held() -> None:
    result = link([*two_clusters(), *bridge(901, HOSTILE)], fresh={901})
    assert [c.members for c in result.clusters] == [(101, 201), (102, 202)]
    assert result.held == (
        HeldMerge(
            platform=HOSTILE,
            sellers=(901,),
            parts=((101, 201), (102, 202)),
            members=(101, 102, 201, 202, 901),
        ),
    )


def test_the_same_bridge_merges_once_it_is_no_longer_fresh() -> None:
    # Older than the hold period, or released by an exchange analyst's approval: the caller leaves it out.
    result = link([*two_clusters(), *bridge(901, HOSTILE)], fresh=())
    assert [c.members for c in result.clusters] == [(101, 102, 201, 202, 901)]
    assert result.held == ()


def test_a_second_platform_making_the_same_link_corroborates_it() -> None:
    sightings = [*two_clusters(), *bridge(901, HOSTILE), *bridge(203, BAZAAR)]
    result = link(sightings, fresh={901, 203})
    assert [c.members for c in result.clusters] == [(101, 102, 201, 202, 203, 901)]
    assert result.held == ()


def test_a_platform_may_join_its_own_cluster_to_another() -> None:
    # Acme's fresh 103 joins X (with Acme's 101) to Y: X holds an Acme seller, so only one part is foreign.
    result = link([*two_clusters(), *bridge(103, ACME)], fresh={103})
    assert [c.members for c in result.clusters] == [(101, 102, 103, 201, 202)]
    assert result.held == ()


def test_a_fresh_seller_that_only_grows_one_cluster_is_not_held() -> None:
    result = link([*two_clusters(), Sighting(901, HOSTILE, "email", "x")], fresh={901})
    assert [c.members for c in result.clusters] == [(101, 201, 901), (102, 202)]
    assert result.held == ()


def test_several_fresh_sellers_of_one_platform_are_held_together() -> None:
    # 901 holds X's email and a new phone z; 902 holds z and Y's phone: only the two together bridge.
    sightings = [
        *two_clusters(),
        Sighting(901, HOSTILE, "email", "x"),
        Sighting(901, HOSTILE, "phone", "z"),
        Sighting(902, HOSTILE, "phone", "z"),
        Sighting(902, HOSTILE, "phone", "y"),
    ]
    result = link(sightings, fresh={901, 902})
    assert [c.members for c in result.clusters] == [(101, 201), (102, 202)]
    assert [held.sellers for held in result.held] == [(901, 902)]


def test_incremental_run_releases_the_hold_when_a_second_platform_corroborates() -> None:
    sightings = [*two_clusters(), *bridge(901, HOSTILE)]
    stored = link(sightings, fresh={901})
    previous = {n: c.member_set for n, c in enumerate(stored.clusters)}
    step = relink(
        [*sightings, *bridge(203, BAZAAR)],
        touched_sellers={203},
        previous=previous,
        fresh={901, 203},
        previous_held={"h": stored.held[0].members},
    )
    assert sorted(step.retired) == [0, 1] and step.retired_held == ("h",)
    assert [c.members for c in step.clusters] == [(101, 102, 201, 202, 203, 901)] and step.held == ()


def test_incremental_run_sees_a_held_sellers_corroboration_go_when_it_is_retracted() -> None:
    # 901 (held: it also glues Z) corroborates platform 5's fresh 503 between X and Y. Retracting 901 leaves
    # 503 alone between X and Y: now 503 is held, which only the held merge's members let the run see (901
    # itself links nothing any more, so no walk from it reaches X and Y).
    sightings = [
        *two_clusters(),
        *bridge(901, HOSTILE),
        Sighting(901, HOSTILE, "bank_account", "z"),
        Sighting(301, 3, "bank_account", "z"),
        Sighting(302, 4, "bank_account", "z"),
        *bridge(503, 5),
    ]
    fresh = {901, 503}
    stored = link(sightings, fresh=fresh)
    assert [c.members for c in stored.clusters] == [(101, 102, 201, 202, 503), (301, 302)]
    assert [h.sellers for h in stored.held] == [(901,)]
    previous = {n: c.member_set for n, c in enumerate(stored.clusters)}
    step = relink(
        sightings,
        touched_sellers={901},
        previous=previous,
        inactive={901},
        fresh=fresh,
        previous_held={"h": stored.held[0].members},
    )
    assert [c.members for c in step.clusters] == [(101, 201), (102, 202), (301, 302)]
    assert [h.sellers for h in step.held] == [(503,)]
    assert link(sightings, inactive={901}, fresh=fresh).clusters == step.clusters
    # Without the held merge's members the run would keep the stale X+Y cluster.
    stale = relink(sightings, touched_sellers={901}, previous=previous, inactive={901}, fresh=fresh)
    assert stale.clusters == ()
