"""Risk score of an actor cluster: 0-100, the sum of four documented parts (pure).

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
=============  ======  =====================================================================================

Each part is rounded to a whole number and the total is their sum, so the admin can show the parts and they
add up. :func:`rank_key` orders clusters highest risk first, with every cross-platform cluster (two or more
platforms) ahead of every single-platform one whatever their scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PLATFORMS_MAX, REPORTS_MAX, EVIDENCE_MAX, RECENCY_MAX = 35, 25, 20, 20
SUSPECTED_WEIGHT = 0.4
FRESH = timedelta(days=30)
STALE = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class RiskScore:
    total: int
    parts: dict[str, int]  # platforms, reports, evidence, recency
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
) -> RiskScore:
    """Score one cluster from its counts (see the module docstring). Datetimes must be timezone-aware."""
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
    return RiskScore(total=sum(parts.values()), parts=parts, platforms=platforms, members=members)


def rank_key(score: RiskScore) -> tuple[int, int, int, int]:
    """Sort key, highest risk first: cross-platform before single-platform, then total, platforms, members."""
    return (0 if score.cross_platform else 1, -score.total, -score.platforms, -score.members)
