"""Law-enforcement referral packages: plain data in, a ZIP out (no Django here).

A package is what one viewer of a cluster page may hand to the police, in one folder of a ZIP:

- `referral.pdf`: the report for people, rendered by WeasyPrint from HTML the caller made of the same data;
- `cluster.json`: everything below in one document;
- `members.csv`: members by platform (a partner analyst's own sellers by reference, other platforms counted);
- `evidence.csv`: the links that reach every member, with the indicator kinds and when each was first seen;
- `timeline.csv`: members' reports, retractions, the cluster's events and (exchange analysts) their actions;
- `manifest.json`: the SHA-256 and size of every other file, who made the package, when, of which cluster
  and in which view;
- `SHA256SUMS`: the same hashes (and the manifest's) for `sha256sum -c SHA256SUMS`.

What the data holds is decided before it gets here (`graph.exports.referral_data`, from the cluster page's
explanation); this module only writes it down. The JSON and CSV files depend on the data alone: the same data
gives the same bytes (sorted keys, rows in a fixed order, dates taken from the data). The manifest's
`created_at` is the one moment of creation. No indicator value or token is ever part of the data.

WeasyPrint fetches nothing: its URL fetcher refuses every URL but inline `data:` ones, so neither a template
nor a value in it can make the server reach out to the network or read a local file.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FULL = "full"  # an exchange analyst's package: every member by reference, analyst notes
PARTNER = "partner"  # a partner analyst's: its own sellers by reference, other platforms as counts

PDF = "referral.pdf"
CLUSTER_JSON = "cluster.json"
MEMBERS_CSV = "members.csv"
EVIDENCE_CSV = "evidence.csv"
TIMELINE_CSV = "timeline.csv"
MANIFEST = "manifest.json"
SHA256SUMS = "SHA256SUMS"
FILES = (PDF, CLUSTER_JSON, MEMBERS_CSV, EVIDENCE_CSV, TIMELINE_CSV, MANIFEST, SHA256SUMS)
FORMAT_VERSION = 1

MEMBER_COLUMNS = (
    "platform",
    "accounts",
    "seller_ref",
    "status",
    "reasons",
    "first_reported",
    "last_reported",
    "expires",
    "state",
)
EVIDENCE_COLUMNS = (
    "step",
    "from",
    "from_platform",
    "to",
    "to_platform",
    "kind",
    "strength",
    "first_seen",
    "sellers_here",
    "platforms_here",
    "bridge",
)
TIMELINE_COLUMNS = ("at", "until", "lane", "what", "description")
# Rows per table in the PDF: WeasyPrint lays out some hundred table rows a second, and the request must end
# well within the web worker's timeout. The JSON and CSV files hold every row, and the PDF says so.
PDF_ROWS = 250
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV injection"); seller
# references are partners' text. Such a cell is written with a leading apostrophe, which spreadsheets hide;
# cluster.json keeps the value as it is.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    ref: str
    status: str
    risk: int
    size: int
    platforms: int
    cross_platform: bool
    kinds: tuple[str, ...]
    created_at: str
    changed_at: str
    dissolved_at: str | None
    earliest_report: str | None  # the month only when it dates another platform's report (partner view)
    cluster_id: int | None = None  # exchange analysts only: ids tell exchange-wide volume
    assignee: str | None = None  # exchange analysts only


@dataclass(frozen=True, slots=True)
class RiskPart:
    name: str
    points: int
    maximum: int
    how: str


@dataclass(frozen=True, slots=True)
class PlatformMembers:
    platform: str  # its name, or a neutral label ("Platform A") unless the consortium reveals names
    accounts: int
    own: bool  # the partner analyst's own platform
    listed: bool  # its members are listed by reference (otherwise only counted)


@dataclass(frozen=True, slots=True)
class MemberRow:
    platform: str
    seller_ref: str
    status: str
    reasons: tuple[str, ...]
    first_reported: str
    last_reported: str
    expires: str
    state: str  # "active", "expired" or "retracted <date>"


@dataclass(frozen=True, slots=True)
class IndicatorFacts:
    """An indicator the cluster's members share, without its value: kind, strength, counts, first seen."""

    kind: str
    strength: str
    sellers: int  # members of this cluster holding it
    platforms: int
    first_seen: str | None  # the month only where the viewer may see no more
    linking: str  # "links", "links (forced in)", "suppressed: marked common", "suppressed: over the limit"
    links: int  # member pairs whose link it is part of
    bridge: bool
    holders: int | None = None  # linkable sellers exchange-wide, where the viewer may see it


