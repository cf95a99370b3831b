"""Submitting many seller reports: batching, progress and the end-of-run summary."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.client.api import ApiError, ExchangeClient, ExchangeError, TransportError
from exchange.client.csvinput import CsvResult, RejectedRow, SellerReport, read_submission_file
from exchange.contract import DEFAULT_MAX_BATCH_SELLERS, Limits

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_BATCH_SIZE",
    "BatchFailure",
    "SubmitSummary",
    "batched",
    "submit_csv",
    "submit_sellers",
    "within_limits",
]

DEFAULT_BATCH_SIZE = 500
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
    """The outcome of a submission run. ``ok`` is false when any batch failed or was not attempted."""

    rows: int = 0
    sellers: int = 0
    indicators: int = 0
    duplicate_indicators: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    batches_total: int = 0
    batches_sent: int = 0
    sellers_sent: int = 0
    indicators_sent: int = 0
    sightings_created: int = 0
    submissions: list[str] = field(default_factory=list)  # the opaque references of accepted batches
    failures: list[BatchFailure] = field(default_factory=list)
    batches_skipped: int = 0
    elapsed: float = 0.0

    @classmethod
    def of(cls, result: CsvResult) -> SubmitSummary:
        """The summary of a CSV read, before anything is sent."""
        return cls(
            rows=result.rows,
            sellers=len(result.sellers),
            indicators=sum(len(seller.indicators) for seller in result.sellers),
            duplicate_indicators=result.duplicate_indicators,
            rejected=result.rejected,
        )

    @property
    def ok(self) -> bool:
        return not self.failures and not self.batches_skipped

    def format(self, *, sent: bool = True) -> str:
        """A human-readable report (no raw values, no key: safe to log). ``sent=False`` for a dry run."""
        lines = [
            f"Read {self.rows} rows: {self.sellers} sellers with {self.indicators} indicators "
            f"({self.duplicate_indicators} duplicate indicators dropped), {len(self.rejected)} rows rejected."
        ]
        if sent:
            lines.append(
                f"Sent {self.batches_sent}/{self.batches_total} batches: {self.sellers_sent} sellers, "
                f"{self.indicators_sent} indicators, {self.sightings_created} new sightings "
                f"in {self.elapsed:.1f}s."
            )
        if self.rejected:
            lines.append("Rejected rows:")
            lines.extend(f"  {row}" for row in self.rejected)
        if self.failures:
            lines.append("Failed batches:")
            lines.extend(
                f"  batch {failure.number} ({failure.sellers} sellers, Idempotency-Key {failure.idempotency_key})"
                f": {failure.error}"
                for failure in self.failures
            )
        if self.batches_skipped:
            lines.append(f"{self.batches_skipped} batches not attempted after a fatal error.")
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


def batched(sellers: Sequence[SellerReport], batch_size: int) -> Iterator[Sequence[SellerReport]]:
    """Split sellers into batches of at most ``batch_size`` (1 or more; the exchange says its maximum in
    ``ExchangeClient.limits()``)."""
    if batch_size < 1:
        raise ValueError("batch size must be 1 or more")
    for start in range(0, len(sellers), batch_size):
        yield sellers[start : start + batch_size]


def submit_sellers(
    client: ExchangeClient,
    sellers: Sequence[SellerReport],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
    summary: SubmitSummary | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SubmitSummary:
    """Submit sellers in batches, each with its own Idempotency-Key; return (or fill in) a summary.

    A batch that fails for good is recorded and the next one is tried, except after an authentication
    error (401/403) or an unreachable exchange, when the remaining batches are skipped.
    """
    summary = summary or SubmitSummary(
        sellers=len(sellers), indicators=sum(len(seller.indicators) for seller in sellers)
    )
    batches = list(batched(sellers, batch_size))
    summary.batches_total = len(batches)
    started = clock()
    for number, batch in enumerate(batches, start=1):
        key = str(uuid.uuid4())
        try:
            answer = client.submit_batch(batch, idempotency_key=key)
        except ExchangeError as exc:
            status = exc.status if isinstance(exc, ApiError) else None
            summary.failures.append(BatchFailure(number, len(batch), key, str(exc), status))
            _report(progress, f"batch {number}/{len(batches)} failed: {exc}")
            if isinstance(exc, TransportError) or status in (401, 403):
                summary.batches_skipped = len(batches) - number
                break
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
    progress: Callable[[str], None] | None = None,
) -> SubmitSummary:
    """Read, normalise and hash a submission CSV, submit it in batches and return the summary.

    Rejected rows (with line numbers and reasons) are in ``summary.rejected``; they do not stop the run.
    Raises ``CsvFormatError`` if the file cannot be read at all.
    """
    result = read_submission_file(path, default_region)
    summary = SubmitSummary.of(result)
    return submit_sellers(client, result.sellers, batch_size=batch_size, progress=progress, summary=summary)


def _report(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
