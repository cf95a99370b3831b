"""The transparency report: its figures equal counts made independently on a built world, small counts show as
"<10" everywhere, no published number gives a hidden one away by subtraction, a partner analyst sees the
consortium's figures and their own platform's only, and the command and the admin page produce well-formed HTML
with SVG charts and a CSV that parses."""

from __future__ import annotations

import csv
import io
import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import AuditEntry
from exchange.models import Seller
from exchange.normalization import LINK_KINDS as KINDS
from graph.actions import do_update_cluster
from graph.models import ActorCluster
from graph.transparency import (
    CONSORTIUM,
    Cell,
    Column,
    Figure,
    Median,
    MedianTally,
    PeriodError,
    State,
    Tally,
    bar_chart,
    check_figures,
    column_chart,
    parse_period,
    publish,
    publish_median,
    suppress,
    write_csv,
)
from graph.transparency_data import FIGURES, build_report
from tests.admin_world import decided_by_two_analysts, logged_in
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform, make_analyst, make_platform
from tests.graph.test_reports_leak import PLATFORMS, build_world

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
REPORTED = NOW - timedelta(days=2)
URL = "/admin/graph/actorcluster/transparency/"

# ------------------------------------------------------------------------------------------------ periods


def test_a_period_is_a_year_a_quarter_or_a_month_in_utc() -> None:
    year = parse_period("2025", NOW)
    assert (year.start, year.end, year.as_of, year.complete) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        True,
    )
    assert len(year.months()) == 12
    quarter = parse_period("2025-q4", NOW)
    assert (quarter.label, quarter.start, quarter.end) == (
        "2025-Q4",
        datetime(2025, 10, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert quarter.months() == ["2025-10", "2025-11", "2025-12"]
    month = parse_period("2026-05", NOW)
    assert (month.start, month.end, month.as_of, month.complete) == (
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=UTC),
        NOW,
        False,
    )
    # A running year: only the months that have begun.
    assert parse_period("2026", NOW).months() == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]


@pytest.mark.parametrize(
    "text",
    ["26", "2026-13", "2026-Q5", "2026/07", "", "2026-7", "last year", "1999", "2027", "٢٠٢٦", "2026 Q1"],
)
def test_a_bad_period_is_refused_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(PeriodError, match=r"a year \(2026\), a quarter \(2026-Q3\) or a month \(2026-07\)"):
        parse_period(text, NOW)


# ------------------------------------------------------------------------------------------------ suppression


def test_counts_from_1_to_9_show_as_under_10_and_0_and_10_up_exactly() -> None:
    assert [suppress(n).text for n in (0, 1, 5, 9, 10, 11, 12345)] == [
        "0",
        "<10",
        "<10",
        "<10",
        "10",
        "11",
        "12345",
    ]
    assert suppress(12345).display == "12,345"
    assert [suppress(n).state for n in (0, 9, 10)] == [State.EXACT, State.SMALL, State.EXACT]
    with pytest.raises(ValueError, match="negative"):
        suppress(-1)


def test_a_median_is_shown_only_over_ten_cases_or_more() -> None:
    assert publish_median(Median(3.25, 9)).display == "<10 cases"
    assert publish_median(Median(3.25, 10)).display == "3.2 days"


PERIOD = parse_period("2026", NOW)
A, B, C = 1, 2, 3
PARTS = Figure("parts", "S", "Parts", "", chart="bars")
WHOLE = Figure("whole", "S", "Whole", "")
SUBSET = Figure("subset", "S", "Subset", "", part_of="whole")
PENDING_FIGURE = Figure("later", "S", "Later", "not collected yet")


def published(
    raw: dict[str, Any], columns: list[Column] | None = None, figures: list[Figure] | None = None
) -> Any:
    return publish(
        PERIOD, figures or [PARTS, WHOLE, SUBSET, PENDING_FIGURE], raw, columns or [CONSORTIUM], [A, B, C]
    )


def test_a_total_is_withheld_when_one_of_its_parts_is_suppressed() -> None:
    # 50 + 3 = 53: showing 53 beside 50 would give the 3 away; readers get "≥51" (50, plus at least 1).
    report = published({"parts": {"x": Tally(50, {A: 50}), "y": Tally(3, {A: 3})}})
    assert report.cell("parts", "y").text == "<10"
    assert report.cell("parts").text == ">=51"
    assert report.cell("parts").display == "≥51"


