"""Reading a partner's submission CSV into seller reports with transport-hashed indicators.

One row per indicator: ``seller_ref,status,reasons,reported_at,kind,value`` (header row required, columns
in any order, extra columns ignored). Values are normalised and hashed here, on the partner's machine; only
hashes leave it. Bad rows are collected with their line number and reason, never with their value. The value
of an ``image`` row names a product photo (a path relative to the CSV file's folder, or an https:// URL):
the photo is hashed here with PDQ (``exchange.client.images``) and only its hashes are sent. The value of a
``document`` row names a PDF or text file (a path relative to the CSV file's folder): it is fingerprinted here
(``exchange.client.documents``: its SHA-256 and a MinHash of its text keyed with the consortium key) and only
those are sent. The value of a ``person_name`` or ``business_name`` row is the name as typed: only its fuzzy
encoding keyed with the consortium key is sent (``exchange.client.fuzzy``); an address row sends its transport
hash and, with the consortium key, also the address's fuzzy encoding.

A seller is reported as a whole: by default a seller with a rejected row is held back (not sent at all), so
that the exchange never holds a partial picture of it without anyone noticing; ``send_valid_rows=True``
sends the rest of its rows. Either way the seller is named in ``CsvResult.incomplete``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from exchange.client.documents import DocumentHasher
from exchange.client.fuzzy import ADDRESS_FUZZY_KIND, NAME_KINDS, NO_KEY, FuzzyEncoder, FuzzyEncodingError
from exchange.client.images import PhotoHasher
from exchange.contract import (
    IMAGE_KIND,
    SELLER_REF_MAX_LENGTH,
    SELLER_REF_RULE,
    TIMESTAMP_CLOCK_SKEW,
    TIMESTAMP_EARLIEST,
    TIMESTAMP_MAX_OFFSET,
    is_seller_ref,
)
from exchange.documents import DOCUMENT_KIND, DocumentError, DocumentFingerprint
from exchange.normalization import (
    KINDS,
    REASONS,
    STATUSES,
    NormalizationError,
    normalize_region,
    transport_hash,
)
from exchange.perceptual import ImageHashError, PdqVariants

__all__ = [
    "COLUMNS",
    "CSV_KINDS",
    "CsvFormatError",
    "CsvResult",
    "IncompleteSeller",
    "Indicator",
    "RejectedRow",
    "SellerReport",
    "parse_reported_at",
    "read_submission_csv",
    "read_submission_file",
    "read_submission_rows",
]

COLUMNS: tuple[str, ...] = ("seller_ref", "status", "reasons", "reported_at", "kind", "value")
MAX_SELLER_REF_LENGTH = SELLER_REF_MAX_LENGTH  # the exchange refuses longer ones (and the whole batch)
REASON_SEPARATOR = "|"
# The kinds a CSV row may have: the spec's normalised kinds, product photos (hashed with PDQ, not SHA-256) and
# documents (the file's SHA-256 and a keyed MinHash of its text), and names (a keyed fuzzy encoding only).
CSV_KINDS: tuple[str, ...] = (*KINDS, IMAGE_KIND, DOCUMENT_KIND, *NAME_KINDS)


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (no header, missing columns, not UTF-8)."""


