"""The consortium's transparency report, its pure part: periods, publishing figures from plain numbers with
small-count suppression, the SVG charts and the CSV. No Django: `graph/transparency_data.py` counts from the
models (and holds the one list of figures), the command and the admin page render what `publish()` returns.

What a figure is: a definition (`Figure`) and raw counts (`Tally`): the consortium's count and, where the
figure can be attributed to a platform, each platform's own. A figure may have parts (signals by indicator
kind, clusters by month); its total is then the sum of its parts. A figure may be a subset of another
(`part_of`: cross-platform clusters of all clusters), part by part.

Publication rules (README, "Transparency report"; tests/graph/test_transparency_report.py):

1. Small counts (`suppress`): a count from 1 to 9 is shown as "<10"; 0 is shown as 0 (nobody is inferred from
   nothing, and Lantern-style reports print zeros) and so is any count from 10 up.
2. Differencing (`publish`): no published number may give a hidden count away by subtraction. A count that
   would show exactly is withheld, shown as "≥N" (N a lower bound readers can derive anyway from the other
   published numbers, at least 10), when
   a. it is a total and one of its parts is hidden (total minus the shown parts would be the hidden ones);
   b. it is a total that is hidden while every part shows: the smallest part is withheld too (the parts
      would add up to the total);
   c. a subset of it shows exactly and the difference is 1 to 9 (all clusters minus cross-platform ones);
   d. it is a consortium count and some platform's own count of it is 1 to 9 below it: a platform knows its own
      figures, so the consortium's minus its own would be a small count of the other platforms together.
   The rules are applied until nothing changes (withholding only ever hides more). Every viewer gets the same
   consortium figures: rule d is checked against every platform, whoever asks.

What the rules do not cover: reports of overlapping periods (a year and its quarters) can be subtracted from one
another, so publish one granularity; a consortium figure only one platform contributes to is that platform's
own (readers are not told which); and in a two-platform consortium the consortium's figure minus one
platform's own is the other's (not small, but the other's). The exchange analysts' version, with every
platform's column, shows what they can read in the admin anyway: it is not for publication.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from html import escape
from typing import Literal, Protocol

from graph.palette import KIND_COLOURS, PLATFORM_COLOURS

SMALL_BELOW = 10  # counts from 1 to SMALL_BELOW - 1 are suppressed
FIRST_YEAR = 2000  # partners' report dates start here (exchange.contract); so do periods
ACCEPTED_PERIODS = "a year (2026), a quarter (2026-Q3) or a month (2026-07)"

# --------------------------------------------------------------------------------------------------- periods


class PeriodError(ValueError):
    """A period that is malformed, before 2000 or not started yet; the message names the accepted forms."""


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; `as_of` is the end, or the moment of reporting when the period is still running."""

    label: str
    start: datetime
    end: datetime
    as_of: datetime

    @property
    def complete(self) -> bool:
        return self.as_of >= self.end

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    def months(self) -> list[str]:
        """The months of the period that have started by `as_of`, as "2026-07"."""
        found = []
        month = self.start
        while month < self.end and month < self.as_of:
            found.append(f"{month:%Y-%m}")
            month = _add_months(month, 1)
        return found


# ASCII digits only: \d would take other scripts' digits too.
_YEAR = re.compile(r"([0-9]{4})")
_QUARTER = re.compile(r"([0-9]{4})-[Qq]([1-4])")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def parse_period(text: str, now: datetime) -> Period:
    """The Period a year ("2026"), a quarter ("2026-Q3") or a month ("2026-07") names, begun by `now`;
    PeriodError, naming the accepted forms, for anything else."""
    text = text.strip()
    if match := _YEAR.fullmatch(text):
        year, first_month, months, label = int(match[1]), 1, 12, match[1]
    elif match := _QUARTER.fullmatch(text):
        quarter = int(match[2])
        year, first_month, months, label = int(match[1]), 3 * quarter - 2, 3, f"{match[1]}-Q{quarter}"
    elif match := _MONTH.fullmatch(text):
        year, first_month, months, label = int(match[1]), int(match[2]), 1, text
    else:
        shown = text if len(text) <= 20 else text[:20] + "…"
        raise PeriodError(f"{shown!r} is not a period: give {ACCEPTED_PERIODS}.")
    if year < FIRST_YEAR:
        raise PeriodError(f"{label} is before {FIRST_YEAR}: give {ACCEPTED_PERIODS} from {FIRST_YEAR} on.")
    start = datetime(year, first_month, 1, tzinfo=UTC)
    if start > now:
        raise PeriodError(f"{label} has not started yet: give {ACCEPTED_PERIODS} that has begun.")
    end = _add_months(start, months)
    return Period(label, start, end, min(end, now))


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1)


