"""The SVG picture's layout: it uses the whole box, nodes keep apart, and every label stays inside."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from accounts.scoping import EVERYTHING
from graph.explain import explain
from graph.models import ActorCluster
from graph.picture import CHAIN_RISE, HEIGHT, WIDTH, label_width, render
from tests.admin_world import AdminWorld, build
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
NODE_DIAMETER = 26  # the widest single node: an indicator's bridge ring (r=13)
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@dataclass(frozen=True)
class Node:
    kind: str  # "seller" or "indicator"
    x: float
    y: float
    label: str


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> AdminWorld:
    return build(acme, bazaar)


def nodes_of(svg: str) -> list[Node]:
    """Each drawn seller and indicator with its centre and label, read back from the SVG."""
    found = []
    for group in ET.fromstring(svg).iter(f"{SVG}g"):  # noqa: S314 - our own SVG, not untrusted input
        kind = group.get("class", "")
        label = group.find(f"{SVG}text")
        text = label.text or "" if label is not None else ""
        if kind == "seller":
            circle = group.find(f"{SVG}circle")
            assert circle is not None
            found.append(Node(kind, float(circle.get("cx", "")), float(circle.get("cy", "")), text))
        elif kind == "indicator":
            rect = group.find(f"{SVG}rect")
            if rect is not None:
                x, y = float(rect.get("x", "")) + 6, float(rect.get("y", "")) + 6
            else:
                polygon = group.find(f"{SVG}polygon")
                assert polygon is not None
                points = [tuple(map(float, p.split(","))) for p in polygon.get("points", "").split()]
                x, y = sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)
            found.append(Node(kind, x, y, text))
    return found


def assert_labels_inside(svg: str) -> None:
    drawn = ET.fromstring(svg)  # noqa: S314 - our own SVG, not untrusted input
    texts = [t for t in drawn.iter(f"{SVG}text") if t.get("text-anchor") == "middle"]
    assert texts
    for text in texts:
        size = 10 if "kind" in text.get("class", "") else 11
        half = label_width(text.text or "", size) / 2
        x, y = float(text.get("x", "")), float(text.get("y", ""))
        assert x - half >= 0 and x + half <= WIDTH, text.text
        assert size <= y <= HEIGHT, text.text


def assert_nodes_apart(nodes: list[Node]) -> None:
    for n, a in enumerate(nodes):
        for b in nodes[n + 1 :]:
            assert math.dist((a.x, a.y), (b.x, b.y)) >= NODE_DIAMETER, (a, b)


def test_a_chain_is_drawn_as_a_labelled_row_across_the_box(world: AdminWorld) -> None:
    svg = render(explain(world.ring, EVERYTHING)).svg
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "picture-ring.svg").write_text(svg)
    nodes = nodes_of(svg)
    assert len(nodes) == 7
    xs = [node.x for node in nodes]
    assert max(xs) - min(xs) >= 0.7 * WIDTH
    # Along the chain from left to right (either end may come first), evenly spaced.
    by_x = sorted(nodes, key=lambda node: node.x)
    order = [node.label for node in by_x]
    chain = ["acme-2", "phone", "acme-1", "email", "baz-1", "tax id", "baz-2"]
    assert order in (chain, chain[::-1])
    gaps = [b.x - a.x for a, b in itertools.pairwise(by_x)]
    assert max(gaps) - min(gaps) < 1
    # Not a diagonal: sellers share one row, the indicators between them sit one step above it.
    seller_rows = {node.y for node in nodes if node.kind == "seller"}
    indicator_rows = {node.y for node in nodes if node.kind == "indicator"}
    assert len(seller_rows) == 1 and len(indicator_rows) == 1
    assert seller_rows.pop() - indicator_rows.pop() == CHAIN_RISE
    assert_nodes_apart(nodes)
    assert_labels_inside(svg)


def test_a_long_chain_wraps_into_rows_instead_of_crowding(acme: KeyedPlatform) -> None:
    # 20 sellers linked one to the next: 39 nodes, too many for one row 70 px apart.
    sellers = [
        seller(f"long-{n:02}", ("email", f"link{n}@example.com"), ("email", f"link{n + 1}@example.com"))
        for n in range(20)
    ]
    assert submit(acme.client(), *sellers).status_code == 201
    svg = render(explain(ActorCluster.objects.live().get(), EVERYTHING)).svg
    nodes = nodes_of(svg)
    assert len(nodes) == 39
    rows = {node.y for node in nodes if node.kind == "seller"}
    assert len(rows) > 1
    xs = [node.x for node in nodes]
    ys = [node.y for node in nodes]
    assert max(xs) - min(xs) >= 0.7 * WIDTH and max(ys) - min(ys) >= 0.5 * HEIGHT
    assert_nodes_apart(nodes)
    assert_labels_inside(svg)


def test_a_cluster_that_is_not_a_chain_fills_the_box_both_ways(acme: KeyedPlatform) -> None:
    # One seller sharing a different indicator with each of three others: a star, not a chain.
    hub = seller("hub", ("email", "hub@example.com"), ("phone", "+4930222222"), ("tax_id", "DE987654321"))
    leaves = [
        seller("leaf-email", ("email", "hub@example.com")),
        seller("leaf-phone", ("phone", "+4930222222")),
        seller("leaf-tax", ("tax_id", "DE987654321")),
    ]
    assert submit(acme.client(), hub, *leaves).status_code == 201
    svg = render(explain(ActorCluster.objects.live().get(), EVERYTHING)).svg
    nodes = nodes_of(svg)
    assert len(nodes) == 7
    xs = [node.x for node in nodes]
    ys = [node.y for node in nodes]
    assert max(xs) - min(xs) >= 0.7 * WIDTH and max(ys) - min(ys) >= 0.6 * HEIGHT
    # Not collinear: the best straight line through the centres leaves a large residual.
    assert residual_from_best_line(xs, ys) > 0.1 * HEIGHT
    assert_nodes_apart(nodes)
    assert_labels_inside(svg)


def residual_from_best_line(xs: list[float], ys: list[float]) -> float:
    """The root-mean-square distance of the points from their total-least-squares line."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    # The smaller eigenvalue of the covariance matrix is the variance across the best line.
    smallest = (sxx + syy - math.sqrt((sxx - syy) ** 2 + 4 * sxy**2)) / 2
    return math.sqrt(max(smallest, 0.0) / len(xs))