def test_a_hidden_total_takes_its_smallest_part_with_it() -> None:
    # Platform A alone holds 40 of the 45: the consortium's 45 minus A's 40 would be the others' 5, so 45 is
    # withheld; its parts 30 and 15 would add up to it again, so the smaller is withheld too.
    report = published({"parts": {"x": Tally(30, {A: 30}), "y": Tally(15, {A: 10, B: 5})}})
    assert report.cell("parts").state == State.WITHHELD
    assert [report.cell("parts", p).text for p in ("x", "y")] == ["30", ">=10"]


def test_a_whole_is_withheld_when_its_subset_is_a_small_count_below_it() -> None:
    # All clusters 25, cross-platform 20: 25 would tell that 5 are single-platform.
    report = published({"whole": Tally(25), "subset": Tally(20)})
    assert (report.cell("whole").text, report.cell("subset").text) == (">=20", "20")
    apart = published({"whole": Tally(35), "subset": Tally(20)})
    assert (apart.cell("whole").text, apart.cell("subset").text) == ("35", "20")


def test_a_consortium_count_is_withheld_when_one_platform_holds_all_but_a_few() -> None:
    # A knows its own 12: the consortium's 15 would tell A that the other platforms together hold 3.
    raw = {"whole": Tally(15, {A: 12, B: 3})}
    for columns in (
        [CONSORTIUM],
        [CONSORTIUM, Column(A, "Acme", "acme")],
        [CONSORTIUM, Column(B, "Baz", "b")],
    ):
        report = published(raw, columns)
        assert report.cell("whole").text == ">=10"  # the same for every viewer
    shown = published(raw, [CONSORTIUM, Column(A, "Acme", "acme"), Column(B, "Baz", "b")])
    assert (shown.cell("whole", None, A).text, shown.cell("whole", None, B).text) == ("12", "<10")


def test_figures_not_collected_yet_show_a_dash_not_a_zero() -> None:
    report = published({}, [CONSORTIUM, Column(A, "Acme", "acme")])
    assert [cell.display for cell in report.row("later").cells] == ["—", "—"]
    assert report.pending


@st.composite
def worlds(draw: Any) -> dict[str, Any]:
    """Raw numbers as the models give them: additive parts per platform, a subset below its whole."""
    parts: dict[str, Tally] = {}
    for part in ("x", "y", "z"):
        own = {p: draw(st.integers(0, 40)) for p in (A, B, C)}
        parts[part] = Tally(sum(own.values()), own)
    whole = {p: draw(st.integers(0, 40)) for p in (A, B, C)}
    subset = {p: draw(st.integers(0, whole[p])) for p in (A, B, C)}
    return {
        "parts": parts,
        "whole": Tally(sum(whole.values()), whole),
        "subset": Tally(sum(subset.values()), subset),
    }


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_no_hidden_count_can_be_derived_from_the_published_ones(raw: dict[str, Any]) -> None:
    columns = [CONSORTIUM, *(Column(p, f"P{p}", f"p{p}") for p in (A, B, C))]
    report = published(raw, columns)

    def true(key: str, part: str | None, platform: int | None) -> int:
        tally = raw[key][part] if part else raw[key]
        if part is None and isinstance(raw[key], dict):
            return sum(true(key, p, platform) for p in raw[key])
        return int(tally.consortium if platform is None else tally.platforms[platform])

    for column in columns:
        pid = column.platform_id
        cells = {
            (row.figure.key, row.part): report.cell(row.figure.key, row.part, pid) for row in report.rows
        }
        for (key, part), cell in cells.items():
            if cell.state == State.BLANK or cell.state == State.PENDING:
                continue
            value = true(key, part, pid)
            # Honest: exact means exact, "<10" means 1-9, "≥N" is at least 10 and never more than the truth.
            assert cell.state != State.EXACT or cell.value == value
            assert (cell.state == State.SMALL) == (0 < value < 10)
            assert cell.state != State.WITHHELD or 10 <= (cell.value or 0) <= value
        # a/b: a total shows exactly if and only if all its parts do (then they add up to it).
        parts_exact = all(cells[("parts", p)].state == State.EXACT for p in "xyz")
        assert (cells[("parts", None)].state == State.EXACT) == parts_exact
        # c: the whole minus its subset is never a small count.
        whole, subset = cells[("whole", None)], cells[("subset", None)]
        if whole.state == subset.state == State.EXACT:
            assert not 0 < (whole.value or 0) - (subset.value or 0) < 10
    # d: the consortium minus any platform's own (which it knows) is never a small count.
    for row in report.rows:
        cell = row.cells[0]
        if cell.state == State.EXACT:
            for p in (A, B, C):
                assert not 0 < (cell.value or 0) - true(row.figure.key, row.part, p) < 10