@dataclass(frozen=True)
class Indicator:
    """One hashed indicator as the API receives it: its kind and its transport hash.

    An ``image`` indicator's ``hash`` is the photo's PDQ hash instead, and it also carries the hash's
    ``quality`` and the sub-crop hashes (``crops``), which the API receives with it. A ``document``
    indicator's ``hash`` is the SHA-256 of the file's bytes, and it also carries the keyed MinHash of its text
    (``minhash``). An indicator is identified by its kind and hash (the same photo or file given twice is one
    indicator). A fuzzy indicator (``person_name``, ``business_name``, ``shipping_address_fuzzy``,
    ``return_address_fuzzy``) has no hash (``""``) but its keyed Bloom-filter ``encoding``, which identifies it.
    """

    kind: str
    hash: str
    quality: int | None = field(default=None, compare=False)
    crops: tuple[str, ...] = field(default=(), compare=False)
    minhash: str | None = field(default=None, compare=False)
    encoding: str | None = None

    def to_payload(self) -> dict[str, Any]:
        if self.encoding is not None:
            return {"kind": self.kind, "encoding": self.encoding}
        if self.kind == IMAGE_KIND:
            return {"kind": self.kind, "hash": self.hash, "quality": self.quality, "crops": list(self.crops)}
        if self.kind == DOCUMENT_KIND:
            return {"kind": self.kind, "hash": self.hash, "minhash": self.minhash}
        return {"kind": self.kind, "hash": self.hash}

    @classmethod
    def of_photo(cls, variants: PdqVariants) -> Indicator:
        """The ``image`` indicator of a photo's PDQ variants (``PhotoHasher.variants``)."""
        return cls(IMAGE_KIND, variants.full.hex, variants.full.quality, variants.crops)

    @classmethod
    def of_document(cls, found: DocumentFingerprint) -> Indicator:
        """The ``document`` indicator of a file's fingerprint (``DocumentHasher.fingerprint``)."""
        return cls(DOCUMENT_KIND, found.sha256, minhash=found.minhash)


@dataclass
class SellerReport:
    """One seller as the API receives it. ``reported_at`` is an ISO-8601 string with a timezone."""

    seller_ref: str
    status: str
    reasons: list[str]
    reported_at: str
    indicators: list[Indicator] = field(default_factory=list)
    # CSV lines this seller came from (for messages; not sent).
    lines: list[int] = field(default_factory=list, compare=False, repr=False)

    def to_payload(self) -> dict[str, Any]:
        return {
            "seller_ref": self.seller_ref,
            "status": self.status,
            "reasons": list(self.reasons),
            "reported_at": self.reported_at,
            "indicators": [indicator.to_payload() for indicator in self.indicators],
        }


@dataclass(frozen=True)
class RejectedRow:
    """A CSV row that was not sent: its line number (the header is line 1), seller_ref and the reason."""

    line: int
    seller_ref: str
    reason: str

    def __str__(self) -> str:
        seller = f" (seller {self.seller_ref!r})" if self.seller_ref else ""
        return f"line {self.line}{seller}: {self.reason}"


@dataclass(frozen=True)
class IncompleteSeller:
    """A seller some of whose rows were rejected while others were valid.

    ``sent`` is false under the default policy (the valid rows are held back too) and true with
    ``send_valid_rows`` (the valid rows are sent without the rejected ones). ``rejected`` names the rejected
    rows (their reasons are in ``CsvResult.rejected``), ``valid_lines`` the rows held back or sent.
    """

    seller_ref: str
    rejected: tuple[RejectedRow, ...]
    valid_lines: tuple[int, ...]
    sent: bool = False

    def __str__(self) -> str:
        if len(self.rejected) == 1:
            cause = f"line {self.rejected[0].line} rejected ({self.rejected[0].reason})"
        else:
            cause = f"lines {_line_list(row.line for row in self.rejected)} rejected (see the rejected rows)"
        total = len(self.rejected) + len(self.valid_lines)
        if self.sent:
            return (
                f"seller {self.seller_ref!r} sent with {len(self.valid_lines)} of its {total} rows: {cause}"
            )
        held = "line" if len(self.valid_lines) == 1 else "lines"
        return (
            f"seller {self.seller_ref!r} not sent: {cause}; its valid {held} "
            f"{_line_list(self.valid_lines)} held back"
        )


def _line_list(lines: Iterable[int]) -> str:
    return ", ".join(str(line) for line in lines)


@dataclass
class _SellerDraft:
    report: SellerReport
    reported_at: datetime
    hashes: set[Indicator] = field(default_factory=set)
    conflicts: set[str] = field(default_factory=set)
    # Lines not rejected so far; they are rejected after all if the seller's rows turn out to conflict.
    accepted_lines: list[int] = field(default_factory=list)