# --------------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Tally:
    """A count figure's raw numbers: the consortium's and, when it can be attributed to a platform, each
    platform's own (a platform missing from the mapping counts 0). `platforms=None`: no platform's figure."""

    consortium: int
    platforms: Mapping[int, int] | None = None


@dataclass(frozen=True)
class Median:
    """A median in days over `cases` (e.g. time to action). Shown only over at least SMALL_BELOW cases."""

    days: float
    cases: int


@dataclass(frozen=True)
class MedianTally:
    consortium: Median
    platforms: Mapping[int, Median] | None = None


# What a figure's compute function returns: a Tally, its parts in order (the total is their sum), or a median.
Raw = Tally | dict[str, Tally] | MedianTally


@dataclass(frozen=True)
class Figure:
    """One row of the report (with its parts' rows). `compute` None: not collected yet, shown as "—".

    `part_of` names a figure this one is a subset of, part by part (rule c). `chart`: "bars" draws the
    consortium's parts as horizontal bars, "columns" draws them as columns beside the figures `part_of` it."""

    key: str
    section: str
    label: str
    definition: str
    compute: Callable[[Period], Raw] | None = None
    part_of: str | None = None
    chart: Literal["", "bars", "columns"] = ""
    legend: str = ""  # its name in a chart's legend (default: its label)


def check_figures(figures: Sequence[Figure]) -> None:
    """Keys are unique and every `part_of` names another figure, without a cycle (ValueError otherwise)."""
    keys = [figure.key for figure in figures]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"figure keys used twice: {', '.join(duplicates)}")
    whole = {figure.key: figure.part_of for figure in figures}
    for figure in figures:
        seen = {figure.key}
        step = figure.part_of
        while step is not None:
            if step not in whole:
                raise ValueError(f"{figure.key} is part of {step}, which is not a figure")
            if step in seen:
                raise ValueError(f"{figure.key} is part of a cycle")
            seen.add(step)
            step = whole[step]


# --------------------------------------------------------------------------------------------------- cells


class State(StrEnum):
    EXACT = "exact"
    SMALL = "small"  # 1 to 9: "<10"
    WITHHELD = "withheld"  # 10 or more, withheld so that a small count cannot be derived: "≥N"
    PENDING = "pending"  # not collected yet: "—"
    BLANK = "blank"  # no such figure in this column (a consortium-only figure in a platform's column)


@dataclass(frozen=True)
class Cell:
    """A published value: `value` is the exact count (EXACT) or the lower bound shown (WITHHELD)."""

    state: State
    value: int | None = None
    median: Median | None = None

    @property
    def text(self) -> str:
        """Plain ASCII, as the CSV has it."""
        return self._render(lambda n: str(n), ">=")

    @property
    def display(self) -> str:
        """As the HTML page and the charts show it."""
        return self._render(lambda n: f"{n:,}", "≥")

    def _render(self, number: Callable[[int], str], at_least: str) -> str:
        if self.median is not None:
            return f"{self.median.days:.1f} days" if self.state == State.EXACT else f"<{SMALL_BELOW} cases"
        if self.state == State.EXACT:
            return number(self.value or 0)
        if self.state == State.SMALL:
            return f"<{SMALL_BELOW}"
        if self.state == State.WITHHELD:
            return f"{at_least}{number(self.value or SMALL_BELOW)}"
        return "—" if self.state == State.PENDING else ""

    @property
    def note(self) -> str:
        if self.state == State.SMALL:
            return "fewer cases than 10" if self.median is not None else "between 1 and 9"
        if self.state == State.WITHHELD:
            return "at least this many; the exact count is withheld so that no small count can be derived"
        if self.state == State.PENDING:
            return "not collected yet"
        return ""

    @property
    def lower(self) -> int:
        """The least a reader knows this count to be from what is shown."""
        if self.state == State.EXACT:
            return self.value or 0
        if self.state == State.SMALL:
            return 1
        if self.state == State.WITHHELD:
            return self.value or SMALL_BELOW
        return 0


