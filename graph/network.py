"""One cluster's seller-indicator graph as data for the cluster page's interactive graph.

The page embeds `network(...)` with Django's `json_script` (a `<script type="application/json">` block: data,
never executed, so the CSP's `script-src 'self'` holds) and graph/static/graph/cluster-graph.js draws it with
cytoscape.js. It shows what `graph.picture` draws as SVG (which stays the picture without JavaScript), from
the same `Explanation`, so it can say no more than the page does: for a partner analyst other
platforms' sellers are aliases ("Platform B #2") with no link, indicators carry no token and no id (node ids
are positions on the page), and dates are as coarse as the tables show them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count
from django.template.defaultfilters import date as format_date
from django.urls import reverse

from exchange.models import Sighting
from graph.explain import ChainStep, Explanation, IndicatorRow, Member
from graph.models import ActorCluster
from graph.palette import KIND_COLOURS, UNKNOWN_KIND_COLOUR
from graph.picture import platform_colours

LABEL_LIMIT = 18  # longer seller references are cut with "…" on the canvas (the tooltip has them whole)
# Neighbouring clusters drawn per suppressed indicator: a hub the rule cut may touch thousands; the rest are
# counted in the indicator's tooltip.
MAX_NEIGHBOURS = 12


def seller_node(member: Member) -> str:
    return f"s{member.position}"


def network(
    explanation: Explanation,
    pair: tuple[Member, Member] | None,
    chain: list[ChainStep],
    *,
    chosen: bool = False,
) -> dict[str, Any]:
    """Nodes, edges and the evidence chain between the page's pair, as plain JSON-ready data; `chosen`: the
    viewer picked the pair (the graph then fades everything off the chain), rather than the page's default."""
    everything = explanation.scope.everything
    colours = platform_colours(explanation)
    platform_label = {group.platform_id: group.label for group in explanation.groups}
    rows = explanation.drawn
    indicator_node = {row.key: f"i{n}" for n, row in enumerate(rows, start=1)}
    members = [m for m in explanation.members if m.linkable]  # the others hold no links to draw
    seller_nodes = {m.seller_id: seller_node(m) for m in members}

    nodes: list[dict[str, Any]] = [_seller(m, platform_label, colours) for m in members]
    nodes += [_indicator(row, indicator_node[row.key], everything) for row in rows]
    edges = [
        {
            "id": f"{seller_nodes[s.seller_id]}-{indicator_node[str(s.token)]}",
            "source": seller_nodes[s.seller_id],
            "target": indicator_node[str(s.token)],
            "suppressed": bool(explanation.rows[str(s.token)].suppressed),
        }
        for s in explanation.sightings
        if str(s.token) in indicator_node and s.seller_id in seller_nodes
    ]
    return {
        "nodes": nodes,
        "edges": edges,
        "platforms": [
            {"label": group.label, "colour": colours[group.platform_id]} for group in explanation.groups
        ],
        "kinds": [
            {
                "kind": kind,
                "label": kind.replace("_", " "),
                "colour": KIND_COLOURS.get(kind, UNKNOWN_KIND_COLOUR),
            }
            for kind in sorted({row.kind for row in rows})
        ],
        "pair": [seller_node(m) for m in pair] if pair is not None and chain else [],
        "chain": _chain(chain, indicator_node),
        "focus": chosen and bool(chain),
        # What the hub rule cut, for exchange analysts only: partners never learn of other clusters this way.
        "neighbours": _neighbours(explanation, indicator_node, seller_nodes) if everything else None,
    }


def _seller(member: Member, platform_label: dict[int, str], colours: dict[int, str]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": seller_node(member),
        "type": "seller",
        "position": member.position,  # the evidence-chain form's option value for this member
        "label": member.short if len(member.short) <= LABEL_LIMIT else member.short[: LABEL_LIMIT - 1] + "…",
        "alias": member.alias,
        "platform": platform_label[member.platform_id],
        "colour": colours[member.platform_id],
        "url": None,
    }
    if member.seller is not None:  # visible to this viewer: the page links it too
        node["url"] = reverse("admin:exchange_seller_change", args=[member.seller_id])
        node["firstReported"] = format_date(member.seller.first_reported_at, "Y-m-d")
        node["status"] = member.seller.status
    return node


