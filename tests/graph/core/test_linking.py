"""The linking rules of PRODUCT.md ("Linking"), one table row per rule."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.contract import FUZZY_FAMILY, FUZZY_WIRE_KINDS
from graph.linking import (
    DEFAULT_STRENGTH,
    DEFAULT_THRESHOLDS,
    KINDS,
    WEAK_KINDS,
    IndicatorKey,
    Override,
    Sighting,
    SuppressedIndicator,
    family_codes,
    link,
    link_columns,
    weak_groups_link,
    weak_indicators_link,
    weak_pair_counts,
)

# Seller ids: Acme's sellers are 1xx, Bazaar's 2xx (platform 1 and 2).
ACME, BAZAAR = 1, 2


def seen(seller: int, kind: str, token: str) -> Sighting:
    return Sighting(seller, ACME if seller < 200 else BAZAAR, kind, token)


def members(sightings: list[Sighting], **kwargs: Any) -> list[tuple[int, ...]]:
    return [cluster.members for cluster in link(sightings, **kwargs).clusters]


RULES = [
    pytest.param(
        [seen(101, "email", "e1"), seen(201, "email", "e1")],
        [(101, 201)],
        id="one shared strong indicator links",
    ),
    pytest.param(
        [seen(101, "bank_account", "b1"), seen(201, "bank_account", "b2")],
        [],
        id="different strong indicators do not link",
    ),
    pytest.param(
        [seen(101, "store_name", "s1"), seen(201, "store_name", "s1")],
        [],
        id="a single shared weak indicator does not link",
    ),
    pytest.param(
        [
            seen(101, "store_name", "s1"),
            seen(201, "store_name", "s1"),
            seen(101, "shipping_address", "a1"),
            seen(201, "shipping_address", "a1"),
        ],
        [(101, 201)],
        id="two different shared weak indicators link",
    ),
    pytest.param(
        [
            seen(101, "device_id", "d1"),
            seen(201, "device_id", "d1"),
            seen(201, "device_id", "d1"),
            seen(101, "device_id", "d1"),
        ],
        [],
        id="the same weak indicator seen twice counts once",
    ),
    pytest.param(
        [
            seen(101, "store_name", "x"),
            seen(201, "store_name", "x"),
            seen(101, "website_domain", "x"),
            seen(201, "website_domain", "x"),
        ],
        [(101, 201)],
        id="an indicator is kind plus token: same token under two kinds is two indicators",
    ),
    pytest.param(
        [
            seen(101, "store_name", "s1"),
            seen(102, "store_name", "s1"),
            seen(102, "website_domain", "w1"),
            seen(103, "website_domain", "w1"),
        ],
        [],
        id="weak indicators shared with different sellers do not add up",
    ),
    pytest.param(
        [
            seen(101, "email", "e1"),
            seen(102, "email", "e1"),
            seen(102, "phone", "p1"),
            seen(201, "phone", "p1"),
        ],
        [(101, 102, 201)],
        id="links are transitive: clusters are connected components",
    ),
    pytest.param(
        [seen(101, "email", "e1"), seen(201, "phone", "p1"), seen(202, "tax_id", "t1")],
        [],
        id="sellers linked to nobody are in no cluster",
    ),
    pytest.param(
        [
            seen(101, "email", "e1"),
            seen(201, "email", "e1"),
            seen(102, "email", "e2"),
            seen(202, "email", "e2"),
        ],
        [(101, 201), (102, 202)],
        id="clusters are ordered by their smallest member",
    ),
]


@pytest.mark.parametrize(("sightings", "expected"), RULES)
def test_linking_rule(sightings: list[Sighting], expected: list[tuple[int, ...]]) -> None:
    assert members(sightings) == expected


def address(seller: int, exact: str, group: str, kind: str = "shipping_address") -> list[Sighting]:
    """An address as a partner sends it: the exact token and the fuzzy (near-duplicate) group it fell in."""
    return [seen(seller, kind, exact), seen(seller, f"{kind}_fuzzy", group)]


def both(kind: str, token: str) -> list[Sighting]:
    """Sellers 101 and 201 both hold the indicator."""
    return [seen(101, kind, token), seen(201, kind, token)]


# The family rule: an exact address and a fuzzy address group are one piece of evidence between two sellers.
FAMILY_RULES = [
    pytest.param(
        address(101, "x", "gx") + address(201, "x", "gx"),
        [],
        id="one shared address sent exact and fuzzy does not link",
    ),
    pytest.param(
        address(101, "r", "gr", "return_address") + address(201, "r", "gr", "return_address"),
        [],
        id="one shared return address sent exact and fuzzy does not link",
    ),
    pytest.param(
        address(101, "x", "gx")
        + address(101, "y1", "gy")
        + address(201, "x", "gx")
        + address(201, "y2", "gy"),
        [],
        id="an address's fuzzy groups are one piece: a second fuzzy group beside an exact address does not link",
    ),
    pytest.param(
        [*both("person_name", "g1"), *both("person_name", "g2")],
        [],
        id="two indicators of one name (its group, a direct match across groups) alone do not link",
    ),
    pytest.param(
        [*both("shipping_address_fuzzy", "g1"), *both("shipping_address_fuzzy", "g2")],
        [],
        id="two fuzzy address indicators alone do not link",
    ),
    pytest.param(
        [*both("person_name", "g1"), *both("business_name", "g2"), *both("person_name", "g3")],
        [],
        id="name indicators of both name kinds alone do not link",
    ),
    pytest.param(
        [*both("person_name", "g1"), *both("person_name", "g2"), *both("shipping_address_fuzzy", "gx")],
        [(101, 201)],
        id="a name through two indicators and a fuzzy address link",
    ),
    pytest.param(
        [*both("shipping_address", "x"), *both("shipping_address", "y")],
        [(101, 201)],
        id="two different exact addresses link",
    ),
    pytest.param(
        [*both("shipping_address", "x"), *both("shipping_address_fuzzy", "gy")],
        [],
        id="an exact address and a fuzzy group alone are of one family whatever the group",
    ),
    pytest.param(
        [*both("person_name", "n"), *both("shipping_address_fuzzy", "gx")],
        [(101, 201)],
        id="a fuzzy name and a fuzzy address link",
    ),
    pytest.param(
        [seen(s, "store_name", name) for s in (101, 201) for name in ("s1", "s2")],
        [(101, 201)],
        id="two different exact store names link",
    ),
    pytest.param(
        address(101, "x", "gx")
        + address(201, "x", "gx")
        + [seen(101, "store_name", "s"), seen(201, "store_name", "s")],
        [(101, 201)],
        id="an address sent exact and fuzzy and a store name link",
    ),
    pytest.param(
        [*both("shipping_address", "x"), *both("return_address_fuzzy", "gr")],
        [(101, 201)],
        id="a shipping address and a fuzzy return address are two families and link",
    ),
]


@pytest.mark.parametrize(("sightings", "expected"), FAMILY_RULES)
def test_family_rule(sightings: list[Sighting], expected: list[tuple[int, ...]]) -> None:
    assert members(sightings) == expected


weak_kind = st.sampled_from([kind for kind in KINDS if DEFAULT_STRENGTH[kind] == "weak"])


@given(st.lists(weak_kind, max_size=6))
def test_weak_indicators_link_is_some_pair_counting(kinds: list[str]) -> None:
    """The shortcut in weak_indicators_link is the rule stated pairwise, and its column form agrees."""
    pairwise = any(weak_pair_counts(a, b) for a, b in itertools.combinations(kinds, 2))
    assert weak_indicators_link(kinds) == pairwise
    codes = np.array([KINDS.index(kind) for kind in kinds], dtype=np.int64)
    grouped = weak_groups_link(np.zeros(codes.size, dtype=np.int64), codes, family_codes(KINDS), 1)
    assert bool(grouped[0]) == pairwise


def holders(count: int, kind: str, token: str) -> list[Sighting]:
    """``count`` sellers 101, 102, ... on five platforms in turn (one platform alone cannot make a hub)."""
    return [Sighting(101 + n, 1 + n % 5, kind, token) for n in range(count)]


def weak_pair(count: int) -> list[Sighting]:
    """``count`` sellers sharing one store name and one shipping address."""
    return holders(count, "store_name", "s1") + holders(count, "shipping_address", "a1")


@pytest.mark.parametrize(
    ("sightings", "thresholds", "expected_sizes", "suppressed_kinds"),
    [
        pytest.param(holders(25, "phone", "p1"), {}, [25], [], id="strong at its threshold links"),
        pytest.param(
            holders(26, "phone", "p1"), {}, [], ["phone"], id="strong over its threshold is suppressed"
        ),
        pytest.param(holders(3, "email", "e1"), {"email": 2}, [], ["email"], id="threshold per kind applies"),
        pytest.param(weak_pair(10), {}, [10], [], id="store name at 10 and address at 10 link"),
        pytest.param(
            weak_pair(11),
            {},
            [],
            ["store_name"],
            id="store name over 10 leaves one weak indicator: no link; the address (at most 15) is not suppressed",
        ),
    ],
)
def test_hub_suppression(
    sightings: list[Sighting],
    thresholds: dict[str, int],
    expected_sizes: list[int],
    suppressed_kinds: list[str],
) -> None:
    result = link(sightings, thresholds={**DEFAULT_THRESHOLDS, **thresholds})
    assert [len(cluster.members) for cluster in result.clusters] == expected_sizes
    assert [s.kind for s in result.suppressed if s.reason == "threshold"] == suppressed_kinds


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, [(101, 102, 201)], id="no override"),
        pytest.param({("email", "e1"): "common"}, [(102, 201)], id="common suppresses below the threshold"),
        pytest.param(
            {("phone", "hub"): "include"}, [(101, 102, 201, *range(103, 133))], id="include links a hub"
        ),
    ],
)
def test_analyst_overrides(
    overrides: dict[tuple[str, str], Override], expected: list[tuple[int, ...]]
) -> None:
    sightings = [
        seen(101, "email", "e1"),
        seen(102, "email", "e1"),
        seen(102, "bank_account", "b1"),
        seen(201, "bank_account", "b1"),
        *holders(32, "phone", "hub")[2:],  # sellers 103..132 share a support phone: over 25
        seen(101, "phone", "hub"),
    ]
    assert [tuple(sorted(m)) for m in members(sightings, overrides=overrides)] == [
        tuple(sorted(e)) for e in expected
    ]


def test_suppressed_indicators_are_reported_on_the_clusters_that_hold_them() -> None:
    sightings = [
        seen(101, "email", "e1"),
        seen(201, "email", "e1"),
        seen(101, "website_domain", "common.example"),
        seen(102, "website_domain", "common.example"),
    ]
    overrides: dict[IndicatorKey, Override] = {("website_domain", "common.example"): "common"}
    result = link(sightings, overrides=overrides)
    context = SuppressedIndicator(("website_domain", "common.example"), "website_domain", 2, "common", 2)
    assert [c.suppressed for c in result.clusters] == [(context,)]
    assert result.suppressed == (context,)


def test_inactive_sellers_do_not_link() -> None:
    sightings = [seen(101, "email", "e1"), seen(201, "email", "e1"), seen(202, "email", "e1")]
    assert members(sightings, inactive={202}) == [(101, 201)]
    assert members(sightings, inactive={201, 202}) == []


def test_inactive_sellers_do_not_count_towards_a_hub() -> None:
    sightings = holders(26, "phone", "p1")
    assert members(sightings) == []
    assert [len(m) for m in members(sightings, inactive={101})] == [25]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown indicator kind"):
        link([seen(101, "shoe_size", "42"), seen(102, "shoe_size", "42")])


def test_result_does_not_depend_on_input_order_or_duplicates() -> None:
    rng = random.Random(3)
    pool = [(kind, f"t{n}") for kind in KINDS for n in range(3)]
    sightings = [seen(seller, *rng.choice(pool)) for seller in range(100, 160) for _ in range(4)]
    expected = link(sightings)
    assert expected.clusters  # the example links something
    for _ in range(5):
        shuffled = sightings + rng.sample(sightings, 30)
        rng.shuffle(shuffled)
        assert link(shuffled) == expected


def test_column_input_matches_tuple_input() -> None:
    rng = np.random.default_rng(5)
    seller = rng.integers(0, 400, size=3000)
    indicator = rng.integers(0, 900, size=3000)
    kind = indicator % len(KINDS)
    platform = seller % 4
    by_columns = link_columns(seller, indicator, kind, platform=platform)
    sightings = [
        Sighting(int(s), int(s) % 4, KINDS[int(k)], str(i))
        for s, i, k in zip(seller, indicator, kind, strict=True)
    ]
    assert [c.members for c in link(sightings).clusters] == [c.members for c in by_columns.clusters]
    assert sorted(s.indicator for s in by_columns.suppressed) == sorted(
        int(s.indicator[1]) for s in link(sightings).suppressed
    )


def test_column_input_accepts_sparse_ids() -> None:
    seller = [10**12, 5, 10**12 + 7, 5]
    indicator = [10**15, 10**15, 3, 3]
    kind = [KINDS.index("email"), KINDS.index("email"), KINDS.index("store_name"), KINDS.index("store_name")]
    platform = [1, 2, 1, 2]
    assert [c.members for c in link_columns(seller, indicator, kind, platform=platform).clusters] == [
        (5, 10**12)
    ]


def naive_clusters(
    sightings: list[Sighting],
    thresholds: dict[str, int],
    overrides: dict[tuple[str, str], Override],
    divisor: int = 3,
) -> list[tuple[int, ...]]:
    """The rules applied literally: every pair of sellers, its shared indicators, then components; an
    indicator's holders counted per platform, each platform's share capped at ceil(threshold / divisor)."""
    held: dict[int, set[tuple[str, str]]] = {}
    platform_of: dict[int, int] = {}
    for s in sightings:
        held.setdefault(s.seller_id, set()).add((s.kind, str(s.token)))
        platform_of[s.seller_id] = s.platform_id

    def counted(key: tuple[str, str]) -> int:
        cap = math.ceil(thresholds[key[0]] / divisor)
        per_platform: dict[int, int] = {}
        for seller, keys in held.items():
            if key in keys:
                per_platform[platform_of[seller]] = per_platform.get(platform_of[seller], 0) + 1
        return sum(min(n, cap) for n in per_platform.values())

    def links(key: tuple[str, str]) -> bool:
        override = overrides.get(key)
        return override == "include" or (override != "common" and counted(key) <= thresholds[key[0]])

    def own_hub(seller: int, key: tuple[str, str]) -> bool:
        """The seller's platform alone holds more than the threshold: its holders do not link through it."""
        same = sum(1 for s, keys in held.items() if key in keys and platform_of[s] == platform_of[seller])
        return overrides.get(key) != "include" and same > thresholds[key[0]]

    graph = nx.Graph()
    for a, b in itertools.combinations(sorted(held), 2):
        shared = {
            key for key in held[a] & held[b] if links(key) and not own_hub(a, key) and not own_hub(b, key)
        }
        weak = [kind for kind, _ in shared if DEFAULT_STRENGTH[kind] == "weak"]
        # Two weak indicators count unless their kinds differ within one family (an exact address and a fuzzy
        # address group), stated literally here.
        counting = any(
            (ka == kb and ka not in FUZZY_WIRE_KINDS) or FUZZY_FAMILY.get(ka, ka) != FUZZY_FAMILY.get(kb, kb)
            for ka, kb in itertools.combinations(weak, 2)
        )
        if any(DEFAULT_STRENGTH[kind] == "strong" for kind, _ in shared) or counting:
            graph.add_edge(a, b)
    return sorted(tuple(sorted(c)) for c in nx.connected_components(graph))