BLANK = Cell(State.BLANK)
PENDING = Cell(State.PENDING)


def suppress(count: int) -> Cell:
    """The small-count rule, the one place it is written: 1 to 9 is "<10", 0 and 10 up are shown exactly."""
    if count < 0:
        raise ValueError(f"a count cannot be negative: {count}")
    if 0 < count < SMALL_BELOW:
        return Cell(State.SMALL)
    return Cell(State.EXACT, count)


def publish_median(median: Median) -> Cell:
    """A median is shown only when it is the median of at least SMALL_BELOW cases."""
    return Cell(State.EXACT if median.cases >= SMALL_BELOW else State.SMALL, median=median)


# --------------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Column:
    """The consortium (`platform_id` None) or one platform's own figures."""

    platform_id: int | None
    title: str
    scope: str  # the CSV's scope column: "consortium" or the platform's slug


CONSORTIUM = Column(None, "Consortium", "consortium")


@dataclass(frozen=True)
class Row:
    figure: Figure
    part: str | None
    cells: tuple[Cell, ...]  # one per column of the report

    @property
    def key(self) -> str:
        return self.figure.key if self.part is None else f"{self.figure.key}.{self.part}"

    @property
    def label(self) -> str:
        return self.figure.label if self.part is None else self.part.replace("_", " ")


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str


@dataclass(frozen=True)
class Report:
    period: Period
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    def row(self, key: str, part: str | None = None) -> Row:
        for row in self.rows:
            if row.figure.key == key and row.part == part:
                return row
        raise KeyError(key if part is None else f"{key}.{part}")

    def cell(self, key: str, part: str | None = None, platform_id: int | None = None) -> Cell:
        index = [column.platform_id for column in self.columns].index(platform_id)
        return self.row(key, part).cells[index]

    @property
    def sections(self) -> list[tuple[str, list[Row]]]:
        """The rows by section, in the figures' order; a figure's parts follow it."""
        grouped: dict[str, list[Row]] = {}
        for row in self.rows:
            grouped.setdefault(row.figure.section, []).append(row)
        return list(grouped.items())

    @property
    def pending(self) -> bool:
        return any(cell.state == State.PENDING for row in self.rows for cell in row.cells)

    @property
    def charts(self) -> list[Chart]:
        return charts(self)


CellKey = tuple[str, str | None, int | None]  # (figure, part or None for the total, platform or None)


