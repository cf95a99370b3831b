"""Every link is explainable: chains of shared indicators, what holds a cluster, and its bridges."""

from __future__ import annotations

from datetime import UTC, datetime

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.evidence import (
    NotLinked,
    bridges,
    evidence_chain,
    evidence_tree,
    holding_indicators,
    link_counts,
    link_graph,
    link_summaries,
    link_summary,
)
from graph.linking import DEFAULT_STRENGTH, KINDS, Sighting, family_codes, link
from tests.graph.core.test_linking import FAMILY_RULES

JAN, FEB, MAR = (datetime(2025, month, 1, tzinfo=UTC) for month in (1, 2, 3))

# A chain 1 -(email)- 2 -(store name + address)- 3 -(bank account)- 4, and 4 also shares the bank account with 5
# and the phone with 5: two strong indicators between 4 and 5, so neither alone is a bridge.
CLUSTER = [
    Sighting(1, 10, "email", "e1", MAR),
    Sighting(2, 20, "email", "e1", JAN),
    Sighting(2, 20, "store_name", "s1", FEB),
    Sighting(3, 30, "store_name", "s1", MAR),
    Sighting(2, 20, "shipping_address", "a1", FEB),
    Sighting(3, 30, "shipping_address", "a1", FEB),
    Sighting(3, 30, "bank_account", "b1", JAN),
    Sighting(4, 10, "bank_account", "b1", FEB),
    Sighting(4, 10, "phone", "p1", FEB),
    Sighting(5, 20, "phone", "p1", MAR),
    Sighting(5, 20, "bank_account", "b1", MAR),
]


def test_chain_lists_each_hop_with_its_shared_indicators() -> None:
    chain = evidence_chain(CLUSTER, 1, 4)
    assert [(link.a, link.b) for link in chain] == [(1, 2), (2, 3), (3, 4)]
    assert [[(i.kind, i.token) for i in link.indicators] for link in chain] == [
        [("email", "e1")],
        [("shipping_address", "a1"), ("store_name", "s1")],
        [("bank_account", "b1")],
    ]
    bank = chain[2].indicators[0]
    assert (bank.strength, bank.sellers, bank.platforms, bank.first_seen) == ("strong", 3, 3, JAN)


def test_chain_to_oneself_is_empty_and_unlinked_sellers_raise() -> None:
    assert evidence_chain(CLUSTER, 3, 3) == []
    with pytest.raises(NotLinked):
        evidence_chain([*CLUSTER, Sighting(6, 10, "email", "lonely")], 1, 6)


def test_suppressed_indicators_do_not_explain_links() -> None:
    with pytest.raises(NotLinked):
        evidence_chain(CLUSTER, 1, 2, suppressed={("email", "e1")})


def test_global_counts_are_shown_when_given() -> None:
    chain = evidence_chain(CLUSTER, 1, 2, seller_counts={("email", "e1"): 7})
    assert chain[0].indicators[0].sellers == 7


def test_evidence_tree_reaches_every_member_once_by_its_shortest_chain_from_the_first_root() -> None:
    links = evidence_tree(CLUSTER, [3])
    assert [(link.a, link.b) for link in links] == [(3, 2), (3, 4), (3, 5), (2, 1)]
    assert [[i.kind for i in link.indicators] for link in links] == [
        ["shipping_address", "store_name"],
        ["bank_account"],
        ["bank_account"],
        ["email"],
    ]
    # Without a preferred root the smallest id starts; the same data in another order gives the same links.
    expected = [(1, 2), (2, 3), (3, 4), (3, 5)]
    assert [(link.a, link.b) for link in evidence_tree(CLUSTER, [])] == expected
    assert [(link.a, link.b) for link in evidence_tree(list(reversed(CLUSTER)), [])] == expected


def test_evidence_tree_spans_each_component_and_leaves_unlinked_members_alone() -> None:
    apart = [
        Sighting(7, 10, "phone", "p7"),
        Sighting(8, 20, "phone", "p7"),
        Sighting(6, 10, "email", "lonely"),
    ]
    links = evidence_tree([*CLUSTER, *apart], [8, 4])
    assert [(link.a, link.b) for link in links] == [(8, 7), (4, 3), (4, 5), (3, 2), (2, 1)]
    # A member whose only shared indicator is suppressed is reached by nothing; the rest still are.
    links = evidence_tree(CLUSTER, [1], suppressed={("email", "e1")})
    assert [(link.a, link.b) for link in links] == [(2, 3), (3, 4), (3, 5)]