def test_figure_definitions_are_checked() -> None:
    check_figures(FIGURES)
    with pytest.raises(ValueError, match="used twice"):
        check_figures([WHOLE, WHOLE])
    with pytest.raises(ValueError, match="not a figure"):
        check_figures([SUBSET])
    with pytest.raises(ValueError, match="cycle"):
        check_figures([Figure("a", "S", "a", "", part_of="b"), Figure("b", "S", "b", "", part_of="a")])


def test_a_median_figure_publishes_through_the_same_report() -> None:
    later = Figure("later", "S", "Median days", "")
    raw = {"later": MedianTally(Median(4.0, 30), {A: Median(2.0, 3)})}
    report = published(raw, [CONSORTIUM, Column(A, "Acme", "acme")], [later])
    assert [cell.display for cell in report.row("later").cells] == ["4.0 days", "<10 cases"]


# ------------------------------------------------------------------------------------------------ charts, CSV


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # noqa: S314 - our own SVG, not untrusted input
    assert root.tag == f"{SVG}svg"
    return [text.text or "" for text in root.iter(f"{SVG}text")]


def test_charts_draw_suppressed_counts_as_under_10_never_their_value() -> None:
    bars = [
        ("email", suppress(120), "#f00"),
        ("phone", suppress(7), "#0f0"),
        ("device id", suppress(0), "#00f"),
    ]
    texts = svg_texts(bar_chart("Signals", bars))
    assert texts[0] == "Signals"
    assert {"email", "120", "phone", "<10", "device id", "0"} <= set(texts)
    assert "7" not in texts
    withheld = Cell(State.WITHHELD, 40)
    texts = svg_texts(column_chart("Clusters", ["2026-01", "2026-02"], [("all", [suppress(12), withheld])]))
    assert {"2026-01", "2026-02", "12", "≥40"} <= set(texts)


def test_the_csv_parses_and_says_what_each_value_is() -> None:
    report = published(
        {"parts": {"x": Tally(50, {A: 50}), "y": Tally(3, {A: 3})}}, [CONSORTIUM, Column(A, "A", "a")]
    )
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    by_key = {(row["scope"], row["figure"]): row for row in rows}
    assert by_key[("consortium", "parts.y")]["value"] == "<10"
    assert by_key[("consortium", "parts.y")]["note"] == "between 1 and 9"
    assert by_key[("consortium", "parts")]["value"] == ">=51"
    assert by_key[("a", "parts.x")]["value"] == "50"
    assert by_key[("consortium", "later")]["value"] == "—"
    assert ("a", "whole") in by_key and all(row["period"] == "2026" for row in rows)


# ------------------------------------------------------------------------------------------------ the world


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


RINGS = 12  # acme + bazaar sellers sharing an email: cross-platform clusters
PAIRS = 11  # two acme sellers sharing a bank account: acme-only clusters
LONERS = 5  # third-platform sellers in no cluster


def build(acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform) -> None:
    """The world the figures are checked against; every count the test expects is written out below, from
    this description, not read back from the database."""
    acme_sellers = [
        seller(
            f"a-ring-{i}",
            ("email", f"ring{i}@x.example"),
            ("phone", f"+49301000{i:03d}"),
            reported_at=REPORTED,
        )
        for i in range(RINGS)
    ] + [
        seller(
            f"a-pair-{i}-{j}",
            ("bank_account", f"DE:37040044:{532013000 + i}"),
            status="suspected",
            reported_at=REPORTED,
        )
        for i in range(PAIRS)
        for j in range(2)
    ]
    bazaar_sellers = [
        seller(f"b-ring-{i}", ("email", f"ring{i}@x.example"), reported_at=REPORTED) for i in range(RINGS)
    ]
    third_sellers = [
        seller(f"t-{i}", ("email", f"loner{i}@t.example"), reported_at=REPORTED) for i in range(LONERS)
    ]
    old = seller("t-old", ("email", "old@t.example"), reported_at=datetime(2025, 3, 1, tzinfo=UTC))
    assert submit(acme.client(), *acme_sellers).status_code == 201
    assert submit(bazaar.client(), *bazaar_sellers).status_code == 201
    assert submit(third.client(), *third_sellers, old).status_code == 201


