"""Submitting many seller reports: batching, progress and the end-of-run summary."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.client.api import ApiError, ExchangeClient, ExchangeError, TransportError
from exchange.client.csvinput import (
    CsvResult,
    IncompleteSeller,
    RejectedRow,
    SellerReport,
    read_submission_file,
)
from exchange.client.fuzzy import NO_KEY_HINT
from exchange.contract import DEFAULT_MAX_BATCH_SELLERS, DEFAULT_MAX_BODY_BYTES, Limits

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PARALLEL",
    "MAX_BATCH_SIZE",
    "BatchFailure",
    "SubmitSummary",
    "batched",
    "submit_csv",
    "submit_sellers",
    "within_limits",
]

DEFAULT_BATCH_SIZE = 500
DEFAULT_PARALLEL = 4  # the command line's batches in flight: enough to keep a 2-worker server busy
MAX_BATCH_SIZE = DEFAULT_MAX_BATCH_SELLERS  # the exchange refuses larger batches (by default)


@dataclass(frozen=True)
class BatchFailure:
    """A batch the exchange did not accept, after every retry."""

    number: int
    sellers: int
    idempotency_key: str
    error: str
    status: int | None = None


@dataclass
class SubmitSummary:
    """The outcome of a submission run (or of a dry run, which reads, checks and hashes but sends nothing).

    ``ok`` is false when any batch failed or was not attempted; ``complete`` is true only when every row
    read was sent (or, in a dry run, would be). ``format()`` is a stable text: one ``name: value`` line per
    count (fuzzy encodings count as indicators), then the address rows sent without their fuzzy encoding (once
    for all when no consortium key was given), the rejected rows, the incomplete sellers and the failed batches,
    each under its heading.
    """

    rows: int = 0
    sellers: int = 0  # sellers to send (after the per-seller policy and the exchange's limits)
    indicators: int = 0
    duplicate_indicators: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    incomplete: list[IncompleteSeller] = field(default_factory=list)
    addresses_without_key: int = 0  # address rows sent exact only: no consortium key for their fuzzy encoding
    fuzzy_not_sent: list[RejectedRow] = field(default_factory=list)  # address rows whose encoding was refused
    batches_total: int = 0
    batches_sent: int = 0
    sellers_sent: int = 0
    indicators_sent: int = 0
    sightings_created: int = 0
    submissions: list[str] = field(default_factory=list)  # the opaque references of accepted batches
    failures: list[BatchFailure] = field(default_factory=list)
    batches_skipped: int = 0
    elapsed: float = 0.0
    dry_run: bool = False

    @classmethod
    def of(cls, result: CsvResult) -> SubmitSummary:
        """The summary of a CSV read, before anything is sent."""
        summary = cls(
            rows=result.rows,
            duplicate_indicators=result.duplicate_indicators,
            rejected=result.rejected,
            incomplete=result.incomplete,
            addresses_without_key=result.addresses_without_key,
            fuzzy_not_sent=result.fuzzy_not_sent,
        )
        summary.count_sellers(result.sellers)
        return summary

    def count_sellers(self, sellers: Sequence[SellerReport]) -> None:
        """Set the sellers and indicators to send."""
        self.sellers = len(sellers)
        self.indicators = sum(len(seller.indicators) for seller in sellers)

    @property
    def held_back(self) -> list[IncompleteSeller]:
        """Sellers not sent because one of their rows was rejected (the default policy)."""
        return [seller for seller in self.incomplete if not seller.sent]

    @property
    def ok(self) -> bool:
        """Whether every batch was accepted (rejected rows aside)."""
        return not self.failures and not self.batches_skipped

    @property
    def complete(self) -> bool:
        """Whether every row read was sent (in a dry run: would be sent), none rejected or held back."""
        return self.ok and not self.rejected and not self.held_back

    def format(self) -> str:
        """A human- and script-readable report (no raw values, no key: safe to log)."""
        held_rows = sum(len(seller.valid_lines) for seller in self.held_back)
        lines = ["dry run: nothing was sent"] if self.dry_run else []
        lines += [
            f"rows read: {self.rows}",
            f"rows rejected: {len(self.rejected)}",
            f"rows held back: {held_rows}",
            f"sellers held back: {len(self.held_back)}",
            f"duplicate indicators dropped: {self.duplicate_indicators}",
            f"sellers to send: {self.sellers}",
            f"indicators to send: {self.indicators}",
            f"batches to send: {self.batches_total}",
        ]
        if not self.dry_run:
            lines += [
                f"batches sent: {self.batches_sent}",
                f"sellers sent: {self.sellers_sent}",
                f"indicators sent: {self.indicators_sent}",
                f"new sightings: {self.sightings_created}",
                f"seconds: {self.elapsed:.1f}",
            ]
        if self.addresses_without_key:
            lines.append(
                f"fuzzy address encodings not sent: no consortium key was given ({NO_KEY_HINT}); "
                f"{self.addresses_without_key} address rows went as exact hashes only"
            )
        if self.fuzzy_not_sent:
            lines.append("address rows sent without their fuzzy encoding (the exact hash was sent):")
            lines.extend(f"  {row}" for row in self.fuzzy_not_sent)
        if self.rejected:
            lines.append("rejected rows:")
            lines.extend(f"  {row}" for row in self.rejected)
        if self.held_back:
            lines.append("sellers held back (a row was rejected; --send-valid-rows sends their valid rows):")
            lines.extend(f"  {seller}" for seller in self.held_back)
        partial = [seller for seller in self.incomplete if seller.sent]
        if partial:
            lines.append("sellers sent without their rejected rows (--send-valid-rows):")
            lines.extend(f"  {seller}" for seller in partial)
        if self.failures:
            lines.append("failed batches:")
            lines.extend(
                f"  batch {failure.number} ({failure.sellers} sellers, Idempotency-Key {failure.idempotency_key})"
                f": {failure.error}"
                for failure in self.failures
            )
        if self.batches_skipped:
            lines.append(f"batches not attempted after a fatal error: {self.batches_skipped}")
        return "\n".join(lines)


def within_limits(
    sellers: Sequence[SellerReport], limits: Limits
) -> tuple[list[SellerReport], list[RejectedRow]]:
    """Split off the sellers the exchange would refuse (more indicators than it takes per seller): the
    exchange validates a batch as a whole, so one such seller would cost the whole batch. Their rows are
    returned as rejected, each naming the limit."""
    kept: list[SellerReport] = []
    rejected: list[RejectedRow] = []
    for seller in sellers:
        if len(seller.indicators) <= limits.max_seller_indicators:
            kept.append(seller)
            continue
        reason = (
            f"{len(seller.indicators)} distinct indicators for one seller; the exchange takes at most "
            f"{limits.max_seller_indicators}"
        )
        rejected.extend(RejectedRow(line, seller.seller_ref, reason) for line in (seller.lines or [0]))
    return kept, rejected


def batched(
    sellers: Sequence[SellerReport], batch_size: int, max_bytes: int | None = None
) -> Iterator[Sequence[SellerReport]]:
    """Split sellers, in order, into batches of at most ``batch_size`` (1 or more) whose request body is at
    most ``max_bytes`` when given (the exchange says both in ``ExchangeClient.limits()``): photos make a
    seller's JSON large (19 hashes each), and a body over the exchange's limit is refused whole (413). A
    seller too large on its own goes alone (the exchange then refuses that batch, naming the limit)."""
    if batch_size < 1:
        raise ValueError("batch size must be 1 or more")
    if max_bytes is None:
        for start in range(0, len(sellers), batch_size):
            yield sellers[start : start + batch_size]
        return
    batch: list[SellerReport] = []
    size = len(_ENVELOPE)
    for seller in sellers:
        cost = len(json.dumps(seller.to_payload(), separators=(",", ":")))
        if batch and (len(batch) == batch_size or size + 1 + cost > max_bytes):
            yield batch
            batch, size = [], len(_ENVELOPE)
        size += cost + (1 if batch else 0)  # the comma before every seller but the first
        batch.append(seller)
    if batch:
        yield batch


_ENVELOPE = '{"sellers":[]}'  # a batch's body around its sellers, as ExchangeClient sends it (ASCII JSON)


def submit_sellers(
    client: ExchangeClient,
    sellers: Sequence[SellerReport],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    parallel: int = 1,
    progress: Callable[[str], None] | None = None,
    summary: SubmitSummary | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SubmitSummary:
    """Submit sellers in batches, each with its own Idempotency-Key; return (or fill in) a summary.

    A batch also keeps its request body within ``max_body_bytes`` (the exchange's
    ``limits().max_body_bytes``; None: by count alone). ``parallel`` batches are in flight at once, each on its
    own connection (the command line sends 4; 1 sends them one after the other). The summary and the progress lines follow the batches' order whatever
    order the answers come in. A batch that fails for good is recorded and the others are still sent, except
    after an authentication error (401/403) or an unreachable exchange: batches not yet started are then
    skipped (those already in flight finish).
    """
    if parallel < 1:
        raise ValueError("parallel must be 1 or more")
    if summary is None:
        summary = SubmitSummary()
        summary.count_sellers(sellers)
    batches = list(batched(sellers, batch_size, max_body_bytes))
    keys = [str(uuid.uuid4()) for _ in batches]
    summary.batches_total = len(batches)
    fatal = threading.Event()

    def send(index: int) -> dict[str, Any] | ExchangeError | None:
        """The batch's answer, its error, or None when it was skipped after a fatal error."""
        if fatal.is_set():
            return None
        try:
            return client.submit_batch(batches[index], idempotency_key=keys[index])
        except ExchangeError as exc:
            if isinstance(exc, TransportError) or (isinstance(exc, ApiError) and exc.status in (401, 403)):
                fatal.set()
            return exc

    started = clock()
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="submit") as pool:
        outcomes = [pool.submit(send, index) for index in range(len(batches))]
        for number, (batch, key, outcome) in enumerate(zip(batches, keys, outcomes, strict=True), start=1):
            answer = outcome.result()
            if answer is None:
                summary.batches_skipped += 1
                continue
            if isinstance(answer, ExchangeError):
                status = answer.status if isinstance(answer, ApiError) else None
                summary.failures.append(BatchFailure(number, len(batch), key, str(answer), status))
                _report(progress, f"batch {number}/{len(batches)} failed: {answer}")
                continue
            summary.batches_sent += 1
            summary.sellers_sent += len(batch)
            summary.indicators_sent += sum(len(seller.indicators) for seller in batch)
            summary.sightings_created += _as_int(answer.get("sightings_created"))
            if "submission" in answer:
                summary.submissions.append(answer["submission"])
            elapsed = max(clock() - started, 1e-9)
            _report(
                progress,
                f"batch {number}/{len(batches)} sent: {summary.sellers_sent} sellers so far "
                f"({summary.sellers_sent / elapsed:.0f} sellers/s)",
            )
    summary.elapsed = clock() - started
    return summary