def test_holding_indicators_strong_first_most_holders_first() -> None:
    held = [(h.indicator.kind, h.indicator.sellers, h.links) for h in holding_indicators(CLUSTER)]
    assert held == [
        ("bank_account", 3, 3),
        ("email", 2, 1),
        ("phone", 2, 1),
        ("shipping_address", 2, 1),
        ("store_name", 2, 1),
    ]


def test_a_single_weak_indicator_does_not_hold_anything() -> None:
    sightings = [Sighting(1, 1, "email", "e"), Sighting(2, 1, "email", "e")]
    sightings += [Sighting(1, 1, "device_id", "d"), Sighting(3, 1, "device_id", "d")]
    assert [h.indicator.kind for h in holding_indicators(sightings)] == ["email"]


@pytest.mark.parametrize(
    ("sightings", "expected"),
    [
        pytest.param(
            CLUSTER, ["bank_account", "email", "shipping_address", "store_name"], id="chain cluster"
        ),
        pytest.param(
            [
                Sighting(1, 1, "store_name", "s"),
                Sighting(2, 1, "store_name", "s"),
                Sighting(1, 1, "device_id", "d"),
                Sighting(2, 1, "device_id", "d"),
                Sighting(1, 1, "website_domain", "w"),
                Sighting(2, 1, "website_domain", "w"),
            ],
            [],
            id="three weak indicators: removing any one still leaves two",
        ),
        pytest.param(
            [Sighting(s, 1, "email", "e") for s in (1, 2, 3)]
            + [Sighting(s, 1, "phone", "p") for s in (1, 2, 3)],
            [],
            id="two strong indicators shared by all: no bridge",
        ),
    ],
)
def test_bridges(sightings: list[Sighting], expected: list[str]) -> None:
    assert sorted(b.kind for b in bridges(sightings)) == expected


def test_link_counts_split_strong_from_weak_only_links() -> None:
    assert link_counts(link_graph(CLUSTER)) == (4, 1)  # bank account: 3 pairs; email: 1


def test_link_summary_agrees_with_the_link_graph():
    from graph.evidence import link_counts, link_graph, link_summary
    from graph.linking import Sighting

    rows = [
        Sighting(1, 1, "email", "e1"),
        Sighting(2, 2, "email", "e1"),
        Sighting(2, 2, "store_name", "s1"),
        Sighting(3, 3, "store_name", "s1"),
        Sighting(2, 2, "device_id", "d1"),
        Sighting(3, 3, "device_id", "d1"),
        Sighting(3, 3, "phone", "p1"),
        Sighting(4, 1, "phone", "p1"),
        Sighting(4, 1, "website_domain", "w1"),
        Sighting(1, 1, "website_domain", "w1"),
    ]
    for suppressed in [(), [("phone", "p1")]]:
        graph = link_graph(rows, suppressed=suppressed)
        kinds = sorted({i.kind for _, _, link in graph.edges(data="link") for i in link.indicators})
        assert link_summary(rows, suppressed=suppressed) == (*link_counts(graph), kinds)


@pytest.mark.parametrize(("sightings", "expected"), FAMILY_RULES)
def test_evidence_follows_the_family_rule_as_linking_does(
    sightings: list[Sighting], expected: list[tuple[int, ...]]
) -> None:
    graph = link_graph(sightings)
    assert sorted(tuple(sorted(c)) for c in nx.connected_components(graph) if len(c) >= 2) == expected
    if expected:
        (chain,) = evidence_chain(sightings, *expected[0])
        assert {i.kind for i in chain.indicators} == {s.kind for s in sightings}
    else:
        with pytest.raises(NotLinked):
            evidence_chain(sightings, 101, 201)
    assert link_summary(sightings) == (
        *link_counts(graph),
        sorted({s.kind for s in sightings} if expected else []),
    )


def test_an_address_sent_exact_and_fuzzy_is_not_a_bridge_beside_a_name_only_together() -> None:
    # 1-2 share a name and an address (exact and fuzzy): without the name the address alone does not link, so the
    # name is a bridge; either address indicator alone is not (the name and the other still link).
    sightings = [Sighting(s, s, kind, "v") for s in (1, 2) for kind in ("person_name", *ADDRESS)]
    assert [b.kind for b in bridges(sightings)] == ["person_name"]


