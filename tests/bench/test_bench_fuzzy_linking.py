"""The fuzzy linking bench's core at a small size (tests/bench/bench_fuzzy_linking.py): what fuzzy matching adds
to exact-only linking, and the issue-14 target it does not reach yet."""

from __future__ import annotations

import pytest

from tests.bench.bench_fuzzy_linking import Result, evaluate


@pytest.fixture(scope="module")
def result() -> Result:
    return evaluate(actors=150, background=1500, seed=7, pairwise=False)


def test_fuzzy_adds_recall_on_named_addressed_pairs_without_losing_precision(result: Result) -> None:
    exact, both = result.exact.quality["a"], result.fuzzy.quality["a"]
    assert exact.true > 100
    assert both.true_found > exact.true_found
    assert exact.recall < 0.5  # exact-only misses most pairs whose names and addresses were retyped
    assert both.precision >= 0.99


def test_the_other_pairs_keep_what_exact_only_found(result: Result) -> None:
    exact, both = result.exact.quality["b"], result.fuzzy.quality["b"]
    assert both.true_found >= exact.true_found
    assert both.precision >= exact.precision - 0.01


@pytest.mark.xfail(
    strict=True,
    reason="issue 14 target not met: names retyped with two or three corruptions fall below the Dice threshold, "
    "and an address's bigrams do not tell a neighbour's house number from a retyped one (README, 'Fuzzy "
    "linking, measured')",
)
def test_issue_14_target_recall_and_precision_on_named_addressed_pairs(result: Result) -> None:
    quality = result.fuzzy.quality["a"]
    assert quality.recall >= 0.99
    assert quality.precision >= 0.99
