"""The interactive graph's data (graph/network.py) as the cluster page embeds it: what each viewer may see, the
evidence chain it highlights, suppressed indicators, and palettes that keep sellers and indicators apart.

tests/system/test_admin_browser.py drives the graph itself in Chromium."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from accounts.scoping import EVERYTHING
from exchange.models import Indicator, Linking, Seller
from graph.explain import explain
from graph.network import network
from graph.palette import KIND_COLOURS, PLATFORM_COLOURS
from tests.admin_world import AdminWorld, build, cut_by_the_hub_rule, logged_in

pytestmark = pytest.mark.django_db

DATA = re.compile(r'<script id="cluster-graph-data" type="application/json">(.*?)</script>', re.S)


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    return build(acme, bazaar)


def embedded_graph(client: Client, url: str) -> tuple[dict[str, Any], str]:
    """The graph data block of the cluster page, parsed, and its raw text as served."""
    response = client.get(url)
    assert response.status_code == 200
    found = DATA.search(response.content.decode())
    assert found is not None, "the cluster page embeds its graph as a JSON data block"
    return json.loads(found.group(1)), found.group(1)


def sellers_of(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["label"]: node for node in graph["nodes"] if node["type"] == "seller"}


def test_partner_analysts_graph_shows_other_platforms_as_aliases_only(world, bob):
    graph, raw = embedded_graph(logged_in(bob), f"/admin/graph/actorcluster/{world.ring.ref}/change/")
    sellers = sellers_of(graph)
    assert set(sellers) == {"acme-1", "acme-2", "Platform A #1", "Platform A #2"}
    assert sellers["acme-1"]["url"].startswith("/admin/exchange/seller/")
    assert sellers["Platform A #1"]["url"] is None and "status" not in sellers["Platform A #1"]
    assert "baz-" not in raw and "Bazaar North" not in raw
    for token in Indicator.objects.values_list("token", flat=True):
        assert token[:12] not in raw
    assert "/admin/exchange/indicator/" not in raw
    for seller_id in Seller.objects.filter(platform=world.bazaar.platform).values_list("pk", flat=True):
        assert f"/admin/exchange/seller/{seller_id}/" not in raw
    # Node ids are positions on the page, never database ids; an indicator only Bazaar holds has no exchange-
    # wide count and only its month (as the indicator table shows it).
    indicators = {node["kind"]: node for node in graph["nodes"] if node["type"] == "indicator"}
    assert {node["id"] for node in graph["nodes"]} == {"s1", "s2", "s3", "s4", "i1", "i2", "i3"}
    assert indicators["tax_id"]["holders"] is None and re.fullmatch(
        r"\d{4}-\d{2}", indicators["tax_id"]["firstSeen"]
    )
    assert indicators["phone"]["holders"] == 2 and re.fullmatch(
        r"\d{4}-\d{2}-\d{2}", indicators["phone"]["firstSeen"]
    )
    # The time slider's key is no finer: the 1st of that month.
    assert indicators["tax_id"]["seen"] == indicators["tax_id"]["firstSeen"] + "-01"


def test_partner_analysts_graph_names_other_platforms_when_the_consortium_reveals_them(world, bob, settings):
    settings.EXCHANGE_REVEAL_PLATFORM_NAMES = True
    graph, raw = embedded_graph(logged_in(bob), f"/admin/graph/actorcluster/{world.ring.ref}/change/")
    assert {p["label"] for p in graph["platforms"]} == {"Acme Market", "Bazaar North"}
    assert "baz-" not in raw


def test_exchange_analysts_graph_has_every_seller_indicator_and_token_prefix(world, alice):
    graph, _ = embedded_graph(logged_in(alice), f"/admin/graph/actorcluster/{world.ring.pk}/change/")
    assert set(sellers_of(graph)) == {"acme-1", "acme-2", "baz-1", "baz-2"}
    assert all(node["url"] for node in sellers_of(graph).values())
    indicators = [node for node in graph["nodes"] if node["type"] == "indicator"]
    ring = Indicator.objects.filter(sightings__seller__seller_ref__in=["acme-1", "baz-1"]).distinct()
    tokens = {i.kind: i.token[:12] for i in ring}
    assert {(node["kind"], node["token"]) for node in indicators} == {
        (kind, tokens[kind]) for kind in ("email", "phone", "tax_id")
    }
    assert len(graph["edges"]) == 6  # each indicator is held by two of the ring
    assert next(node for node in indicators if node["kind"] == "email")["bridge"] is True


def test_graph_highlights_the_chain_the_page_lists(world, alice):
    """acme-2 ~phone~ acme-1 ~email~ baz-1 ~tax id~ baz-2: positions 2 and 4 on the page."""
    graph, _ = embedded_graph(logged_in(alice), f"/admin/graph/actorcluster/{world.ring.pk}/change/?a=2&b=4")
    by_id = {node["id"]: node for node in graph["nodes"]}
    assert [by_id[n]["label"] for n in graph["pair"]] == ["acme-2", "baz-2"]
    chain = graph["chain"]
    assert {by_id[n].get("kind") or by_id[n]["label"] for n in chain["nodes"]} == {
        "acme-1",
        "acme-2",
        "baz-1",
        "baz-2",
        "phone",
        "email",
        "tax_id",
    }
    edge_ids = {edge["id"] for edge in graph["edges"]}
    assert len(chain["edges"]) == 6 and set(chain["edges"]) <= edge_ids


def test_graph_has_no_chain_when_the_chosen_pair_is_not_linked(world, alice):
    graph, _ = embedded_graph(logged_in(alice), f"/admin/graph/actorcluster/{world.ring.pk}/change/?a=2&b=2")
    assert graph["pair"] == [] and graph["chain"] == {"nodes": [], "edges": []}


def test_suppressed_indicator_is_drawn_with_dashed_edges(world):
    Indicator.objects.filter(kind="email").update(linking=Linking.COMMON)
    graph = network(explain(world.ring, EVERYTHING), None, [])
    email = next(node for node in graph["nodes"] if node.get("kind") == "email")
    assert email["suppressed"] == "common"
    dashed = {edge["id"] for edge in graph["edges"] if edge["suppressed"]}
    assert (
        dashed == {edge["id"] for edge in graph["edges"] if edge["target"] == email["id"]}
        and len(dashed) == 2
    )


def relative_luminance(colour: str) -> float:
    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.03928 else ((channel + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_platform_colours_and_kind_colours_cannot_be_confused():
    # Sellers are dark and indicators light (and differently shaped): a platform never reads as a kind.
    assert max(relative_luminance(c) for c in PLATFORM_COLOURS) < 0.15
    assert min(relative_luminance(c) for c in KIND_COLOURS.values()) > 0.35
    assert len(set(KIND_COLOURS.values())) == len(KIND_COLOURS)
    assert len(set(PLATFORM_COLOURS)) == len(PLATFORM_COLOURS)


def test_graph_fades_the_rest_only_for_a_pair_the_viewer_chose(world, alice):
    default, _ = embedded_graph(logged_in(alice), f"/admin/graph/actorcluster/{world.ring.pk}/change/")
    chosen, _ = embedded_graph(logged_in(alice), f"/admin/graph/actorcluster/{world.ring.pk}/change/?a=1&b=3")
    assert default["chain"]["nodes"] and default["focus"] is False
    assert chosen["chain"]["nodes"] and chosen["focus"] is True


def test_exchange_analyst_can_expand_to_clusters_the_hub_rule_cut(acme):
    here, there = cut_by_the_hub_rule(acme)
    graph = network(explain(here, EVERYTHING), None, [])
    # The email is one member's here, so it is not drawn until the analyst expands.
    assert [n["kind"] for n in graph["nodes"] if n["type"] == "indicator"] == ["phone"]
    neighbours = graph["neighbours"]
    email = next(n for n in neighbours["nodes"] if n["type"] == "indicator")
    cluster = next(n for n in neighbours["nodes"] if n["type"] == "cluster")
    assert (email["kind"], email["suppressed"]) == ("email", "common")
    assert cluster["url"] == f"/admin/graph/actorcluster/{there.pk}/change/" and cluster["size"] == 2
    assert {(e["source"], e["target"], e["suppressed"]) for e in neighbours["edges"]} == {
        (email["id"], cluster["id"], True),
        (next(n["id"] for n in graph["nodes"] if n.get("label") == "n-2"), email["id"], True),
    }


def test_partner_analysts_graph_offers_no_neighbouring_clusters(acme, bob):
    here, _ = cut_by_the_hub_rule(acme)
    graph, raw = embedded_graph(logged_in(bob), f"/admin/graph/actorcluster/{here.ref}/change/")
    assert graph["neighbours"] is None and "/admin/graph/actorcluster/" not in raw