def publish(
    period: Period,
    figures: Sequence[Figure],
    raw: Mapping[str, Raw | None],
    columns: Sequence[Column],
    platform_ids: Iterable[int],
) -> Report:
    """The report as `columns` show it: every count through `suppress` and the differencing rules (module
    docstring). `raw` holds every figure's numbers for every platform (`platform_ids`), whichever columns are
    shown: the consortium's cells are the same in every report (rule d looks at every platform)."""
    check_figures(figures)
    everyone = sorted(set(platform_ids))
    counts: dict[CellKey, int] = {}
    parts: dict[str, list[str]] = {}
    attributable: set[str] = set()
    for figure in figures:
        tally = raw.get(figure.key)
        if isinstance(tally, dict):
            parts[figure.key] = list(tally)
            for part, part_tally in tally.items():
                _count_cells(counts, figure.key, part, part_tally, everyone)
            counted = {column for (key, _, column) in counts if key == figure.key} | {None}
            for column in counted:
                counts[(figure.key, None, column)] = sum(
                    counts.get((figure.key, p, column), 0) for p in tally
                )
            if counted != {None}:
                attributable.add(figure.key)
        elif isinstance(tally, Tally):
            _count_cells(counts, figure.key, None, tally, everyone)
            if tally.platforms is not None:
                attributable.add(figure.key)
    states = _withhold(figures, counts, parts, attributable, everyone)
    bounds = _lower_bounds(figures, counts, parts, states)

    def cell(figure: Figure, part: str | None, column: int | None) -> Cell:
        tally = raw.get(figure.key)
        if tally is None:
            return PENDING
        if isinstance(tally, MedianTally):
            if column is None:
                return publish_median(tally.consortium)
            if tally.platforms is None:
                return BLANK
            return publish_median(tally.platforms.get(column, Median(0.0, 0)))
        key = (figure.key, part, column)
        if key not in counts:
            return BLANK
        state = states[key]
        if state == State.WITHHELD:
            return Cell(State.WITHHELD, bounds[key])
        return Cell(state, counts[key] if state == State.EXACT else None)

    rows = [
        Row(figure, part, tuple(cell(figure, part, column.platform_id) for column in columns))
        for figure in figures
        for part in [None, *parts.get(figure.key, [])]
    ]
    return Report(period, tuple(columns), tuple(rows))


def _count_cells(
    counts: dict[CellKey, int], key: str, part: str | None, tally: Tally, everyone: list[int]
) -> None:
    counts[(key, part, None)] = tally.consortium
    if tally.platforms is not None:
        for platform_id in everyone:
            counts[(key, part, platform_id)] = tally.platforms.get(platform_id, 0)


def _withhold(
    figures: Sequence[Figure],
    counts: Mapping[CellKey, int],
    parts: Mapping[str, list[str]],
    attributable: set[str],
    everyone: list[int],
) -> dict[CellKey, State]:
    """Each cell's state: `suppress`, then rules a-d until nothing changes."""
    states = {key: suppress(count).state for key, count in counts.items()}
    subsets: dict[str, list[str]] = {}
    for figure in figures:
        if figure.part_of is not None:
            subsets.setdefault(figure.part_of, []).append(figure.key)

    def small_difference(whole: int, key: CellKey) -> bool:
        return key in counts and states[key] == State.EXACT and 0 < whole - counts[key] < SMALL_BELOW

    def reason(key: CellKey) -> bool:
        figure_key, part, column = key
        value = counts[key]
        own_parts = parts.get(figure_key, [])
        if part is None and any(states[(figure_key, p, column)] != State.EXACT for p in own_parts):
            return True  # a: total minus the shown parts would be the hidden ones
        if part is not None and states[(figure_key, None, column)] != State.EXACT:
            exact = [p for p in own_parts if states[(figure_key, p, column)] == State.EXACT]
            nonzero = [p for p in exact if counts[(figure_key, p, column)] > 0]
            if len(exact) == len(own_parts) and nonzero:
                # b: the parts would add up to the hidden total; withhold the smallest
                smallest = min(nonzero, key=lambda p: (counts[(figure_key, p, column)], own_parts.index(p)))
                if part == smallest:
                    return True
        if any(small_difference(value, (sub, part, column)) for sub in subsets.get(figure_key, [])):
            return True  # c: the whole minus its subset
        # d: the consortium minus one platform's own, which the platform knows whatever its column shows
        return (
            column is None
            and figure_key in attributable
            and any(0 < value - counts[(figure_key, part, p)] < SMALL_BELOW for p in everyone)
        )

    changed = True
    while changed:
        changed = False
        for key in counts:
            if states[key] == State.EXACT and reason(key):
                states[key] = State.WITHHELD
                changed = True
    return states


