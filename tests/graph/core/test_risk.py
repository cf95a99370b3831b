"""The risk score: documented parts that add up, and cross-platform clusters ranked first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graph.risk import rank_key, risk_score

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def score(**overrides: object) -> dict[str, int]:
    arguments: dict = {
        "platforms": 2,
        "confirmed": 2,
        "suspected": 0,
        "strong_links": 1,
        "weak_links": 0,
        "last_reported": NOW,
        "now": NOW,
    }
    return risk_score(**{**arguments, **overrides}).parts


@pytest.mark.parametrize(
    ("overrides", "part", "expected"),
    [
        ({"platforms": 1}, "platforms", 0),
        ({"platforms": 2}, "platforms", 20),
        ({"platforms": 3}, "platforms", 25),
        ({"platforms": 9}, "platforms", 35),
        ({"confirmed": 2, "suspected": 0}, "reports", 25),
        ({"confirmed": 0, "suspected": 2}, "reports", 10),
        ({"confirmed": 1, "suspected": 1}, "reports", 18),
        ({"strong_links": 1, "weak_links": 1}, "evidence", 10),
        ({"strong_links": 0, "weak_links": 3}, "evidence", 0),
        ({"last_reported": NOW - timedelta(days=30)}, "recency", 20),
        ({"last_reported": NOW - timedelta(days=365)}, "recency", 0),
        ({"last_reported": NOW - timedelta(days=197, hours=12)}, "recency", 10),
    ],
)
def test_parts(overrides: dict[str, object], part: str, expected: int) -> None:
    assert score(**overrides)[part] == expected


def test_total_is_the_sum_of_the_parts_and_at_most_100() -> None:
    result = risk_score(
        platforms=7, confirmed=3, suspected=0, strong_links=4, weak_links=0, last_reported=NOW, now=NOW
    )
    assert result.total == sum(result.parts.values()) == 100


def test_cross_platform_always_outranks_single_platform() -> None:
    weak_cross = risk_score(
        platforms=2,
        confirmed=0,
        suspected=2,
        strong_links=0,
        weak_links=1,
        last_reported=NOW - timedelta(days=900),
        now=NOW,
    )
    strong_single = risk_score(
        platforms=1, confirmed=9, suspected=0, strong_links=9, weak_links=0, last_reported=NOW, now=NOW
    )
    assert weak_cross.total < strong_single.total
    assert sorted([strong_single, weak_cross], key=rank_key) == [weak_cross, strong_single]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        score(now=datetime(2025, 6, 1))
