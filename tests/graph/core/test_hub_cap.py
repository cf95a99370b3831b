"""Hub counting resists one source: each platform's share of an indicator's holders is capped (issue 12, 7)."""

from __future__ import annotations

import pytest

from graph.linking import DEFAULT_THRESHOLDS, HubRule, Sighting, link, platform_cap, relink

HOSTILE, ACME, BAZAAR, THIRD = 9, 1, 2, 3


@pytest.mark.parametrize(
    ("threshold", "divisor", "cap"),
    [(10, 3, 4), (9, 3, 3), (25, 3, 9), (15, 3, 5), (1, 3, 1), (10, 1, 10), (10, 2, 5), (11, 2, 6)],
)
def test_platform_cap_is_the_threshold_divided_and_rounded_up(threshold: int, divisor: int, cap: int) -> None:
    assert platform_cap(threshold, divisor) == cap


def test_counted_holders_sum_each_platforms_share_up_to_the_cap() -> None:
    rule = HubRule({"store_name": 10}, 3)  # cap 4
    assert rule.counted("store_name", [11]) == 4
    assert rule.counted("store_name", [4, 4, 2]) == 10
    assert rule.suppression("store_name", [4, 4, 2]) is None  # exactly the threshold still links
    assert rule.suppression("store_name", [4, 4, 3]) == "threshold"  # one more on a third platform: a hub
    assert rule.suppression("store_name", [40, 40]) is None  # two platforms alone count for 8
    assert rule.suppression("store_name", [1], "common") == "common"
    assert rule.suppression("store_name", [9, 9, 9], "include") is None


def test_a_divisor_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="platform_divisor"):
        HubRule(DEFAULT_THRESHOLDS, 0)


def victims() -> list[Sighting]:
    """Acme's seller 101 and Bazaar's 201 share a store name and a shipping address: one cluster."""
    return [
        Sighting(101, ACME, "store_name", "harbor"),
        Sighting(101, ACME, "shipping_address", "dock 1"),
        Sighting(201, BAZAAR, "store_name", "harbor"),
        Sighting(201, BAZAAR, "shipping_address", "dock 1"),
    ]


def fakes(platform: int, count: int, first: int) -> list[Sighting]:
    return [Sighting(first + n, platform, "store_name", "harbor") for n in range(count)]


def test_one_platforms_eleven_fake_holders_do_not_suppress_a_store_name() -> None:
    result = link([*victims(), *fakes(HOSTILE, 11, 901)])
    assert [c.members for c in result.clusters] == [(101, 201)]
    assert result.suppressed == ()


def test_holders_on_three_platforms_over_the_threshold_do_suppress_it() -> None:
    # Threshold 10, cap 4: Acme 4 + Bazaar 4 + Third 3 = 11 counted holders.
    sightings = [*victims(), *fakes(ACME, 3, 102), *fakes(BAZAAR, 3, 202), *fakes(THIRD, 3, 301)]
    result = link(sightings)
    assert result.clusters == ()
    [hub] = result.suppressed
    assert (hub.kind, hub.sellers, hub.counted, hub.reason) == ("store_name", 11, 11, "threshold")


def test_at_the_boundary_a_third_platform_reaching_the_threshold_still_links() -> None:
    # Acme 4 + Bazaar 4 + Third 2 = 10 counted: not more than the threshold.
    sightings = [*victims(), *fakes(ACME, 3, 102), *fakes(BAZAAR, 3, 202), *fakes(THIRD, 2, 301)]
    assert [c.members for c in link(sightings).clusters] == [(101, 201)]


def test_the_divisor_is_configurable() -> None:
    # Divisor 2 (cap 5): 5 + 1 + 1 counted. Divisor 1 (cap 10): 10 + 1 + 1, over the threshold.
    sightings = [*victims(), *fakes(HOSTILE, 11, 901)]
    assert [c.members for c in link(sightings, platform_divisor=2).clusters] == [(101, 201)]
    assert link(sightings, platform_divisor=1).clusters == ()
    # Even at divisor 1 one platform alone cannot exceed the threshold.
    assert HubRule(DEFAULT_THRESHOLDS, 1).suppression("store_name", [500]) is None


def test_incremental_run_sees_a_hub_appear_when_a_third_platforms_holders_arrive() -> None:
    # Acme 6 and Bazaar 6 holders count 4 + 4: linking. Two of Third's holders arrive (10 counted: still
    # linking), then one more (11: a hub). Capped bounds must flag that flip although the plain count was
    # over the threshold all along.
    base = [*victims(), *fakes(ACME, 5, 102), *fakes(BAZAAR, 5, 202)]
    previous = {0: frozenset({101, 201})}
    step = relink([*base, *fakes(THIRD, 2, 301)], touched_sellers={301, 302}, previous=previous)
    assert step.retired == () and step.clusters == ()  # nothing flipped: the cluster stays as it is
    step = relink([*base, *fakes(THIRD, 3, 301)], touched_sellers={303}, previous=previous)
    assert step.retired == (0,) and step.clusters == ()


def test_a_platforms_own_hub_links_none_of_its_holders_and_leaves_other_platforms_links_alone() -> None:
    # Acme's support phone typed in by 26 of its sellers (threshold 25): a hub of Acme's own. It glues none of
    # them, while Bazaar's two sellers that share it still link, and nothing is suppressed for everyone.
    support = [Sighting(101 + n, ACME, "phone", "support") for n in range(26)]
    bazaar = [Sighting(201, BAZAAR, "phone", "support"), Sighting(202, BAZAAR, "phone", "support")]
    result = link([*support, *bazaar])
    assert [c.members for c in result.clusters] == [(201, 202)]
    assert result.suppressed == ()
    assert result.platform_hubs == ((("phone", "support"), ACME),)


def test_incremental_run_sees_a_platforms_own_count_cross_the_threshold() -> None:
    support = [Sighting(101 + n, ACME, "phone", "support") for n in range(25)]
    bazaar = [Sighting(201, BAZAAR, "phone", "support"), Sighting(202, BAZAAR, "phone", "support")]
    # 25 Acme holders: Acme 9 + Bazaar 2 = 11 counted; everyone links in one cluster.
    previous = {0: frozenset({*range(101, 126), 201, 202})}
    assert [len(c.members) for c in link([*support, *bazaar]).clusters] == [27]
    step = relink(
        [*support, *bazaar, Sighting(126, ACME, "phone", "support")], touched_sellers={126}, previous=previous
    )
    assert step.retired == (0,) and [c.members for c in step.clusters] == [(201, 202)]