def _lower_bounds(
    figures: Sequence[Figure],
    counts: Mapping[CellKey, int],
    parts: Mapping[str, list[str]],
    states: Mapping[CellKey, State],
) -> dict[CellKey, int]:
    """A withheld cell's "≥N": the most a reader can derive from the published cells alone (its shown parts
    and subsets), and at least SMALL_BELOW."""
    subsets: dict[str, list[str]] = {}
    for figure in figures:
        if figure.part_of is not None:
            subsets.setdefault(figure.part_of, []).append(figure.key)
    bounds: dict[CellKey, int] = {}

    def lower(key: CellKey) -> int:
        state = states[key]
        if state == State.EXACT:
            return counts[key]
        if state == State.SMALL:
            return 1
        if key not in bounds:
            figure_key, part, column = key
            candidates = [SMALL_BELOW]
            if part is None and figure_key in parts:
                candidates.append(sum(lower((figure_key, p, column)) for p in parts[figure_key]))
            candidates += [
                lower((sub, part, column))
                for sub in subsets.get(figure_key, [])
                if (sub, part, column) in states
            ]
            bounds[key] = max(candidates)
        return bounds[key]

    for key, state in states.items():
        if state == State.WITHHELD:
            lower(key)
    return bounds


# --------------------------------------------------------------------------------------------------- CSV


class Writable(Protocol):
    def write(self, text: str, /) -> object: ...


CSV_HEADER = ("period", "scope", "section", "figure", "label", "value", "note")