def lookup(kp: KeyedPlatform, *indicators: tuple[str, str]) -> None:
    body = {"indicators": [{"kind": kind, "hash": th(kind, value)} for kind, value in indicators]}
    assert kp.client().post("/api/v1/lookups/", body, format="json").status_code == 200


@pytest.fixture
def world(clock: Any, acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform, alice: User) -> None:
    build(acme, bazaar, third)
    # Screening: third looks up 12 ring emails (all match) and 3 unknown ones, in two requests.
    lookup(third, *(("email", f"ring{i}@x.example") for i in range(6)), ("email", "nobody@x.example"))
    lookup(
        third,
        *(("email", f"ring{i}@x.example") for i in range(6, 12)),
        ("phone", "+4930999000"),
        ("phone", "+4930999001"),
    )
    # Appeals: Acme's upheld (a retraction) and one pending, third's pending then rejected.
    for kp, ref, outcome in (
        (acme, "a-pair-0-0", "upheld"),
        (acme, "a-pair-1-0", "pending"),
        (third, "t-1", "pending"),
        (third, "t-1", "rejected"),
    ):
        response = kp.client().post(f"/api/v1/sellers/{ref}/appeals/", {"outcome": outcome}, format="json")
        assert response.status_code in (200, 201), response.content
    # A retraction, and a purge of a report retracted long ago.
    retract = {"reason": "appeal upheld"}
    assert third.client().post("/api/v1/sellers/t-0/retract/", retract, format="json").status_code == 200
    Seller.objects.filter(seller_ref="t-0").update(retracted_at=NOW - timedelta(days=90))
    call_command("purge_reports", stdout=io.StringIO())
    # Analysts' outcomes: one ring confirmed, one dismissed.
    rings = list(ActorCluster.objects.live().filter(cross_platform=True).order_by("id")[:2])
    do_update_cluster(rings[0], "alice", {"status": "investigating"})
    decided_by_two_analysts(rings[0], "confirmed")
    decided_by_two_analysts(rings[1], "dismissed")


def raw_numbers(key: str, period: str = "2026") -> Any:
    figure = next(f for f in FIGURES if f.key == key)
    assert figure.compute is not None
    return figure.compute(parse_period(period, NOW))


