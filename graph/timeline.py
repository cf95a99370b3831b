"""The cluster timeline: members' reports, the cluster's events and analysts' actions on one time axis.

`lay_out` is pure (plain lanes in, positions in an SVG out) so it can be tested without a database;
`timeline_lanes` reads the lanes for one cluster as the viewer may see them (a referral package lists them),
and `cluster_timeline` lays them out for the cluster page. Members come from
`graph.explain.explain` (aliases and month-only dates for other platforms' members are decided there, once);
analyst actions come from the audit log and are for exchange analysts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from accounts.models import AuditEntry
from graph.explain import Explanation
from graph.picture import platform_colours

WIDTH = 900
LABEL_WIDTH = 200  # the lane labels, left of the axis
LANE_HEIGHT = 20
AXIS_HEIGHT = 24
PADDING = 10
# What the timeline shows of the audit log about a cluster: changes, not views.
ANALYST_ACTIONS = ("cluster_status_changed", "cluster_updated")


@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime
    title: str


@dataclass(frozen=True, slots=True)
class Mark:
    at: datetime
    title: str
    kind: str  # a CSS class suffix: "retracted", "event", "action"


@dataclass(slots=True)
class Lane:
    label: str
    colour: str = "#7f8c8d"
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    # How precisely the viewer may read this lane's moments (strftime, UTC): the month only for another
    # platform's member seen by a partner analyst, as `Member.report_format` says.
    date_format: str = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class PlacedSpan:
    x: float
    width: float
    title: str


@dataclass(frozen=True, slots=True)
class PlacedMark:
    x: float
    title: str
    kind: str


@dataclass(frozen=True, slots=True)
class PlacedLane:
    label: str
    colour: str
    y: float  # the lane's centre line
    spans: list[PlacedSpan]
    marks: list[PlacedMark]


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    axis_y: float
    left: int
    lanes: list[PlacedLane]
    ticks: list[Tick]


def lay_out(lanes: list[Lane], width: int = WIDTH) -> Layout:
    """Place every span and mark of `lanes` on one horizontal axis from the earliest to the latest moment.

    A cluster whose moments all fall on one instant gets a day either side, so nothing divides by zero and
    the instant sits in the middle."""
    moments = [m for lane in lanes for s in lane.spans for m in (s.start, s.end)]
    moments += [mark.at for lane in lanes for mark in lane.marks]
    start = min(moments, default=datetime(1970, 1, 1, tzinfo=UTC))
    end = max(moments, default=start)
    if end <= start:
        start, end = start - timedelta(days=1), end + timedelta(days=1)
    left, right = LABEL_WIDTH, width - PADDING
    span_seconds = (end - start).total_seconds()

    def x_of(moment: datetime) -> float:
        return round(left + (moment - start).total_seconds() / span_seconds * (right - left), 1)

    placed = []
    for index, lane in enumerate(lanes):
        spans = [
            PlacedSpan(x_of(s.start), max(round(x_of(s.end) - x_of(s.start), 1), 2.0), s.title)
            for s in sorted(lane.spans, key=lambda s: s.start)
        ]
        marks = [PlacedMark(x_of(m.at), m.title, m.kind) for m in sorted(lane.marks, key=lambda m: m.at)]
        placed.append(
            PlacedLane(lane.label, lane.colour, PADDING + (index + 0.5) * LANE_HEIGHT, spans, marks)
        )
    axis_y = PADDING + len(lanes) * LANE_HEIGHT + 4
    ticks = [Tick(x_of(moment), label) for moment, label in _ticks(start, end)]
    return Layout(width, int(axis_y + AXIS_HEIGHT), axis_y, left, placed, ticks)


def _ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Month ticks ("2025-03") over more than about three months, day ticks ("2025-03-14") otherwise; at
    most about ten of either."""
    if end - start > timedelta(days=92):
        months = (end.year - start.year) * 12 + end.month - start.month
        step = max(1, -(-months // 10))
        moment = datetime(start.year, start.month, 1, tzinfo=start.tzinfo)
        if moment < start:
            moment = _add_months(moment, 1)
        ticks = []
        while moment <= end:
            ticks.append((moment, f"{moment:%Y-%m}"))
            moment = _add_months(moment, step)
        return ticks
    days = (end - start).days
    every = timedelta(days=max(1, -(-days // 10)))
    moment = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo)
    if moment < start:
        moment += timedelta(days=1)
    ticks = []
    while moment <= end:
        ticks.append((moment, f"{moment:%Y-%m-%d}"))
        moment += every
    return ticks


def _add_months(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    return moment.replace(year=moment.year + year, month=month + 1)


def cluster_timeline(explanation: Explanation) -> Layout:
    """The cluster page's timeline for the viewer of `explanation` (`timeline_lanes`, laid out)."""
    return lay_out(timeline_lanes(explanation))


def timeline_lanes(explanation: Explanation) -> list[Lane]:
    """The timeline's lanes for the viewer of `explanation`: a lane per member (grouped and coloured by
    platform, in the page's own order and names), one for the cluster's events and, for exchange analysts,
    one for analysts' actions from the audit log."""
    cluster, scope = explanation.cluster, explanation.scope
    lanes: list[Lane] = []
    colours = platform_colours(explanation)  # the picture's and the graph's: one platform, one colour
    for group in explanation.groups:
        colour = colours[group.platform_id]
        for member in explanation.members:
            if member.platform_id != group.platform_id or member.first_reported_at is None:
                continue
            fmt = "%Y-%m" if member.report_format == "Y-m" else "%Y-%m-%d"
            last = member.reported_at or member.first_reported_at
            lane = Lane(
                member.alias,
                colour,
                [
                    Span(
                        member.first_reported_at,
                        last,
                        f"{member.alias} ({group.label}): first reported "
                        f"{member.first_reported_at:{fmt}}, latest report {last:{fmt}}",
                    )
                ],
                date_format=fmt,
            )
            if member.retracted_at is not None:
                lane.marks.append(
                    Mark(
                        member.retracted_at,
                        f"{member.alias}: retracted {member.retracted_at:{fmt}}",
                        "retracted",
                    )
                )
            lanes.append(lane)
    events = Lane("Cluster events")
    for event in cluster.events.order_by("created_at", "id")[:200]:
        change = f" {event.details['from']} → {event.details.get('to')}" if event.details.get("from") else ""
        by = f" by {event.actor}" if scope.everything else ""
        if scope.everything and event.details.get("approved_by"):  # four-eyes review: the second analyst
            by += f", approved by {event.details['approved_by']}"
        events.marks.append(
            Mark(
                event.created_at,
                f"{event.created_at:%Y-%m-%d %H:%M} {event.get_kind_display()}{change}: "
                f"{event.members_before} → {event.members_after} members{by}",
                "event",
            )
        )
    lanes.append(events)
    if scope.everything:
        actions = Lane("Analyst actions")
        for entry in AuditEntry.objects.filter(
            object_type="cluster", object_id=str(cluster.pk), action__in=ANALYST_ACTIONS
        ).order_by("created_at", "id")[:200]:
            actions.marks.append(Mark(entry.created_at, _describe(entry), "action"))
        lanes.append(actions)
    return lanes


def _describe(entry: AuditEntry) -> str:
    details = entry.details or {}
    if entry.action == "cluster_status_changed":
        what = f"status {details.get('from')} → {details.get('to')}"
        if details.get("approved_by"):
            what += f" (approved by {details['approved_by']})"
    else:
        what = "changed " + ", ".join(details.get("fields", []))
    return f"{entry.created_at:%Y-%m-%d %H:%M} {entry.actor}: {what}"