def write_csv(report: Report, out: Writable) -> None:
    """One line per figure (and part) and column: the published value as text ("<10", ">=120", "—")."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in report.rows:
        label = row.figure.label if row.part is None else f"{row.figure.label}: {row.label}"
        for column, cell in zip(report.columns, row.cells, strict=True):
            if cell.state != State.BLANK:
                writer.writerow(
                    [
                        report.period.label,
                        column.scope,
                        row.figure.section,
                        row.key,
                        label,
                        cell.text,
                        cell.note,
                    ]
                )


# --------------------------------------------------------------------------------------------------- charts

CHART_WIDTH = 720
FONT = 'font-family="sans-serif" font-size="12"'
SERIES_COLOURS = (PLATFORM_COLOURS[0], PLATFORM_COLOURS[1], PLATFORM_COLOURS[2], PLATFORM_COLOURS[3])
DEFAULT_BAR = "#8fb3d9"


def charts(report: Report) -> list[Chart]:
    """The consortium's charts: a figure with `chart="bars"` as horizontal bars of its parts, one with
    `chart="columns"` as columns of its parts beside those of the figures that are part of it."""
    if not report.columns or report.columns[0].platform_id is not None:
        return []
    drawn = []
    for row in report.rows:
        figure = row.figure
        if row.part is not None or not figure.chart:
            continue
        part_rows = [r for r in report.rows if r.figure.key == figure.key and r.part is not None]
        if not part_rows:
            continue
        if figure.chart == "bars":
            bars = [(r.label, r.cells[0], KIND_COLOURS.get(r.part or "", DEFAULT_BAR)) for r in part_rows]
            drawn.append(Chart(figure.label, bar_chart(figure.label, bars)))
        else:
            series = [(figure.legend or figure.label, [r.cells[0] for r in part_rows])]
            for other in report.rows:
                if other.figure.part_of == figure.key and other.part is None:
                    cells = [report.cell(other.figure.key, r.part) for r in part_rows]
                    series.append((other.figure.legend or other.figure.label, cells))
            drawn.append(
                Chart(figure.label, column_chart(figure.label, [r.label for r in part_rows], series))
            )
    return drawn


def _scale(cells: Iterable[Cell]) -> int:
    # "<10" is drawn up to 10 (all a reader knows is that it is below), a withheld count up to its bound.
    return max([SMALL_BELOW, *(cell.lower if cell.state != State.SMALL else SMALL_BELOW for cell in cells)])


def _paint(cell: Cell, colour: str) -> str:
    if cell.state == State.EXACT:
        return f'fill="{colour}" stroke="#333" stroke-width="0.6"'
    # Not an exact count: a pale bar with a dashed outline reaching the most it may be (<10) or the least (≥N).
    return f'fill="{colour}" fill-opacity="0.35" stroke="#333" stroke-width="0.8" stroke-dasharray="3 2"'


def _length(cell: Cell) -> int:
    if cell.state == State.SMALL:
        return SMALL_BELOW
    if cell.state in (State.EXACT, State.WITHHELD):
        return cell.lower
    return 0


def bar_chart(title: str, bars: Sequence[tuple[str, Cell, str]]) -> str:
    """Horizontal bars, one per (label, published cell, colour); values written beside each bar."""
    label_width, value_width, row_height, top = 170, 70, 22, 30
    area = CHART_WIDTH - label_width - value_width
    scale = _scale(cell for _, cell, _ in bars)
    height = top + row_height * len(bars) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_WIDTH} {height}" width="100%" '
        f'role="img" class="transparency-chart" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
        f'<line x1="{label_width}" y1="{top - 4}" x2="{label_width}" y2="{height - 6}" stroke="#999"/>',
    ]
    for index, (label, cell, colour) in enumerate(bars):
        y = top + index * row_height
        width = _length(cell) / scale * area
        out.append(
            f'<g class="bar"><title>{escape(label)}: {escape(cell.display)}</title>'
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
        )
        if width:
            out.append(
                f'<rect x="{label_width}" y="{y + 3}" width="{width:.1f}" height="{row_height - 6}" '
                f"{_paint(cell, colour)}/>"
            )
        out.append(f'<text x="{label_width + width + 5:.1f}" y="{y + 14}">{escape(cell.display)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def column_chart(title: str, categories: Sequence[str], series: Sequence[tuple[str, Sequence[Cell]]]) -> str:
    """Columns per category (e.g. month), one per series side by side, values above them, a legend on top."""
    left, bottom, top, plot_height = 10, 40, 50, 200
    height = top + plot_height + bottom
    group = (CHART_WIDTH - 2 * left) / max(1, len(categories))
    width = min(28.0, group * 0.8 / max(1, len(series)))
    scale = _scale(cell for _, cells in series for cell in cells)
    baseline = top + plot_height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_WIDTH} {height}" width="100%" '
        f'role="img" class="transparency-chart" {FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    x = left
    for index, (name, _) in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        out.append(
            f'<rect x="{x}" y="26" width="11" height="11" fill="{colour}"/>'
            f'<text x="{x + 16}" y="36">{escape(name)}</text>'
        )
        x += 30 + len(name) * 7
    out.append(f'<line x1="{left}" y1="{baseline}" x2="{CHART_WIDTH - left}" y2="{baseline}" stroke="#999"/>')
    for index, category in enumerate(categories):
        start = left + index * group + (group - width * len(series)) / 2
        for number, (name, cells) in enumerate(series):
            cell = cells[index]
            colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
            bar_height = _length(cell) / scale * (plot_height - 16)
            x0 = start + number * width
            out.append(
                f'<g class="column"><title>{escape(category)}, {escape(name)}: {escape(cell.display)}</title>'
            )
            if bar_height:
                out.append(
                    f'<rect x="{x0:.1f}" y="{baseline - bar_height:.1f}" width="{width - 2:.1f}" '
                    f'height="{bar_height:.1f}" {_paint(cell, colour)}/>'
                )
            out.append(
                f'<text x="{x0 + width / 2 - 1:.1f}" y="{baseline - bar_height - 4:.1f}" text-anchor="middle" '
                f'font-size="10">{escape(cell.display)}</text></g>'
            )
        out.append(
            f'<text x="{left + index * group + group / 2:.1f}" y="{baseline + 16}" text-anchor="middle">'
            f"{escape(category)}</text>"
        )
    out.append("</svg>")
    return "".join(out)