def _indicator(row: IndicatorRow, node_id: str, everything: bool) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "type": "indicator",
        "kind": row.kind,
        "label": row.kind.replace("_", " "),
        "strength": row.strength,
        "colour": KIND_COLOURS.get(row.kind, UNKNOWN_KIND_COLOUR),
        "sellers": row.sellers,
        "platforms": row.platforms,
        "holders": row.holders,  # None for a partner when only other platforms hold it (explain._for_partner)
        "firstSeen": format_date(row.first_seen, row.first_seen_format) if row.first_seen else "",
        # For the time slider: a sortable date, no finer than `firstSeen` (the 1st when only the month shows).
        "seen": row.first_seen.date().isoformat() if row.first_seen else "",
        "links": row.links,
        "bridge": row.bridge,
        "suppressed": row.suppressed,
    }
    if everything and row.token is not None and row.indicator_id is not None:
        node["token"] = row.token[:12]
        node["url"] = reverse("admin:exchange_indicator_change", args=[row.indicator_id])
    return node


def _chain(chain: list[ChainStep], indicator_node: dict[str, str]) -> dict[str, list[str]]:
    """The element ids of the server's evidence chain (`Explanation.chain`): the graph highlights exactly the
    steps the page lists, so the link rule lives in one place."""
    nodes: list[str] = []
    edges: list[str] = []
    for step in chain:
        ends = [seller_node(step.a), seller_node(step.b)]
        nodes += [n for n in ends if n not in nodes]
        for row in step.indicators:
            target = indicator_node[row.key]
            nodes += [target] if target not in nodes else []
            edges += [f"{end}-{target}" for end in ends]
    return {"nodes": nodes, "edges": edges}


def _neighbours(
    explanation: Explanation, indicator_node: dict[str, str], seller_nodes: dict[int, str]
) -> dict[str, Any]:
    """The other live clusters that share a suppressed indicator with this one's members, for the graph's
    "expand" switch: suppressed indicators one member alone holds here join the picture as extra nodes, each
    neighbouring cluster is one node, and the edges to it are dashed (they do not link)."""
    rows = [row for row in explanation.indicators if row.suppressed]
    extra = [row for row in rows if row.key not in indicator_node]
    node_of = {
        **indicator_node,
        **{row.key: f"i{n}" for n, row in enumerate(extra, start=len(indicator_node) + 1)},
    }
    shared = (
        Sighting.objects.filter(
            indicator_id__in=[int(row.key) for row in rows],
            seller__cluster_membership__cluster__dissolved_at__isnull=True,
        )
        .exclude(seller__cluster_membership__cluster_id=explanation.cluster.pk)
        .values_list("indicator_id", "seller__cluster_membership__cluster_id")
        .annotate(n=Count("id"))
        .order_by("indicator_id", "-n", "seller__cluster_membership__cluster_id")
    )
    per_indicator: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for indicator_id, cluster_id, n in shared:
        per_indicator[str(indicator_id)].append((cluster_id, n))
    clusters: dict[int, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    more: dict[str, int] = {}
    for key, found in per_indicator.items():
        for cluster_id, n in found[:MAX_NEIGHBOURS]:
            clusters.setdefault(
                cluster_id,
                {
                    "id": f"c{cluster_id}",
                    "type": "cluster",
                    "label": f"cluster #{cluster_id}",
                    "url": reverse("admin:graph_actorcluster_change", args=[cluster_id]),
                },
            )
            edges.append(
                {
                    "id": f"{node_of[key]}-c{cluster_id}",
                    "source": node_of[key],
                    "target": f"c{cluster_id}",
                    "sellers": n,
                    "suppressed": True,
                }
            )
        if len(found) > MAX_NEIGHBOURS:
            more[node_of[key]] = len(found) - MAX_NEIGHBOURS
    sizes = dict(ActorCluster.objects.filter(pk__in=clusters).values_list("pk", "size"))
    for cluster_id, node in clusters.items():
        node["size"] = sizes.get(cluster_id, 0)
    shown_extra = {row.key for row in extra if row.key in per_indicator}
    return {
        "nodes": [_indicator(row, node_of[row.key], True) for row in extra if row.key in shown_extra]
        + list(clusters.values()),
        "edges": edges
        + [
            {
                "id": f"{seller_nodes[s.seller_id]}-{node_of[str(s.token)]}",
                "source": seller_nodes[s.seller_id],
                "target": node_of[str(s.token)],
                "suppressed": True,
            }
            for s in explanation.sightings
            if str(s.token) in shown_extra and s.seller_id in seller_nodes
        ],
        "more": more,
    }