@dataclass(frozen=True, slots=True)
class EvidenceStep:
    step: int
    a: str
    a_platform: str
    b: str
    b_platform: str
    indicators: tuple[IndicatorFacts, ...]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: str
    until: str  # the end of a span (a member's first to latest report), "" for a moment
    lane: str
    what: str  # "reports", "retracted", "event" or "action"
    description: str


@dataclass(frozen=True, slots=True)
class ReferralData:
    view: str  # FULL or PARTNER
    viewer_platform: str | None  # the partner analyst's platform
    cluster: ClusterFacts
    risk: tuple[RiskPart, ...]
    platforms: tuple[PlatformMembers, ...]
    members: tuple[MemberRow, ...]
    indicators: tuple[IndicatorFacts, ...]
    evidence: tuple[EvidenceStep, ...]
    timeline: tuple[TimelineEntry, ...]
    notes: str | None = None  # exchange analysts only


@dataclass(frozen=True, slots=True)
class Package:
    filename: str  # the ZIP's, "referral-<ref>-<UTC time>.zip"
    content: bytes
    files: dict[str, bytes]  # name -> content, as in the ZIP's folder
    view: str  # FULL or PARTNER

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class PdfTable:
    rows: tuple[Any, ...]  # the first PDF_ROWS
    omitted: int
    file: str  # where every row is


def pdf_tables(data: ReferralData) -> dict[str, PdfTable]:
    """The PDF's long tables, each cut at `PDF_ROWS` rows."""

    def cut(rows: tuple[Any, ...], file: str) -> PdfTable:
        return PdfTable(rows[:PDF_ROWS], max(0, len(rows) - PDF_ROWS), file)

    data = in_order(data)
    return {
        "members": cut(data.members, MEMBERS_CSV),
        "evidence": cut(data.evidence, EVIDENCE_CSV),
        "indicators": cut(data.indicators, CLUSTER_JSON),
        "timeline": cut(data.timeline, TIMELINE_CSV),
    }


def utc(moment: datetime) -> str:
    """A moment as the package writes it: ISO 8601 in UTC, to the second."""
    if moment.tzinfo is None:
        raise ValueError("referral packages need timezone-aware datetimes")
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def data_files(data: ReferralData) -> dict[str, bytes]:
    """cluster.json and the CSVs: the same data gives the same bytes."""
    data = in_order(data)
    return {
        CLUSTER_JSON: _json(_document(data)),
        MEMBERS_CSV: _csv(MEMBER_COLUMNS, _member_rows(data)),
        EVIDENCE_CSV: _csv(EVIDENCE_COLUMNS, _evidence_rows(data)),
        TIMELINE_CSV: _csv(TIMELINE_COLUMNS, _timeline_rows(data)),
    }


def in_order(data: ReferralData) -> ReferralData:
    """`data` with its members (by platform as listed, then reference) and timeline (chronologically) in the
    one order every file and the PDF use."""
    order = {p.platform: n for n, p in enumerate(data.platforms)}
    return dataclasses.replace(
        data,
        members=tuple(
            sorted(data.members, key=lambda m: (order.get(m.platform, len(order)), m.platform, m.seller_ref))
        ),
        # ISO dates sort chronologically as text; a month-only date sorts before the days of its month.
        timeline=tuple(sorted(data.timeline, key=lambda t: (t.at, t.until, t.lane, t.what, t.description))),
    )


def _document(data: ReferralData) -> dict[str, Any]:
    document = dataclasses.asdict(data)
    if data.view != FULL:
        # A partner's document has no place for what only exchange analysts see, not even as null.
        document.pop("notes")
        for name in ("cluster_id", "assignee"):
            document["cluster"].pop(name)
    for indicator in _indicators_in(document):
        if indicator["holders"] is None:
            indicator.pop("holders")
    return document