@pytest.mark.django_db
def test_figures_equal_the_counts_of_the_world_they_describe(
    world: None, acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
) -> None:
    a, b, t = acme.platform.pk, bazaar.platform.pk, third.platform.pk
    acme_sellers, bazaar_sellers, third_sellers = RINGS + 2 * PAIRS, RINGS, LONERS - 1  # t-0 was purged
    assert raw_numbers("platforms.members") == Tally(3)
    assert raw_numbers("platforms.reporting") == Tally(3)
    assert raw_numbers("sellers.reported") == Tally(
        acme_sellers + bazaar_sellers + third_sellers, {a: acme_sellers, b: bazaar_sellers, t: third_sellers}
    )
    assert raw_numbers("sellers.confirmed") == Tally(RINGS * 2 + third_sellers, {a: RINGS, b: RINGS, t: 4})
    signals = raw_numbers("signals")
    assert list(signals) == list(KINDS)
    assert signals["email"] == Tally(2 * RINGS + third_sellers, {a: RINGS, b: RINGS, t: third_sellers})
    assert signals["phone"] == Tally(RINGS, {a: RINGS})
    assert signals["bank_account"] == Tally(2 * PAIRS, {a: 2 * PAIRS})
    assert all(
        signals[kind] == Tally(0, {}) for kind in KINDS if kind not in ("email", "phone", "bank_account")
    )
    assert raw_numbers("reports.retracted") == Tally(2, {a: 1, t: 1})
    assert raw_numbers("reports.purged") == Tally(1, {t: 1})
    # The retracted pair member left its cluster: that pair is no cluster any more.
    live = RINGS + PAIRS - 1
    assert raw_numbers("clusters.live") == Tally(live, {a: live, b: RINGS})
    assert raw_numbers("clusters.live_cross_platform") == Tally(RINGS, {a: RINGS, b: RINGS})
    assert raw_numbers("clusters.formed")["2026-05"] == Tally(RINGS + PAIRS, {a: live, b: RINGS})
    assert raw_numbers("clusters.formed")["2026-04"] == Tally(0, {})
    assert raw_numbers("clusters.formed_cross_platform")["2026-05"] == Tally(RINGS, {a: RINGS, b: RINGS})
    assert raw_numbers("clusters.confirmed") == Tally(1, {a: 1, b: 1})
    assert raw_numbers("clusters.dismissed") == Tally(1, {a: 1, b: 1})
    assert raw_numbers("lookups.requests") == Tally(2, {t: 2})
    assert raw_numbers("lookups.indicators") == Tally(15, {t: 15})
    assert raw_numbers("lookups.matches") == Tally(12, {t: 12})
    assert raw_numbers("feedback.appeals") == Tally(3, {a: 2, t: 1})
    assert raw_numbers("feedback.appeals_upheld") == Tally(1, {a: 1})
    assert raw_numbers("feedback.appeals_rejected") == Tally(1, {t: 1})
    # Outside the period: the seller third reported in 2025, and nothing else.
    assert raw_numbers("sellers.reported", "2025") == Tally(1, {t: 1})
    assert raw_numbers("clusters.live", "2025") == Tally(0, {})
    assert raw_numbers("lookups.requests", "2026-04") == Tally(0, {})

    # Published: what the consortium's column shows of those numbers.
    report = build_report(parse_period("2026", NOW), [])
    shown = {row.key: row.cells[0].text for row in report.rows}
    assert shown["sellers.reported"] == str(acme_sellers + bazaar_sellers + third_sellers)
    assert shown["signals.email"] == str(2 * RINGS + third_sellers)
    assert shown["signals.phone"] == "12" and shown["signals.bank_account"] == "22"
    assert shown["signals"] == str(2 * RINGS + third_sellers + RINGS + 2 * PAIRS)
    assert shown["clusters.live_cross_platform"] == "12" and shown["clusters.live"] == "22"
    assert shown["reports.retracted"] == shown["reports.purged"] == shown["clusters.confirmed"] == "<10"
    assert shown["platforms.members"] == "<10"
    assert shown["sellers.confirmed"] == "28"
    # May's 23 clusters minus Acme's own 22 would tell Acme that one formed without it: withheld, and the
    # period's total with it; the cross-platform ones show (12 is every platform's own too).
    assert (shown["clusters.formed.2026-05"], shown["clusters.formed.2026-04"]) == (">=12", "0")
    assert (shown["clusters.formed"], shown["clusters.formed_cross_platform.2026-05"]) == (">=12", "12")
    # 15 screened, 12 matched: 15 would tell that 3 did not match.
    assert (shown["lookups.indicators"], shown["lookups.matches"]) == (">=12", "12")
    assert shown["feedback.appeals"] == shown["feedback.appeals_upheld"] == "<10"
    assert (
        shown["feedback.opinions"] == "0"
    )  # none given here (tests/graph/test_opinions_admin.py gives some)


@pytest.mark.django_db
def test_small_counts_show_as_under_10_in_the_html_and_the_csv(world: None, tmp_path: Path) -> None:
    call_command("transparency_report", "--period", "2026", "--out", str(tmp_path), stdout=io.StringIO())
    rows = list(csv.DictReader((tmp_path / "transparency-2026.csv").open(encoding="utf-8")))
    values = {row["figure"]: row["value"] for row in rows}
    assert values["reports.retracted"] == values["clusters.dismissed"] == "<10"
    html = (tmp_path / "transparency-2026.html").read_text(encoding="utf-8")
    cells = table_cells(html)
    assert ("Reports retracted", ["<10"]) in cells and ("Clusters dismissed", ["<10"]) in cells
    # No small value anywhere: the exact 1s and 2s behind "<10" are in no cell, bar or label.
    assert not any(value in {"1", "2"} for _, row in cells for value in row)
    assert not {"1", "2"} & set(chart_texts(html))