@dataclass
class CsvResult:
    """What a submission CSV yielded: sellers to send, rejected rows, data rows read, duplicates dropped,
    and the sellers with both rejected and valid rows (held back, or sent without the rejected rows)."""

    sellers: list[SellerReport]
    rejected: list[RejectedRow]
    rows: int
    duplicate_indicators: int
    incomplete: list[IncompleteSeller] = field(default_factory=list)
    # Address rows sent with their exact hash only: because no consortium key was given (a count: the summary
    # says it once), or because their fuzzy encoding could not be made (each row with the reason).
    addresses_without_key: int = 0
    fuzzy_not_sent: list[RejectedRow] = field(default_factory=list)

    @property
    def held_back(self) -> list[IncompleteSeller]:
        """The sellers not sent because one of their rows was rejected."""
        return [seller for seller in self.incomplete if not seller.sent]


def parse_reported_at(text: str, now: datetime | None = None) -> str:
    """Parse an ISO-8601 date or date-time; naive values and dates are UTC. Return it as ``...Z`` UTC.

    Within the exchange's bounds (``exchange.contract``): not before 2000-01-01, not in the future (beyond a
    few minutes of clock skew), a UTC offset within +-14:00. Raises ``ValueError`` with a human reason for
    anything unparseable or out of bounds (never quoting the value).
    """
    text = text.strip()
    if not text:
        raise ValueError("reported_at is empty")
    try:
        moment = datetime.fromisoformat(text)  # a bare date is midnight
    except ValueError:
        raise ValueError(
            "reported_at is not an ISO-8601 date or date-time (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > TIMESTAMP_MAX_OFFSET:
        raise ValueError("reported_at has a UTC offset beyond +-14:00")
    # Aware comparisons cannot overflow at year 1 or 9999; astimezone() could, hence it comes last.
    if moment < TIMESTAMP_EARLIEST:
        raise ValueError(f"reported_at is before {TIMESTAMP_EARLIEST:%Y-%m-%d}")
    if moment > (now or datetime.now(UTC)) + TIMESTAMP_CLOCK_SKEW:
        raise ValueError("reported_at is in the future")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def read_submission_csv(
    path: str | Path,
    default_region: str | None = None,
    *,
    send_valid_rows: bool = False,
    consortium_key: bytes | None = None,
) -> tuple[list[SellerReport], list[RejectedRow]]:
    """Read a submission CSV; return the sellers to submit and the rejected rows.

    Rows are normalised and hashed with ``default_region`` for national phone numbers and country-less
    tax ids. The photos of ``image`` rows are read relative to the CSV file's folder (or downloaded from
    their https:// URL) and hashed with PDQ; a photo that cannot be had or hashed rejects its row. A
    seller's status, reasons and reported_at must agree across its rows; if they do not, all its rows are
    rejected. A seller with a rejected row is not returned at all, unless ``send_valid_rows``
    (then it comes with its valid rows). Repeated indicators of one seller are sent once. Raises
    ``CsvFormatError`` when the file cannot be read at all.
    """
    result = read_submission_file(
        path, default_region, send_valid_rows=send_valid_rows, consortium_key=consortium_key
    )
    return result.sellers, result.rejected


def read_submission_file(
    path: str | Path,
    default_region: str | None = None,
    *,
    send_valid_rows: bool = False,
    consortium_key: bytes | None = None,
) -> CsvResult:
    """Like ``read_submission_csv``, with the counts and the incomplete sellers (a ``CsvResult``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            return read_submission_rows(
                stream,
                default_region,
                send_valid_rows=send_valid_rows,
                base_dir=Path(path).parent,
                consortium_key=consortium_key,
            )
    except UnicodeDecodeError:
        raise CsvFormatError("the file is not UTF-8 text") from None


def read_submission_rows(
    stream: TextIO | Iterable[str],
    default_region: str | None = None,
    now: datetime | None = None,
    *,
    send_valid_rows: bool = False,
    base_dir: str | Path | None = None,
    consortium_key: bytes | None = None,
) -> CsvResult:
    """Read submission CSV text from an open stream (or any iterable of lines); see ``read_submission_csv``.

    ``base_dir`` is the folder that the relative paths of ``image`` and ``document`` rows start from (None:
    the current directory, as for a CSV read from standard input). ``consortium_key`` keys the fingerprints of
    ``document`` rows and the fuzzy encodings of names and addresses; without it ``document``, ``person_name``
    and ``business_name`` rows are rejected and addresses are sent as exact hashes only."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise CsvFormatError("the file is empty; expected a header row: " + ",".join(COLUMNS))
    names = [name.strip().lower() for name in header]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise CsvFormatError(
            f"the header row lacks column(s) {', '.join(missing)}; expected: {','.join(COLUMNS)}"
        )
    position = {column: names.index(column) for column in COLUMNS}
    now = now or datetime.now(UTC)
    default_region = normalize_region(default_region)
    photos = PhotoHasher(base_dir)
    documents = DocumentHasher(base_dir, consortium_key)
    encoder = FuzzyEncoder(consortium_key)

    drafts: dict[str, _SellerDraft] = {}
    rejected: list[RejectedRow] = []
    fuzzy_not_sent: list[RejectedRow] = []
    duplicates = rows = addresses_without_key = 0
    last_fields: tuple[tuple[str, ...] | None, SellerFields | None] = (None, None)
    for line, row in _numbered_rows(reader):
        if not any(cell.strip() for cell in row):
            continue  # blank lines carry nothing
        rows += 1
        if len(row) != len(names):
            seller_ref = row[position["seller_ref"]].strip() if len(row) > position["seller_ref"] else ""
            rejected.append(RejectedRow(line, seller_ref, f"expected {len(names)} columns, got {len(row)}"))
            continue
        cells = {column: row[index] for column, index in position.items()}
        seller_ref = cells["seller_ref"].strip()
        fields_text = tuple(cells[column] for column in SELLER_COLUMNS)
        if fields_text != last_fields[0]:  # a seller's rows usually come together: parse its fields once
            try:
                last_fields = (fields_text, _seller_fields(cells, now))
            except ValueError as exc:
                rejected.append(RejectedRow(line, seller_ref, str(exc)))
                continue
        assert last_fields[1] is not None
        status, reasons, reported_at, moment = last_fields[1]

        draft = drafts.get(seller_ref)
        if draft is None:
            report = SellerReport(seller_ref, status, reasons, reported_at)
            draft = drafts[seller_ref] = _SellerDraft(report, moment)
        else:
            draft.conflicts |= _conflicts(draft, status, reasons, moment)
        draft.report.lines.append(line)

        try:
            indicators = _indicators(cells, seller_ref, default_region, photos, documents, encoder)
        except ValueError as exc:
            rejected.append(RejectedRow(line, seller_ref, str(exc)))
            continue
        draft.accepted_lines.append(line)
        fuzzy_address = ADDRESS_FUZZY_KIND.get(indicators[0].kind)
        if fuzzy_address is not None:
            try:
                indicators.append(
                    Indicator(
                        fuzzy_address, "", encoding=encoder.encode(fuzzy_address, cells["value"], seller_ref)
                    )
                )
            except FuzzyEncodingError as exc:
                if exc.reason == NO_KEY:
                    addresses_without_key += 1
                else:
                    reason = f"{fuzzy_address} not sent ({exc.reason}): {exc}"
                    fuzzy_not_sent.append(RejectedRow(line, seller_ref, reason))
        for indicator in indicators:
            if indicator in draft.hashes:
                duplicates += 1
                continue
            draft.hashes.add(indicator)
            draft.report.indicators.append(indicator)

    rejected_by_seller: dict[str, list[RejectedRow]] = {}
    for rejection in rejected:
        rejected_by_seller.setdefault(rejection.seller_ref, []).append(rejection)
    sellers: list[SellerReport] = []
    incomplete: list[IncompleteSeller] = []
    for seller_ref, draft in drafts.items():
        if draft.conflicts:
            lines = _line_list(draft.report.lines)
            reason = f"conflicting {' and '.join(sorted(draft.conflicts))} across this seller's rows (lines {lines})"
            rejected.extend(RejectedRow(line, seller_ref, reason) for line in draft.accepted_lines)
            continue
        if not draft.report.indicators:
            continue
        own_rejections = rejected_by_seller.get(seller_ref)
        if own_rejections:
            incomplete.append(
                IncompleteSeller(
                    seller_ref, tuple(own_rejections), tuple(draft.accepted_lines), sent=send_valid_rows
                )
            )
            if not send_valid_rows:
                continue
        sellers.append(draft.report)
    rejected.sort(key=lambda row: row.line)
    return CsvResult(sellers, rejected, rows, duplicates, incomplete, addresses_without_key, fuzzy_not_sent)


def _numbered_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    # csv.reader.line_num counts physical lines read so far, so a quoted field spanning lines would
    # otherwise report the record's last line; partners look for the line where the record starts.
    previous = reader.line_num
    for row in reader:
        yield previous + 1, row
        previous = reader.line_num


# The columns `_seller_fields` reads: the seller's, repeated on each of its rows.
SELLER_COLUMNS = ("seller_ref", "status", "reasons", "reported_at")
# A seller's status, reasons, reported_at as sent and as a moment.
SellerFields = tuple[str, list[str], str, datetime]


def _seller_fields(cells: dict[str, str], now: datetime) -> SellerFields:
    seller_ref = cells["seller_ref"].strip()
    if not seller_ref:
        raise ValueError("seller_ref is empty")
    if len(seller_ref) > MAX_SELLER_REF_LENGTH:
        raise ValueError(f"seller_ref is longer than {MAX_SELLER_REF_LENGTH} characters")
    if not is_seller_ref(seller_ref):
        raise ValueError(f"seller_ref must be {SELLER_REF_RULE}")
    status = cells["status"].strip().lower()
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    reasons: list[str] = []
    for reason in cells["reasons"].split(REASON_SEPARATOR):
        reason = reason.strip().lower()
        if not reason:
            continue
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason[:40]!r}; valid reasons: {', '.join(REASONS)}")
        if reason not in reasons:
            reasons.append(reason)
    if not reasons:
        raise ValueError(
            "reasons is empty; give one or more of "
            + ", ".join(REASONS)
            + f" separated by '{REASON_SEPARATOR}'"
        )
    reported_at = parse_reported_at(cells["reported_at"], now)
    return status, reasons, reported_at, datetime.fromisoformat(reported_at)


