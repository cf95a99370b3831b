"""The cluster timeline: the pure layout, and what the cluster page draws for each kind of viewer."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from accounts.scoping import scope_of
from exchange.models import Seller
from graph.explain import explain
from graph.timeline import LABEL_WIDTH, WIDTH, Lane, Mark, Span, lay_out
from tests.admin_world import AdminWorld, build, logged_in
from tests.graph.test_admin import change_url, page, ref_url, work

MARCH_17 = datetime(2025, 3, 17, 9, 30, tzinfo=UTC)
MAY_9 = datetime(2025, 5, 9, 14, 0, tzinfo=UTC)
JUNE_2 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    world = build(acme, bazaar)
    Seller.objects.filter(seller_ref="baz-1").update(first_reported_at=MARCH_17, reported_at=MAY_9)
    return world


def timeline_of(html: str) -> str:
    section = re.search(r'<div class="cluster-section" id="timeline">.*?</svg>', html, re.S)
    assert section is not None, "no timeline section"
    return section.group(0)


# --- the pure layout ----------------------------------------------------------------------------------------


def test_layout_places_spans_and_marks_in_time_order_within_the_svg():
    lanes = [
        Lane("late", spans=[Span(MAY_9, JUNE_2, "late")]),
        Lane("early", spans=[Span(MARCH_17, MAY_9, "early")], marks=[Mark(JUNE_2, "retracted", "retracted")]),
        Lane("events", marks=[Mark(MAY_9, "grew", "event"), Mark(MARCH_17, "created", "event")]),
    ]
    layout = lay_out(lanes)
    late, early, events = layout.lanes
    assert early.spans[0].x == LABEL_WIDTH  # the earliest moment starts the axis
    assert late.spans[0].x + late.spans[0].width == pytest.approx(WIDTH - 10)  # the latest ends it
    assert early.spans[0].x < late.spans[0].x < early.marks[0].x
    assert [m.title for m in events.marks] == ["created", "grew"]
    assert events.marks[0].x < events.marks[1].x
    assert late.y < early.y < events.y < layout.axis_y < layout.height
    every_x = [s.x for lane in layout.lanes for s in lane.spans] + [
        m.x for lane in layout.lanes for m in lane.marks
    ]
    assert all(LABEL_WIDTH <= x <= WIDTH for x in every_x)
    # Three months or less: day ticks, in order.
    assert [t.label for t in layout.ticks][:2] == ["2025-03-18", "2025-03-26"]
    assert [t.x for t in layout.ticks] == sorted(t.x for t in layout.ticks)


def test_layout_of_a_single_instant_puts_it_in_the_middle():
    layout = lay_out(
        [Lane("only", spans=[Span(MAY_9, MAY_9, "only")], marks=[Mark(MAY_9, "created", "event")])]
    )
    (lane,) = layout.lanes
    middle = (LABEL_WIDTH + WIDTH - 10) / 2
    assert lane.marks[0].x == pytest.approx(middle)
    assert lane.spans[0].x == pytest.approx(middle) and lane.spans[0].width > 0
    assert [t.label for t in layout.ticks] == ["2025-05-09", "2025-05-10"]


def test_layout_over_a_long_span_ticks_by_month():
    layout = lay_out([Lane("long", spans=[Span(MARCH_17, datetime(2025, 12, 1, tzinfo=UTC), "long")])])
    assert [t.label for t in layout.ticks] == [f"2025-{m:02d}" for m in range(4, 13)]


# --- the cluster page ---------------------------------------------------------------------------------------


def test_exchange_analyst_sees_every_members_bar_the_events_and_a_status_change(world, alice):
    client = logged_in(alice)
    assert (
        work(client, world.ring, status="investigating", assignee=str(alice.pk), notes="Look.").status_code
        == 302
    )
    svg = timeline_of(page(client, change_url(world.ring)))
    for ref in ("acme-1", "acme-2", "baz-1", "baz-2"):
        assert re.search(rf'<rect class="timeline-bar"[^>]*><title>{ref} \(', svg), ref
    assert "baz-1 (Bazaar North): first reported 2025-03-17, latest report 2025-05-09" in svg
    assert re.search(r'<circle class="mark-event"[^>]*><title>[^<]* created:', svg)
    assert re.search(r'<circle class="mark-event"[^>]*><title>[^<]* status changed new → investigating', svg)
    assert re.search(r'<circle class="mark-action"[^>]*><title>[^<]* alice: status new → investigating', svg)
    assert re.search(r'<circle class="mark-action"[^>]*><title>[^<]* alice: changed assignee, notes', svg)
    assert "2025-03" in svg  # the axis reaches back to baz-1's first report


def test_partner_analyst_sees_other_platforms_members_by_alias_and_month_and_no_analyst_actions(
    world, alice, bob
):
    work(logged_in(alice), world.ring, status="investigating", assignee=str(alice.pk), notes="Look.")
    html = page(logged_in(bob), ref_url(world.ring))
    svg = timeline_of(html)
    aliases = [m.alias for m in explain(world.ring, scope_of(bob)).members if not m.visible]
    assert len(aliases) == 2 and all("account" in alias for alias in aliases)
    for alias in aliases:
        assert re.search(rf'<rect class="timeline-bar"[^>]*><title>{re.escape(alias)} \(', svg), alias
    assert "first reported 2025-03, latest report 2025-05" in svg
    assert "2025-03-17" not in html and "2025-05-09" not in html
    assert "baz-1" not in html and "baz-2" not in html
    assert "acme-1 (Acme Market): first reported" in svg  # their own members keep the day
    assert 'class="mark-action"' not in svg and "Analyst actions" not in svg
    assert "alice" not in svg
    assert re.search(r'<circle class="mark-event"[^>]*><title>[^<]* status changed new → investigating', svg)
    # Nor does the History table name the operator's analyst (the assignee is hidden from partners too).
    assert "alice" not in html and "an exchange analyst" in html
    assert "alice" in page(logged_in(alice), change_url(world.ring))


def test_a_retraction_is_marked_on_the_members_lane(world, alice):
    Seller.objects.filter(seller_ref="acme-2").update(retracted_at=JUNE_2)
    svg = timeline_of(page(logged_in(alice), change_url(world.ring)))
    assert re.search(r'<circle class="mark-retracted"[^>]*><title>acme-2: retracted 2025-06-02</title>', svg)
