"""Risk score of an actor cluster: 0-100, the sum of five documented parts (pure).

=============  ======  =====================================================================================
part           max     formula
=============  ======  =====================================================================================
platforms      35      1 platform: 0; 2 platforms: 20; +5 per further platform up to 5 platforms (35).
                       Reappearing across marketplaces is the behaviour the exchange exists to catch.
reports        25      25 x (confirmed + 0.4 x suspected) / members. Confirmed means the platform took
                       enforcement action; a suspected report counts 40% of a confirmed one.
evidence       20      20 x strong links / all links (links between member pairs in the cluster's link graph).
                       A shared bank account or phone is stronger evidence than store names and addresses.
recency        20      20 if the most recent report is at most 30 days old, falling linearly to 0 at 365 days.
opinions       +10     Partners' opinions on the cluster: +5 per platform that corroborates it (`seen_too` or
               -20     `actioned`) up to +10; -10 per platform with a standing `false_positive` (not rejected
                       by an exchange analyst) down to -20. Each platform counts once per direction however
                       many opinions it gives (one platform cannot push a score alone), and the part never
                       takes the total below 0 or above 100. `disputed` does not move the score.
=============  ======  =====================================================================================

Each part is rounded to a whole number and the total is their sum, so the admin can show the parts and they
add up (the opinions part is bounded by the other four: total = their sum plus it, within 0-100). :func:`rank_key` orders clusters highest risk first, with every cross-platform cluster (two or more
platforms) ahead of every single-platform one whatever their scores. :func:`risk_scores` is the same formula
over arrays (one entry per cluster), for recomputations that score tens of thousands of clusters at once; it
gives exactly :func:`risk_score`'s parts (tested side by side).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

PLATFORMS_MAX, REPORTS_MAX, EVIDENCE_MAX, RECENCY_MAX = 35, 25, 20, 20
CORROBORATION_STEP, CORROBORATION_MAX = 5, 10  # per corroborating platform, and at most
FALSE_POSITIVE_STEP, FALSE_POSITIVE_MAX = 10, 20  # taken off per platform's false positive, and at most
TOTAL_MAX = 100
SUSPECTED_WEIGHT = 0.4
FRESH = timedelta(days=30)
STALE = timedelta(days=365)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

IntArray = npt.NDArray[np.int64]

# The parts as analysts read them (the cluster page, referral packages): name, maximum, how it is computed.
PARTS = (
    ("platforms", PLATFORMS_MAX, "2 platforms: 20, +5 per further platform up to 5"),
    ("reports", REPORTS_MAX, "confirmed reports count fully, suspected ones 40%"),
    ("evidence", EVIDENCE_MAX, "share of links that rest on a strong indicator"),
    ("recency", RECENCY_MAX, "full within 30 days of the latest report, 0 after a year"),
    (
        "opinions",
        CORROBORATION_MAX,
        "+5 per platform that saw the actor too or acted on it (up to +10), -10 per platform whose seller is a "
        "standing false positive (down to -20)",
    ),
)


@dataclass(frozen=True, slots=True)
class RiskScore:
    total: int
    parts: dict[str, int]  # platforms, reports, evidence, recency, opinions
    platforms: int
    members: int

    @property
    def cross_platform(self) -> bool:
        return self.platforms >= 2


def risk_score(
    *,
    platforms: int,
    confirmed: int,
    suspected: int,
    strong_links: int,
    weak_links: int,
    last_reported: datetime,
    now: datetime,
    corroborating: int = 0,
    false_positives: int = 0,
) -> RiskScore:
    """Score one cluster from its counts (see the module docstring). Datetimes must be timezone-aware.
    `corroborating` and `false_positives` count platforms (their opinions), not opinions."""
    if last_reported.tzinfo is None or now.tzinfo is None:
        raise ValueError("risk_score needs timezone-aware datetimes")
    members = confirmed + suspected
    platforms_part = 0 if platforms < 2 else 20 + 5 * (min(platforms, 5) - 2)
    reports_part = REPORTS_MAX * (confirmed + SUSPECTED_WEIGHT * suspected) / members if members else 0.0
    links = strong_links + weak_links
    evidence_part = EVIDENCE_MAX * strong_links / links if links else 0.0
    age = max(now - last_reported, timedelta(0))
    if age <= FRESH:
        recency_part = float(RECENCY_MAX)
    else:
        recency_part = RECENCY_MAX * max(0.0, (STALE - age) / (STALE - FRESH))
    parts = {
        "platforms": platforms_part,
        "reports": round(reports_part),
        "evidence": round(evidence_part),
        "recency": round(recency_part),
    }
    parts["opinions"] = opinions_part(corroborating, false_positives, sum(parts.values()))
    return RiskScore(total=sum(parts.values()), parts=parts, platforms=platforms, members=members)


def opinions_part(corroborating: int, false_positives: int, others: int) -> int:
    """The opinions part, given the sum of the other four parts (`others`): see the module docstring."""
    raw = min(CORROBORATION_STEP * corroborating, CORROBORATION_MAX) - min(
        FALSE_POSITIVE_STEP * false_positives, FALSE_POSITIVE_MAX
    )
    return max(-others, min(raw, TOTAL_MAX - others))


def rank_key(score: RiskScore) -> tuple[int, int, int, int]:
    """Sort key, highest risk first: cross-platform before single-platform, then total, platforms, members."""
    return (0 if score.cross_platform else 1, -score.total, -score.platforms, -score.members)


@dataclass(frozen=True, slots=True)
class RiskColumns:
    """:func:`risk_scores`' result: per cluster, the total and each part of :class:`RiskScore`'s ``parts``."""

    total: IntArray
    platforms: IntArray
    reports: IntArray
    evidence: IntArray
    recency: IntArray
    opinions: IntArray


def epoch_microseconds(moment: datetime) -> int:
    """A timezone-aware datetime as whole microseconds since the Unix epoch (exact, like timedelta arithmetic)."""
    if moment.tzinfo is None:
        raise ValueError("epoch_microseconds needs a timezone-aware datetime")
    return (moment - EPOCH) // MICROSECOND


def risk_scores(
    *,
    platforms: npt.ArrayLike,
    confirmed: npt.ArrayLike,
    suspected: npt.ArrayLike,
    strong_links: npt.ArrayLike,
    weak_links: npt.ArrayLike,
    last_reported: npt.ArrayLike,
    now: datetime,
    corroborating: npt.ArrayLike | None = None,
    false_positives: npt.ArrayLike | None = None,
) -> RiskColumns:
    """:func:`risk_score` over arrays; ``last_reported`` in microseconds since the Unix epoch
    (:func:`epoch_microseconds`); no opinion arrays: no opinions.

    Same operations in the same order in float64: the times are whole microseconds below 2**53, so each
    division is the correctly rounded quotient that Python's int and timedelta division give, and ``np.rint``
    rounds half to even like ``round``.
    """
    platforms_ = np.asarray(platforms, dtype=np.int64)
    confirmed_ = np.asarray(confirmed, dtype=np.int64)
    suspected_ = np.asarray(suspected, dtype=np.int64)
    strong_ = np.asarray(strong_links, dtype=np.int64)
    links = strong_ + np.asarray(weak_links, dtype=np.int64)
    members = confirmed_ + suspected_
    platforms_part = np.where(platforms_ < 2, 0, 20 + 5 * (np.minimum(platforms_, 5) - 2))
    reports = REPORTS_MAX * (confirmed_ + SUSPECTED_WEIGHT * suspected_)
    reports_part = np.divide(reports, members, out=np.zeros(members.shape), where=members > 0)
    evidence_part = np.divide(EVIDENCE_MAX * strong_, links, out=np.zeros(links.shape), where=links > 0)
    age = np.maximum(epoch_microseconds(now) - np.asarray(last_reported, dtype=np.int64), 0)
    fresh, stale = FRESH // MICROSECOND, STALE // MICROSECOND
    fading = RECENCY_MAX * np.maximum(0.0, (stale - age) / (stale - fresh))
    recency_part = np.where(age <= fresh, float(RECENCY_MAX), fading)
    parts = [
        platforms_part.astype(np.int64),
        np.rint(reports_part).astype(np.int64),
        np.rint(evidence_part).astype(np.int64),
        np.rint(recency_part).astype(np.int64),
    ]
    others = parts[0] + parts[1] + parts[2] + parts[3]
    zeros = np.zeros(others.shape, dtype=np.int64)
    up = zeros if corroborating is None else np.asarray(corroborating, dtype=np.int64)
    down = zeros if false_positives is None else np.asarray(false_positives, dtype=np.int64)
    raw = np.minimum(CORROBORATION_STEP * up, CORROBORATION_MAX) - np.minimum(
        FALSE_POSITIVE_STEP * down, FALSE_POSITIVE_MAX
    )
    opinions = np.maximum(-others, np.minimum(raw, TOTAL_MAX - others))
    return RiskColumns(others + opinions, parts[0], parts[1], parts[2], parts[3], opinions)