def _conflicts(draft: _SellerDraft, status: str, reasons: list[str], moment: datetime) -> set[str]:
    found = set()
    if status != draft.report.status:
        found.add("status")
    if set(reasons) != set(draft.report.reasons):
        found.add("reasons")
    if moment != draft.reported_at:
        found.add("reported_at")
    return found


def _indicators(
    cells: dict[str, str],
    seller_ref: str,
    default_region: str | None,
    photos: PhotoHasher,
    documents: DocumentHasher,
    encoder: FuzzyEncoder,
) -> list[Indicator]:
    """The row's indicator (the caller adds an address's fuzzy encoding); ``ValueError`` rejects the row."""
    kind = cells["kind"].strip().lower()
    if kind not in CSV_KINDS:
        raise ValueError(f"unknown kind {kind[:40]!r}; valid kinds: {', '.join(CSV_KINDS)}")
    if kind == IMAGE_KIND:
        try:
            variants = photos.variants(cells["value"])
        except ImageHashError as exc:
            raise ValueError(f"image rejected ({exc.reason}): {exc}") from None
        return [Indicator.of_photo(variants)]
    if kind == DOCUMENT_KIND:
        try:
            found = documents.fingerprint(cells["value"])
        except DocumentError as exc:
            raise ValueError(f"document rejected ({exc.reason}): {exc}") from None
        return [Indicator.of_document(found)]
    if kind in NAME_KINDS:
        try:
            return [Indicator(kind, "", encoding=encoder.encode(kind, cells["value"], seller_ref))]
        except FuzzyEncodingError as exc:
            raise ValueError(f"{kind} rejected ({exc.reason}): {exc}") from None
    try:
        return [Indicator(kind, transport_hash(kind, cells["value"], default_region))]
    except NormalizationError as exc:
        raise ValueError(f"{kind} value rejected: {exc.reason}") from None
