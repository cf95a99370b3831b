"""Incremental relinking gives exactly the clusters (and held merges) of a full recomputation, after every
step: with sellers on four platforms, hub counts capped per platform, and fresh sellers whose bridges between
other platforms' clusters are held until they age, are approved, or are corroborated."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from graph.linking import HeldMerge, IndicatorKey, Override, Sighting, link, relink

# A small pool so that collisions are frequent, with thresholds low enough that hubs appear and disappear.
POOL: list[IndicatorKey] = [
    *(("email", f"e{n}") for n in range(5)),
    *(("bank_account", f"b{n}") for n in range(3)),
    *(("store_name", f"s{n}") for n in range(3)),
    *(("shipping_address", f"a{n}") for n in range(2)),
    *(("device_id", f"d{n}") for n in range(2)),
    *(("image", f"g{n}") for n in range(2)),  # near-duplicate groups link like any weak indicator
    *(("shipping_address_fuzzy", f"f{n}") for n in range(2)),  # a fuzzy group: one family with the exact kind
    ("person_name", "n0"),
]
# Addresses as partners send them, exact token and fuzzy group together (a0 and a1 are near-duplicates): the same
# address alone must not link, two addresses or a name beside it must.
ADDRESSES: list[set[IndicatorKey]] = [
    {("shipping_address", "a0"), ("shipping_address_fuzzy", "f0")},
    {("shipping_address", "a1"), ("shipping_address_fuzzy", "f0")},
    {("shipping_address", "a2"), ("shipping_address_fuzzy", "f1")},
]
THRESHOLDS = {
    "email": 3,
    "phone": 3,
    "tax_id": 3,
    "business_registration": 3,
    "bank_account": 4,
    "payment_account": 3,
    "crypto_wallet": 3,
    "store_name": 2,
    "website_domain": 2,
    "shipping_address": 3,
    "return_address": 3,
    "device_id": 2,
    "image": 2,
    "document": 2,
    "person_name": 2,
    "business_name": 2,
    "shipping_address_fuzzy": 3,
    "return_address_fuzzy": 3,
}
SELLERS = range(12)

submit = st.tuples(
    st.just("submit"), st.sampled_from(SELLERS), st.sets(st.sampled_from(POOL), min_size=1, max_size=4)
)
retract = st.tuples(st.just("retract"), st.sampled_from(SELLERS))
purge = st.tuples(st.just("purge"), st.sampled_from(SELLERS))
drop = st.tuples(st.just("drop"), st.sampled_from(SELLERS), st.sampled_from(POOL))
override = st.tuples(st.just("override"), st.sampled_from(POOL), st.sampled_from([None, "common", "include"]))
# Strong indicators of two kinds link readily, so clusters form that a fresh seller of one platform can bridge.
STRONG = [key for key in POOL if key[0] in ("email", "bank_account")]
link_up = st.tuples(
    st.just("submit"), st.sampled_from(SELLERS), st.sets(st.sampled_from(STRONG), min_size=1, max_size=2)
)
address = st.tuples(st.just("submit"), st.sampled_from(SELLERS), st.sampled_from(ADDRESSES))
age = st.tuples(st.just("age"), st.sampled_from(SELLERS))  # the seller's hold period ends
decide = st.tuples(st.just("decide"), st.sampled_from(["approve", "reject"]), st.integers(0, 5))
steps = st.lists(
    st.one_of(submit, link_up, link_up, address, address, retract, purge, drop, override, age, age, decide),
    min_size=1,
    max_size=30,
)


@dataclass
class Exchange:
    """The world: sellers' sightings and status, analyst overrides, and the stored cluster state."""

    held: dict[int, set[IndicatorKey]] = field(default_factory=dict)
    inactive: set[int] = field(default_factory=set)
    overrides: dict[IndicatorKey, Override] = field(default_factory=dict)
    fresh: set[int] = field(default_factory=set)  # newly reported, or in a rejected merge
    rejected: set[int] = field(default_factory=set)  # stay fresh whatever their age
    stored: dict[int, frozenset[int]] = field(default_factory=dict)
    held_stored: dict[int, HeldMerge] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    divisor: int = 3  # each platform (seller % 4) counts for at most ceil(threshold / divisor) holders

    def sightings(self) -> list[Sighting]:
        return [
            Sighting(s, s % 4, kind, token) for s, keys in self.held.items() for kind, token in sorted(keys)
        ]

    def apply(self, step: tuple) -> tuple[set[int], set[IndicatorKey]]:
        """Change the world; return (touched sellers, touched indicators) as the caller would know them."""
        match step:
            case ("submit", seller, keys):
                if seller not in self.held:
                    self.fresh.add(seller)  # a new seller starts its hold period
                self.held.setdefault(seller, set()).update(keys)
                self.inactive.discard(seller)  # re-reporting a retracted seller makes it active again
                return {seller}, set()
            case ("age", seller):
                if seller not in self.fresh or seller in self.rejected:
                    return set(), set()
                self.fresh.discard(seller)
                return {seller}, set()
            case ("decide", decision, index):
                if not self.held_merges:
                    return set(), set()
                merge = sorted(self.held_merges.values(), key=lambda m: m.members)[
                    index % len(self.held_merges)
                ]
                if decision == "approve":
                    self.fresh -= set(merge.sellers)
                    self.rejected -= set(merge.sellers)
                else:
                    self.rejected |= set(merge.sellers)
                return set(merge.sellers), set()
            case ("retract", seller):
                self.inactive.add(seller)
                return {seller}, set()
            case ("purge", seller):
                if seller not in self.inactive:
                    return set(), set()
                self.held.pop(seller, None)  # purging an inactive seller changes no link: nothing touched
                self.fresh.discard(seller)
                self.rejected.discard(seller)
                return set(), set()
            case ("drop", seller, key):
                if key not in self.held.get(seller, set()):
                    return set(), set()
                self.held[seller].discard(key)
                return {seller}, {key}
            case ("override", key, value):
                if value is None:
                    self.overrides.pop(key, None)
                else:
                    self.overrides[key] = value
                return set(), {key}
        raise AssertionError(step)

    @property
    def held_merges(self) -> dict[int, HeldMerge]:
        return self.held_stored

    def full(self) -> tuple[set[frozenset[int]], set[HeldMerge]]:
        result = link(
            self.sightings(),
            thresholds=THRESHOLDS,
            platform_divisor=self.divisor,
            overrides=self.overrides,
            inactive=self.inactive,
            fresh=self.fresh,
        )
        return {cluster.member_set for cluster in result.clusters}, set(result.held)