# Kinds drawn for the random worlds: every kind, the address families (exact and fuzzy) several times over.
ADDRESS = ("shipping_address", "shipping_address_fuzzy")
DRAWN_KINDS = [*KINDS, *ADDRESS * 2, "return_address", "return_address_fuzzy"]


@st.composite
def clusters_of_sightings(draw: st.DrawFn) -> tuple[list[list[Sighting]], list[set[tuple[str, str]]]]:
    """Clusters with disjoint members holding indicators from a small pool (so that they share), addresses sent
    exact and fuzzy among them, and a suppressed subset of each cluster's indicators."""
    clusters: list[list[Sighting]] = []
    suppressed: list[set[tuple[str, str]]] = []
    next_seller = 1
    for _ in range(draw(st.integers(1, 6))):
        members = list(range(next_seller, next_seller + draw(st.integers(1, 8))))
        next_seller += len(members)
        rows = draw(
            st.lists(
                st.tuples(st.sampled_from(members), st.sampled_from(DRAWN_KINDS), st.integers(0, 4)),
                max_size=40,
            )
        )
        sightings = [Sighting(m, 1, kind, f"{kind}-{token}") for m, kind, token in rows]
        # Addresses as partners send them: the exact token and its fuzzy group (addresses 0 and 1 near-duplicates).
        addresses = draw(st.lists(st.tuples(st.sampled_from(members), st.integers(0, 3)), max_size=12))
        for m, n in addresses:
            sightings.append(Sighting(m, 1, "shipping_address", f"shipping_address-{n}"))
            sightings.append(Sighting(m, 1, "shipping_address_fuzzy", f"shipping_address_fuzzy-{n // 2}"))
        clusters.append(sightings)
        keys = sorted({(s.kind, str(s.token)) for s in sightings})
        suppressed.append(set(draw(st.lists(st.sampled_from(keys), max_size=3))) if keys else set())
    return clusters, suppressed


@settings(max_examples=300, deadline=None)
@given(clusters_of_sightings())
def test_link_summaries_over_columns_equal_link_summary_per_cluster(
    drawn: tuple[list[list[Sighting]], list[set[tuple[str, str]]]],
) -> None:
    clusters, suppressed = drawn
    ids: dict[tuple[str, str], int] = {}  # the database's indicator ids: one per (kind, token)
    columns: list[tuple[int, int, int, int]] = []
    for n, (sightings, hidden) in enumerate(zip(clusters, suppressed, strict=True)):
        for s in sightings:
            key = (s.kind, str(s.token))
            if key not in hidden:
                columns.append((n, s.seller_id, ids.setdefault(key, len(ids) + 1), KINDS.index(s.kind)))
    strong, weak, masks = link_summaries(
        [c[0] for c in columns],
        [c[1] for c in columns],
        [c[2] for c in columns],
        [c[3] for c in columns],
        [DEFAULT_STRENGTH[kind] == "strong" for kind in KINDS],
        family_codes(KINDS),
        len(clusters),
    )
    for n, (sightings, hidden) in enumerate(zip(clusters, suppressed, strict=True)):
        kinds = sorted(kind for code, kind in enumerate(KINDS) if int(masks[n]) >> code & 1)
        assert (int(strong[n]), int(weak[n]), kinds) == link_summary(sightings, suppressed=hidden)


@settings(max_examples=200, deadline=None)
@given(clusters_of_sightings())
def test_the_link_graph_has_the_clusters_of_linking(
    drawn: tuple[list[list[Sighting]], list[set[tuple[str, str]]]],
) -> None:
    """Evidence and linking state the same rule: the link graph's components are linking's clusters (at most
    eight members per world: no hubs), and an indicator is a bridge exactly when linking without it gives more
    pieces."""
    for sightings in drawn[0]:
        graph = link_graph(sightings)
        components = sorted(tuple(sorted(c)) for c in nx.connected_components(graph) if len(c) >= 2)
        assert components == [cluster.members for cluster in link(sightings).clusters]

        sellers = {s.seller_id for s in sightings}

        def pieces(rows: list[Sighting], sellers: set[int] = sellers) -> int:  # singletons included
            return len(sellers) - sum(len(c.members) - 1 for c in link(rows).clusters)

        whole = pieces(sightings)
        bridge_keys = {b.key for b in bridges(sightings)}
        for key in {(s.kind, s.token) for s in sightings}:
            without = [s for s in sightings if (s.kind, s.token) != key]
            assert (key in bridge_keys) == (pieces(without) > whole), key