indicator_pool = st.sampled_from(
    [
        (kind, f"t{n}")
        for kind in (
            "email",
            "phone",
            *WEAK_KINDS,
            "shipping_address_fuzzy",
            "return_address_fuzzy",
            "person_name",
        )
        for n in range(3)
    ]
)


# Addresses as partners send them, exact token and fuzzy group together: t0 and t1 are near-duplicates (one group).
addresses = st.sampled_from(
    [
        ((kind, f"t{n}"), (f"{kind}_fuzzy", f"t{n // 2}"))
        for kind in ("shipping_address", "return_address")
        for n in range(3)
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 15), indicator_pool), max_size=80),
    st.lists(st.tuples(st.integers(0, 15), addresses), max_size=20),
    st.dictionaries(indicator_pool, st.sampled_from(["common", "include"]), max_size=3),
    st.integers(1, 5),
    st.integers(1, 4),
)
def test_linking_matches_the_rules_applied_pairwise(
    rows: list[tuple[int, tuple[str, str]]],
    address_rows: list[tuple[int, tuple[tuple[str, str], tuple[str, str]]]],
    overrides: dict[tuple[str, str], Override],
    threshold: int,
    divisor: int,
) -> None:
    # Sellers 0..15 on platforms 0..2 (seller % 3): the per-platform cap matters for thresholds >= 2.
    rows = rows + [(seller, key) for seller, both in address_rows for key in both]
    sightings = [Sighting(seller, seller % 3, kind, token) for seller, (kind, token) in rows]
    thresholds = dict.fromkeys(DEFAULT_THRESHOLDS, threshold)
    result = link(sightings, thresholds=thresholds, overrides=overrides, platform_divisor=divisor)
    assert [c.members for c in result.clusters] == naive_clusters(sightings, thresholds, overrides, divisor)