@settings(max_examples=600, deadline=None)
@given(steps, st.sampled_from([1, 2, 3]))
def test_incremental_equals_full_after_every_step(steps: list[tuple], divisor: int) -> None:
    world = Exchange(divisor=divisor)
    for step in steps:
        touched_sellers, touched_indicators = world.apply(step)
        update = relink(
            world.sightings(),
            touched_sellers=touched_sellers,
            touched_indicators=touched_indicators,
            previous=world.stored,
            thresholds=THRESHOLDS,
            platform_divisor=world.divisor,
            overrides=world.overrides,
            inactive=world.inactive,
            fresh=world.fresh,
            previous_held={key: merge.members for key, merge in world.held_stored.items()},
        )
        for cluster_id in update.retired:
            del world.stored[cluster_id]
        for cluster in update.clusters:
            assert cluster.member_set <= update.scope
            world.stored[next(world.ids)] = cluster.member_set
        for held_id in update.retired_held:
            del world.held_stored[held_id]
        for merge in update.held:
            assert set(merge.members) <= update.scope
            world.held_stored[next(world.ids)] = merge
        clusters, held = world.full()
        assert set(world.stored.values()) == clusters, step
        assert set(world.held_stored.values()) == held, step


def test_a_new_holder_pushing_a_hub_over_its_threshold_splits_clusters_it_never_touched() -> None:
    # Sellers 1..3 share a phone (threshold 3) and are one cluster; seller 4 also reports the phone.
    world = Exchange()
    for seller in (1, 2, 3):
        world.apply(("submit", seller, {("phone", "p")}))
    world.stored = {0: frozenset({1, 2, 3})}
    touched, _ = world.apply(("submit", 4, {("phone", "p")}))
    update = relink(world.sightings(), touched_sellers=touched, previous=world.stored, thresholds=THRESHOLDS)
    assert update.retired == (0,)
    assert update.clusters == ()
    assert update.scope == {1, 2, 3, 4}


def test_unrelated_clusters_are_left_alone() -> None:
    world = Exchange()
    world.apply(("submit", 1, {("email", "e0")}))
    world.apply(("submit", 2, {("email", "e0")}))
    world.apply(("submit", 5, {("email", "e1")}))
    world.apply(("submit", 6, {("email", "e1")}))
    world.stored = {0: frozenset({1, 2}), 1: frozenset({5, 6})}
    touched, _ = world.apply(("submit", 3, {("email", "e0")}))
    update = relink(world.sightings(), touched_sellers=touched, previous=world.stored, thresholds=THRESHOLDS)
    assert update.retired == (0,)
    assert [c.members for c in update.clusters] == [(1, 2, 3)]
    assert update.scope == {1, 2, 3}


# Three pairs of other platforms' sellers, each pair a cluster; random steps then bridge, age, decide, retract.
PAIRS: list[tuple] = [
    ("submit", 0, {("email", "e0")}),
    ("submit", 4, {("email", "e0")}),
    ("submit", 1, {("email", "e1")}),
    ("submit", 5, {("email", "e1")}),
    ("submit", 3, {("bank_account", "b0")}),
    ("submit", 7, {("bank_account", "b0")}),
]
bridge = st.tuples(
    st.just("submit"),
    st.sampled_from(SELLERS),
    st.sets(
        st.sampled_from([("email", "e0"), ("email", "e1"), ("bank_account", "b0")]), min_size=2, max_size=2
    ),
)
bridging_steps = st.lists(
    st.one_of(bridge, bridge, link_up, retract, purge, drop, age, age, decide, decide),
    min_size=1,
    max_size=20,
)


@settings(max_examples=400, deadline=None)
@given(bridging_steps, st.sampled_from([1, 3]))
def test_incremental_equals_full_with_held_merges_after_every_step(steps: list[tuple], divisor: int) -> None:
    test_incremental_equals_full_after_every_step.hypothesis.inner_test(PAIRS + steps, divisor)  # type: ignore[attr-defined]