def submit_csv(
    client: ExchangeClient,
    path: str | Path,
    *,
    default_region: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    parallel: int = 1,
    progress: Callable[[str], None] | None = None,
    send_valid_rows: bool = False,
    consortium_key: bytes | None = None,
) -> SubmitSummary:
    """Read, normalise and hash a submission CSV, submit it in batches and return the summary.

    Rejected rows (with line numbers and reasons) are in ``summary.rejected``; they do not stop the run.
    A seller with a rejected row is held back (``summary.held_back``) unless ``send_valid_rows``, which
    sends its valid rows. ``summary.complete`` says whether every row was sent. Raises ``CsvFormatError``
    if the file cannot be read at all. ``consortium_key`` keys the fingerprints of ``document`` rows and the
    fuzzy encodings of ``person_name``, ``business_name`` and address rows
    (``exchange.documents.read_consortium_key_file``); without it document and name rows are rejected and
    addresses are sent as exact hashes only.
    """
    result = read_submission_file(
        path, default_region, send_valid_rows=send_valid_rows, consortium_key=consortium_key
    )
    summary = SubmitSummary.of(result)
    return submit_sellers(
        client,
        result.sellers,
        batch_size=batch_size,
        max_body_bytes=max_body_bytes,
        parallel=parallel,
        progress=progress,
        summary=summary,
    )


def _report(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
