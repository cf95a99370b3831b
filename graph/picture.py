"""A server-side SVG picture of one cluster's seller-indicator graph (no JavaScript, no CDN).

Sellers are circles coloured by platform; the indicators that link them are diamonds (strong kinds) or squares
(weak kinds) coloured by kind; bridges (an indicator whose removal splits the cluster) get a red ring;
suppressed indicators that members share are drawn hollow and dashed. A chain of sellers is laid out as a
row (wrapped into a serpentine when long); other shapes get NetworkX's Kamada-Kawai layout (spring layout with
a fixed seed for large clusters), stretched to the box. Both are deterministic, so the same cluster always
looks the same.

Large clusters stay readable: at most `MAX_SELLERS` sellers and `MAX_INDICATORS` indicators are drawn
(bridges and the best-connected first); the remaining sellers of each platform collapse into one "+N" node,
and the caption says what was left out. Everything shown comes from an `Explanation`, which has already
reduced other platforms' members to aliases for a partner analyst.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import networkx as nx
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from graph.explain import Explanation, IndicatorRow, Member
from graph.palette import BRIDGE, KIND_COLOURS, PLATFORM_COLOURS, UNKNOWN_KIND_COLOUR

MAX_SELLERS = 60
MAX_INDICATORS = 60
WIDTH, HEIGHT, MARGIN, LEGEND = 960, 560, 36, 150
LABEL_SELLERS = 30  # draw seller names under the nodes up to this many sellers (tooltips always)
LABEL_INDICATORS = 30  # and kind names under indicators up to this many
SIDE = 2 * MARGIN  # wider side margins: labels are centred under their node
ROW_LABEL = 12  # room under the lowest nodes for their labels
CHAIN_GAP = 70  # the closest two nodes of a chain are drawn before it wraps into another row
CHAIN_RISE = 44  # how far every other node of a chain is raised above its row
KAMADA_KAWAI_NODES = 80  # beyond this the force layout is too slow for a page; spring layout instead

SeNode = tuple[str, int | str]


@dataclass(frozen=True, slots=True)
class Picture:
    svg: SafeString
    sellers_drawn: int
    sellers_total: int
    indicators_drawn: int
    indicators_total: int

    @property
    def collapsed(self) -> bool:
        return self.sellers_drawn < self.sellers_total or self.indicators_drawn < self.indicators_total

    @property
    def caption(self) -> str:
        if not self.collapsed:
            return f"All {self.sellers_total} linked sellers and {self.indicators_total} shared indicators."
        parts = []
        if self.sellers_drawn < self.sellers_total:
            parts.append(
                f"{self.sellers_drawn} of {self.sellers_total} sellers drawn; the others are collapsed into "
                "one “+N” node per platform"
            )
        if self.indicators_drawn < self.indicators_total:
            parts.append(
                f"{self.indicators_drawn} of {self.indicators_total} indicators drawn (bridges and the "
                "best-connected first)"
            )
        return "Large cluster: " + "; ".join(parts) + ". The tables below list everything."


@dataclass(frozen=True)
class _Selection:
    """What the picture draws: the most telling indicators and sellers, the rest collapsed per platform."""

    rows: list[IndicatorRow]  # every indicator worth drawing, best first
    drawn_rows: list[IndicatorRow]
    members: dict[int, Member]  # linkable members by seller id
    held: dict[str, set[int]]  # indicator key -> the sellers holding it
    kept: set[int]  # sellers drawn one by one
    collapsed_by_platform: dict[int, int]  # platform id -> sellers drawn as one "+n" node


def render(explanation: Explanation) -> Picture:
    chosen = _select(explanation)
    graph = _graph(chosen)
    positions = _layout(graph)
    colour_of_platform = platform_colours(explanation)
    label_of_platform = {group.platform_id: group.label for group in explanation.groups}
    by_key = {row.key: row for row in chosen.drawn_rows}

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH + LEGEND} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="cluster-picture-title" class="cluster-picture">',
        f'<title id="cluster-picture-title">Seller-indicator graph of cluster {explanation.cluster.pk}</title>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" rx="6" class="canvas"/>',
    ]
    for u, v in sorted(graph.edges(), key=_edge_key):
        out.append(_edge(positions[u], positions[v], by_key[str(v[1] if v[0] == "i" else u[1])]))
    for node in sorted(graph.nodes(), key=_node_key):
        x, y = positions[node]
        kind, ident = node
        if kind == "i":
            out.append(
                _indicator(by_key[str(ident)], x, y, labelled=len(chosen.drawn_rows) <= LABEL_INDICATORS)
            )
        elif kind == "s":
            member = chosen.members[int(ident)]
            title = f"{member.alias} ({label_of_platform[member.platform_id]})"
            label = _short(member.short) if len(chosen.kept) <= LABEL_SELLERS else None
            out.append(_seller(x, y, colour_of_platform[member.platform_id], title, label))
        else:
            platform_id = int(ident)
            count = chosen.collapsed_by_platform[platform_id]
            title = f"{count} more sellers of {label_of_platform[platform_id]} (not drawn one by one)"
            out.append(_collapsed(x, y, colour_of_platform[platform_id], title, count))
    out.extend(_legend(explanation, colour_of_platform, chosen.drawn_rows))
    out.append("</svg>")
    return Picture(
        svg=mark_safe("".join(out)),  # noqa: S308 - every interpolated text is escaped where it is written
        sellers_drawn=len(chosen.kept),
        sellers_total=len(chosen.members),
        indicators_drawn=len(chosen.drawn_rows),
        indicators_total=len(chosen.rows),
    )


def platform_colours(explanation: Explanation) -> dict[int, str]:
    """Each platform's colour, in the order the page lists the platforms (the viewer's own first)."""
    return {
        group.platform_id: PLATFORM_COLOURS[n % len(PLATFORM_COLOURS)]
        for n, group in enumerate(explanation.groups)
    }


def _select(explanation: Explanation) -> _Selection:
    """Bridges and holding indicators first (most links, most sellers); sellers on bridges and with the most
    drawn indicators first; beyond the caps, sellers are counted per platform."""
    rows = explanation.drawn
    members = {m.seller_id: m for m in explanation.members if m.linkable}
    held: dict[str, set[int]] = defaultdict(set)
    for sighting in explanation.sightings:
        held[str(sighting.token)].add(sighting.seller_id)

    rows.sort(key=lambda r: (not r.bridge, not r.holds, -r.links, -r.sellers, int(r.key)))
    drawn_rows = rows[:MAX_INDICATORS]
    degree: dict[int, int] = defaultdict(int)
    on_bridge: set[int] = set()
    for row in drawn_rows:
        for seller_id in held[row.key]:
            degree[seller_id] += 1
            if row.bridge:
                on_bridge.add(seller_id)
    ranked = sorted(members, key=lambda s: (s not in on_bridge, -degree[s], s))
    collapsed_by_platform: dict[int, int] = defaultdict(int)
    for seller_id in ranked[MAX_SELLERS:]:
        collapsed_by_platform[members[seller_id].platform_id] += 1
    return _Selection(rows, drawn_rows, members, held, set(ranked[:MAX_SELLERS]), collapsed_by_platform)


def _graph(chosen: _Selection) -> nx.Graph:
    """Sellers ("s"), collapsed platforms ("m") and indicators ("i"), with an edge per holding."""
    graph = nx.Graph()
    for seller_id in sorted(chosen.kept):
        graph.add_node(("s", seller_id))
    for platform_id in sorted(chosen.collapsed_by_platform):
        graph.add_node(("m", platform_id))
    for row in chosen.drawn_rows:
        graph.add_node(("i", row.key))
        for seller_id in sorted(chosen.held[row.key]):
            if seller_id in chosen.kept:
                graph.add_edge(("s", seller_id), ("i", row.key))
            elif seller_id in chosen.members:
                graph.add_edge(("m", chosen.members[seller_id].platform_id), ("i", row.key))
    return graph


def _edge(start: tuple[float, float], end: tuple[float, float], indicator: IndicatorRow) -> str:
    (x1, y1), (x2, y2) = start, end
    dash = ' stroke-dasharray="4 3"' if indicator.suppressed else ""
    width = 2.2 if indicator.bridge else 1.2
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="edge" '
        f'stroke-width="{width}"{dash}/>'
    )


def _seller(x: float, y: float, colour: str, title: str, label: str | None) -> str:
    text = (
        f'<text x="{label_x(x, label, 11):.1f}" y="{y + 21:.1f}" text-anchor="middle" class="label">'
        f"{escape(label)}</text>"
        if label is not None
        else ""
    )
    return (
        f'<g class="seller"><title>{escape(title)}</title>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{colour}" stroke="#fff" stroke-width="1.5"/>'
        f"{text}</g>"
    )


def _collapsed(x: float, y: float, colour: str, title: str, count: int) -> str:
    return (
        f'<g class="collapsed"><title>{escape(title)}</title>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="16" fill="{colour}" fill-opacity="0.35" '
        f'stroke="{colour}" stroke-width="2" stroke-dasharray="3 2"/>'
        f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" class="label strong">+{count}</text></g>'
    )


def _layout(graph: nx.Graph) -> dict[SeNode, tuple[float, float]]:
    """Node centres inside the drawing area, chosen by the graph's shape so the picture uses the whole box.

    A chain (the commonest small ring: seller - indicator - seller - ...) reads best as a row, wrapped into a
    serpentine when it is long; anything else gets a force layout whose axes are then stretched to the box.
    Both are deterministic, so the same cluster always looks the same.
    """
    if graph.number_of_nodes() == 0:
        return {}
    if graph.number_of_nodes() == 1:
        return {next(iter(graph.nodes())): (WIDTH / 2, HEIGHT / 2)}
    path = _as_path(graph)
    if path is not None:
        placed = _serpentine(path)
        if placed is not None:
            return placed
    if nx.is_connected(graph) and graph.number_of_nodes() <= KAMADA_KAWAI_NODES:
        raw = nx.kamada_kawai_layout(graph)
    else:
        raw = nx.spring_layout(graph, seed=7, iterations=150)
    return _fill_box({node: (float(p[0]), float(p[1])) for node, p in raw.items()})


def _as_path(graph: nx.Graph) -> list[SeNode] | None:
    """The nodes in chain order if the graph is one simple path, else None."""
    if not nx.is_connected(graph) or max(d for _, d in graph.degree()) > 2 or not nx.is_tree(graph):
        return None
    # Start from an end that is a seller where there is one, so sellers sit on the row and indicators between.
    start = min((n for n, d in graph.degree() if d == 1), key=lambda n: (n[0] != "s", _node_key(n)))
    return [start, *(v for _, v in nx.dfs_edges(graph, start))]


def _serpentine(path: list[SeNode]) -> dict[SeNode, tuple[float, float]] | None:
    """A chain along rows, left to right then right to left; every other node is raised half a row above the
    line so the kind labels of indicators sit between the sellers instead of on their names. None if the chain
    is too long to fit the box this way."""
    per_row = max(2, int((WIDTH - 2 * SIDE) // CHAIN_GAP) + 1)
    rows = -(-len(path) // per_row)
    row_height = (HEIGHT - 2 * MARGIN - ROW_LABEL) / rows
    if row_height < 2 * CHAIN_RISE:
        return None
    in_row = min(per_row, len(path))
    step = (WIDTH - 2 * SIDE) / (in_row - 1)
    # Each row in the middle of its band, so a single chain runs across the middle of the box, not its top.
    top = MARGIN + (CHAIN_RISE + row_height) / 2
    placed: dict[SeNode, tuple[float, float]] = {}
    for n, node in enumerate(path):
        row, column = divmod(n, per_row)
        if row % 2:
            column = in_row - 1 - column
        y = top + row * row_height - (CHAIN_RISE if n % 2 else 0)
        placed[node] = (SIDE + column * step, y)
    return placed


def _fill_box(raw: dict[SeNode, tuple[float, float]]) -> dict[SeNode, tuple[float, float]]:
    """Stretch each axis on its own to the drawing area, leaving room at the sides and bottom for labels."""
    xs = [p[0] for p in raw.values()]
    ys = [p[1] for p in raw.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    return {
        node: (
            SIDE + (x - min(xs)) / span_x * (WIDTH - 2 * SIDE),
            MARGIN + (y - min(ys)) / span_y * (HEIGHT - 2 * MARGIN - ROW_LABEL),
        )
        for node, (x, y) in raw.items()
    }


def label_x(x: float, text: str, size: float) -> float:
    """Where a centred label goes so that it stays inside the drawing area, however near the edge its node is."""
    half = label_width(text, size) / 2
    return min(max(x, MARGIN + half), WIDTH - MARGIN - half)


def label_width(text: str, size: float) -> float:
    # A generous average glyph width for sans-serif text; the picture has no font metrics to ask.
    return len(text) * size * 0.62


def _indicator(row: IndicatorRow, x: float, y: float, *, labelled: bool) -> str:
    colour = KIND_COLOURS.get(row.kind, UNKNOWN_KIND_COLOUR)
    size = 8
    if row.strength == "strong":
        points = (
            f"{x:.1f},{y - size:.1f} {x + size:.1f},{y:.1f} {x:.1f},{y + size:.1f} {x - size:.1f},{y:.1f}"
        )
        shape = "polygon"
        geometry = f'points="{points}"'
    else:
        shape = "rect"
        geometry = f'x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12"'
    if row.suppressed:
        # Light kind colours vanish as a dashed outline alone: a pale fill inside a dark dashed one.
        paint = f'fill="{colour}" fill-opacity="0.45" stroke="#555" stroke-width="1.5" stroke-dasharray="2 2"'
    else:
        paint = f'fill="{colour}" stroke="#333" stroke-width="0.8"'
    title = (
        f"{row.kind.replace('_', ' ')}: {row.sellers} sellers on {row.platforms} platform(s) in this cluster"
    )
    if row.bridge:
        title += "; bridge: removing it splits the cluster"
    if row.suppressed:
        title += f"; suppressed ({row.suppressed})"
    ring = (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="13" fill="none" stroke="{BRIDGE}" stroke-width="2.5"/>'
        if row.bridge
        else ""
    )
    kind = row.kind.replace("_", " ")
    text = (
        f'<text x="{label_x(x, kind, 10):.1f}" y="{y + 25:.1f}" text-anchor="middle" class="label kind">'
        f"{escape(kind)}</text>"
        if labelled
        else ""
    )
    return f'<g class="indicator"><title>{escape(title)}</title>{ring}<{shape} {geometry} {paint}/>{text}</g>'


def _legend(
    explanation: Explanation, colour_of_platform: dict[int, str], rows: list[IndicatorRow]
) -> list[str]:
    x, y = WIDTH + 14, 22
    out = [f'<text x="{x}" y="{y}" class="label strong">Sellers</text>']
    for group in explanation.groups:
        y += 18
        out.append(
            f'<circle cx="{x + 6}" cy="{y - 4}" r="6" fill="{colour_of_platform[group.platform_id]}"/>'
            f'<text x="{x + 18}" y="{y}" class="label">{escape(_short(group.label, 16))} ({group.count})</text>'
        )
    y += 28
    out.append(f'<text x="{x}" y="{y}" class="label strong">Indicators</text>')
    for kind in sorted({r.kind for r in rows}):
        y += 18
        out.append(
            f'<rect x="{x}" y="{y - 10}" width="11" height="11" fill="{KIND_COLOURS.get(kind, UNKNOWN_KIND_COLOUR)}" '
            'stroke="#333" stroke-width="0.8"/>'
            f'<text x="{x + 18}" y="{y}" class="label">{escape(kind.replace("_", " "))}</text>'
        )
    y += 28
    out.append(
        f'<polygon points="{x + 6},{y - 12} {x + 12},{y - 6} {x + 6},{y} {x},{y - 6}" fill="#888"/>'
        f'<text x="{x + 18}" y="{y - 2}" class="label">strong</text>'
    )
    y += 18
    out.append(
        f'<rect x="{x}" y="{y - 11}" width="11" height="11" fill="#888"/>'
        f'<text x="{x + 18}" y="{y - 2}" class="label">weak</text>'
    )
    y += 20
    out.append(
        f'<circle cx="{x + 6}" cy="{y - 6}" r="7" fill="none" stroke="{BRIDGE}" stroke-width="2.5"/>'
        f'<text x="{x + 18}" y="{y - 2}" class="label">bridge</text>'
    )
    y += 18
    out.append(
        f'<rect x="{x}" y="{y - 11}" width="11" height="11" fill="none" stroke="#888" stroke-dasharray="2 2" '
        f'stroke-width="2"/><text x="{x + 18}" y="{y - 2}" class="label">suppressed</text>'
    )
    return out


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_key(node: SeNode) -> tuple[int, str]:
    # Indicators first, so sellers (and their labels) are drawn on top.
    return ({"i": 0, "m": 1, "s": 2}[node[0]], f"{node[1]:>20}")


def _edge_key(edge: tuple[SeNode, SeNode]) -> tuple[tuple[int, str], tuple[int, str]]:
    return (_node_key(edge[0]), _node_key(edge[1]))