class _Cells(HTMLParser):
    """The report tables' rows: (label, [cell texts]); and every SVG text, from any HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.svg_texts: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._svg_text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "text":
            self._svg_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append((self._row[0], self._row[1:]))
            self._row = None
        elif tag == "text" and self._svg_text is not None:
            self.svg_texts.append("".join(self._svg_text))
            self._svg_text = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._svg_text):
            if part is not None:
                part.append(data)


def parsed(html: str) -> _Cells:
    parser = _Cells()
    parser.feed(html)
    parser.close()
    return parser


def table_cells(html: str) -> list[tuple[str, list[str]]]:
    return [(label, [re.sub(r"\*$", "", v) for v in values]) for label, values in parsed(html).rows]


def chart_texts(html: str) -> list[str]:
    return parsed(html).svg_texts


# ------------------------------------------------------------------------------------------------ the command


@pytest.mark.django_db
def test_the_command_writes_well_formed_html_with_charts_and_a_csv_and_prints_a_summary(
    world: None, tmp_path: Path
) -> None:
    out = io.StringIO()
    call_command("transparency_report", "--period", "2026-Q2", "--out", str(tmp_path / "new"), stdout=out)
    html_file, csv_file = (
        tmp_path / "new" / "transparency-2026-Q2.html",
        tmp_path / "new" / "transparency-2026-Q2.csv",
    )
    root = ET.parse(html_file).getroot()  # noqa: S314 - the file the command just wrote: well-formed XML
    assert root.tag == "html"
    charts = list(root.iter(f"{SVG}svg"))
    assert len(charts) == 2
    assert "Signals reported, by indicator kind" in [t.text for t in charts[0].iter(f"{SVG}text")]
    assert [t.text for t in charts[1].iter(f"{SVG}text") if t.text and "-0" in t.text] == [
        "2026-04",
        "2026-05",
    ]
    rows = list(csv.DictReader(csv_file.open(encoding="utf-8")))
    assert {row["scope"] for row in rows} == {"consortium"}
    assert {row["period"] for row in rows} == {"2026-Q2"}
    assert len(rows) == len({row["figure"] for row in rows}) > 30
    summary = out.getvalue()
    assert (
        "Transparency report 2026-Q2 (2026-04-01 to 2026-06-30, still running: as of 2026-05-20 12:00 UTC)"
        in summary
    )
    assert "  Sellers reported: 50\n" in summary and "  Reports retracted: <10\n" in summary
    assert f"Wrote {html_file} and {csv_file}" in summary
    entry = AuditEntry.objects.get(action="transparency_report")
    assert (entry.actor, entry.platform_id, entry.details["period"], entry.details["scope"]) == (
        "manage.py transparency_report",
        None,
        "2026-Q2",
        "consortium",
    )


@pytest.mark.django_db
def test_the_command_with_a_platform_adds_its_own_figures_in_its_own_files(
    world: None, tmp_path: Path, acme: KeyedPlatform
) -> None:
    call_command(
        "transparency_report",
        "--period",
        "2026",
        "--platform",
        "acme",
        "--out",
        str(tmp_path),
        stdout=io.StringIO(),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "transparency-2026-acme.csv",
        "transparency-2026-acme.html",
    ]
    rows = list(csv.DictReader((tmp_path / "transparency-2026-acme.csv").open(encoding="utf-8")))
    assert {row["scope"] for row in rows} == {"consortium", "acme"}
    assert {r["figure"]: r["value"] for r in rows if r["scope"] == "acme"}["sellers.reported"] == "34"
    entry = AuditEntry.objects.get(action="transparency_report")
    assert (entry.platform_id, entry.details["scope"]) == (acme.platform.pk, "consortium and acme")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13"], r"a year \(2026\), a quarter \(2026-Q3\) or a month \(2026-07\)"),
        (["--period", "2031"], "has not started yet"),
        (["--period", "2026", "--platform", "nope"], "No such platform: nope"),
    ],
)
def test_the_command_refuses_bad_input_and_writes_nothing(
    clock: Any, args: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("transparency_report", *args, "--out", str(tmp_path), stdout=io.StringIO())
    assert list(tmp_path.iterdir()) == []
    assert not AuditEntry.objects.filter(action="transparency_report").exists()


@pytest.mark.django_db
def test_the_command_refuses_an_out_path_that_is_a_file(clock: Any, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("transparency_report", "--period", "2026", "--out", str(target), stdout=io.StringIO())


# ------------------------------------------------------------------------------------------------ the admin page


@pytest.mark.django_db
def test_exchange_analysts_see_the_consortium_and_every_platform(
    world: None, alice: User, acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
) -> None:
    response = logged_in(alice).get(URL, {"period": "2026"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html
    header = re.findall(r'<th class="num">([^<]*)</th>', html)
    assert header[:4] == ["Consortium", "Acme Market", "Bazaar North", "Third Market"]
    assert ("Sellers reported", ["50", "34", "12", "<10"]) in table_cells(html)
    entry = AuditEntry.objects.get(action="transparency_report")
    assert (entry.actor, entry.platform_id, entry.details) == (
        "alice",
        None,
        {"period": "2026", "scope": "consortium and every platform", "format": "html"},
    )


@pytest.mark.django_db
def test_the_cluster_list_links_to_the_report(clock: Any, alice: User, bob: User) -> None:
    for user in (alice, bob):
        assert URL in logged_in(user).get("/admin/graph/actorcluster/").content.decode()


@pytest.mark.django_db
def test_the_page_defaults_to_this_year_and_downloads_the_csv(world: None, bob: User) -> None:
    client = logged_in(bob)
    page = client.get(URL).content.decode()
    assert "Period 2026:" in page and 'href="?period=2026&amp;format=csv">Download CSV</a>' in page
    assert 'name="period" value="2026"' in page
    response = client.get(URL, {"period": "2026-05", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="transparency-2026-05.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["scope"] for row in rows} == {"consortium", "acme"}
    formats = list(
        AuditEntry.objects.filter(action="transparency_report").values_list("details__format", flat=True)
    )
    assert sorted(formats) == ["csv", "html"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"), [({"period": "2026-13"}, "accepted"), ({"format": "pdf"}, "Unknown format")]
)
def test_a_bad_period_or_format_is_a_400_naming_what_is_wrong(
    clock: Any, alice: User, query: dict[str, str], message: str
) -> None:
    response = logged_in(alice).get(URL, query)
    assert response.status_code == 400
    html = response.content.decode()
    if message == "accepted":
        assert "is not a period: give a year (2026), a quarter (2026-Q3) or a month (2026-07)." in html
    else:
        assert message in html
    assert not AuditEntry.objects.filter(action="transparency_report").exists()


@pytest.mark.django_db
def test_only_analysts_reach_the_report(clock: Any, dave: User) -> None:
    assert logged_in(dave).get(URL).status_code == 403
    response = Client().get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_a_partner_analyst_sees_the_consortium_and_their_own_figures_never_another_platforms() -> None:
    """The canary world of the report leak test (twelve platforms "Mart-pNN-Canary" with sellers "CANARY-pNN-"),
    plus one platform whose own figures are a canary number: 173 sellers, each with one signal."""
    platforms, _ = build_world(random.Random(5))
    canary = make_platform("canary", "Canary Bazaar")
    just_now = timezone.now() - timedelta(minutes=1)
    sellers = [
        seller(f"CANARY-canary-{i}", ("email", f"c{i}@canary.example"), reported_at=just_now)
        for i in range(173)
    ]
    assert submit(canary.client(), *sellers).status_code == 201
    own = platforms[3].platform
    user = make_analyst("p03-analyst", own)

    exchange_page = logged_in(make_analyst("operator", None)).get(URL).content.decode()
    assert "Canary Bazaar" in exchange_page and "Mart-p07-Canary" in exchange_page  # positive control
    assert "173" in dict(table_cells(exchange_page))["Sellers reported"]

    client = logged_in(user)
    page = client.get(URL).content.decode()
    download = client.get(URL, {"format": "csv"}).content.decode()
    # The canary number is nobody's figure but the canary platform's (so its absence below means something).
    report = build_report(parse_period(str(timezone.now().year), timezone.now()), [own])
    assert "173" not in {cell.display for row in report.rows for cell in row.cells}
    for text in (page, download):
        assert "Canary Bazaar" not in text and "CANARY-canary-" not in text
        for other in range(PLATFORMS):
            if other != 3:
                assert f"Mart-p{other:02d}-Canary" not in text and f"CANARY-p{other:02d}-" not in text
    assert set(re.findall(r'<th class="num">([^<]*)</th>', page)) == {"Consortium", "Mart-p03-Canary"}
    assert all("173" not in values for _, values in table_cells(page))
    rows = list(csv.DictReader(io.StringIO(download)))
    assert {row["scope"] for row in rows} == {"consortium", "p03"}
    assert "173" not in {row["value"] for row in rows}
    entry = AuditEntry.objects.filter(action="transparency_report", actor="p03-analyst").first()
    assert (
        entry is not None and entry.platform_id == own.pk and entry.details["scope"] == "consortium and p03"
    )
