"""The risk score: documented parts that add up, and cross-platform clusters ranked first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.risk import epoch_microseconds, rank_key, risk_score, risk_scores

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


@st.composite
def cluster_counts(draw: st.DrawFn) -> dict[str, int]:
    confirmed, suspected = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    return {
        "platforms": draw(st.integers(1, 9)),
        "confirmed": confirmed,
        "suspected": suspected,
        "strong_links": draw(st.integers(0, 60)),
        "weak_links": draw(st.integers(0, 60)),
        # Whole seconds and the exact day boundaries, the halfway point that rounds to even, the future.
        "age_us": draw(
            st.one_of(
                st.integers(-(10**12), 400 * 86_400 * 10**6),
                st.sampled_from([30 * 86_400 * 10**6, 365 * 86_400 * 10**6, (197 * 24 + 12) * 3600 * 10**6]),
            )
        ),
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(cluster_counts(), min_size=1, max_size=30))
def test_risk_scores_over_arrays_equal_risk_score_per_cluster(clusters: list[dict[str, int]]) -> None:
    now_us = epoch_microseconds(NOW)
    columns = risk_scores(
        **{name: [c[name] for c in clusters] for name in ("platforms", "confirmed", "suspected")},
        strong_links=[c["strong_links"] for c in clusters],
        weak_links=[c["weak_links"] for c in clusters],
        last_reported=[now_us - c["age_us"] for c in clusters],
        now=NOW,
    )
    for n, c in enumerate(clusters):
        expected = risk_score(
            platforms=c["platforms"],
            confirmed=c["confirmed"],
            suspected=c["suspected"],
            strong_links=c["strong_links"],
            weak_links=c["weak_links"],
            last_reported=NOW - timedelta(microseconds=c["age_us"]),
            now=NOW,
        )
        got = {part: int(getattr(columns, part)[n]) for part in expected.parts}
        assert (got, int(columns.total[n])) == (expected.parts, expected.total)
