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


@pytest.mark.parametrize(
    ("corroborating", "false_positives", "expected"),
    [
        (0, 0, 0),
        (1, 0, 5),
        (2, 0, 10),
        (7, 0, 10),  # at most +10 however many platforms corroborate
        (0, 1, -10),
        (0, 5, -20),  # at most -20
        (2, 1, 0),
        (1, 2, -15),
    ],
)
def test_opinions_part(corroborating: int, false_positives: int, expected: int) -> None:
    # 20 + 25 + 20 + 20 = 85 from the other parts: room either way.
    parts = score(corroborating=corroborating, false_positives=false_positives)
    assert parts["opinions"] == expected


def test_opinions_never_take_the_total_outside_0_to_100() -> None:
    top = risk_score(
        platforms=7,
        confirmed=3,
        suspected=0,
        strong_links=4,
        weak_links=0,
        last_reported=NOW,
        now=NOW,
        corroborating=2,
    )
    assert (top.total, top.parts["opinions"]) == (100, 0)
    almost = risk_score(
        platforms=4,
        confirmed=3,
        suspected=0,
        strong_links=4,
        weak_links=0,
        last_reported=NOW,
        now=NOW,
        corroborating=2,
    )
    assert (almost.total, almost.parts["opinions"]) == (100, 5)  # 95 + 5, not + 10
    low = risk_score(
        platforms=1,
        confirmed=0,
        suspected=1,
        strong_links=0,
        weak_links=1,
        last_reported=NOW - timedelta(days=900),
        now=NOW,
        false_positives=3,
    )
    assert (low.total, low.parts["opinions"]) == (0, -10)  # 10 from reports, and no lower than 0
    assert low.total == sum(low.parts.values())


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
        "corroborating": draw(st.integers(0, 5)),
        "false_positives": draw(st.integers(0, 5)),
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
        corroborating=[c["corroborating"] for c in clusters],
        false_positives=[c["false_positives"] for c in clusters],
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
            corroborating=c["corroborating"],
            false_positives=c["false_positives"],
        )
        got = {part: int(getattr(columns, part)[n]) for part in expected.parts}
        assert (got, int(columns.total[n])) == (expected.parts, expected.total)