def _indicators_in(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [*document["indicators"], *(i for step in document["evidence"] for i in step["indicators"])]


def _member_rows(data: ReferralData) -> list[tuple[Any, ...]]:
    """A row per member listed by reference, and one per platform whose members are only counted."""
    rows: list[tuple[Any, ...]] = []
    for platform in data.platforms:
        if not platform.listed:
            rows.append((platform.platform, platform.accounts, "", "", "", "", "", "", ""))
            continue
        for m in data.members:
            if m.platform == platform.platform:
                rows.append(
                    (
                        m.platform,
                        1,
                        m.seller_ref,
                        m.status,
                        "; ".join(m.reasons),
                        m.first_reported,
                        m.last_reported,
                        m.expires,
                        m.state,
                    )
                )
    return rows


def _evidence_rows(data: ReferralData) -> list[tuple[Any, ...]]:
    return [
        (
            step.step,
            step.a,
            step.a_platform,
            step.b,
            step.b_platform,
            i.kind,
            i.strength,
            i.first_seen or "",
            i.sellers,
            i.platforms,
            "yes" if i.bridge else "no",
        )
        for step in data.evidence
        for i in step.indicators
    ]


def _timeline_rows(data: ReferralData) -> list[tuple[Any, ...]]:
    return [(t.at, t.until, t.lane, t.what, t.description) for t in data.timeline]


def _json(document: Any) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _csv(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF line ends, quoted where needed
    writer.writerow(columns)
    writer.writerows([tuple(_cell(value) for value in row) for row in rows])
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def render_pdf(html: str) -> bytes:
    """The PDF of `html`, fetching nothing (only inline `data:` URLs are read)."""
    # Imported here: WeasyPrint loads Pango when imported (most of a second), and only packages need it. Its
    # import sets Pillow's process-wide LOAD_TRUNCATED_IMAGES, which would make every later decode in the
    # process accept a truncated image (exchange/perceptual.py refuses them): the flag is put back.
    from PIL import ImageFile

    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    ImageFile.LOAD_TRUNCATED_IMAGES = truncated

    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    pdf: bytes = HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    return pdf


def manifest(files: dict[str, bytes], data: ReferralData, created_by: str, created_at: datetime) -> bytes:
    """Who made the package, when, of which cluster, in which view, and each file's SHA-256 and size."""
    return _json(
        {
            "package": "law-enforcement referral",
            "format_version": FORMAT_VERSION,
            "cluster": data.cluster.ref,
            "view": data.view,
            "platform": data.viewer_platform,
            "created_by": created_by,
            "created_at": utc(created_at),
            "files": [
                {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
                for name, content in sorted(files.items())
            ],
            "verify": f"sha256sum -c {SHA256SUMS} in this folder checks every file",
        }
    )


def sha256sums(files: dict[str, bytes]) -> bytes:
    """`sha256sum`'s own format (hash, two spaces, name), so `sha256sum -c SHA256SUMS` checks the files."""
    return "".join(
        f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in sorted(files.items())
    ).encode()


def assemble(data: ReferralData, html: str, created_by: str, created_at: datetime) -> Package:
    """The whole package: the PDF of `html`, the data files, the manifest and SHA256SUMS, zipped in one folder
    named for the cluster and the moment of creation."""
    files = {PDF: render_pdf(html), **data_files(data)}
    files[MANIFEST] = manifest(files, data, created_by, created_at)
    files[SHA256SUMS] = sha256sums(files)
    folder = f"referral-{data.cluster.ref}-{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return Package(f"{folder}.zip", zip_folder(folder, files, created_at), files, data.view)


def zip_folder(folder: str, files: dict[str, bytes], created_at: datetime) -> bytes:
    """`files` in one folder of a ZIP, in a fixed order, every entry dated `created_at` (UTC)."""
    stamp = created_at.astimezone(UTC)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            entry = zipfile.ZipInfo(f"{folder}/{name}", date_time=stamp.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, content)
    return buffer.getvalue()
