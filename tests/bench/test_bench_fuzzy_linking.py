"""The fuzzy linking bench's core at a small size (tests/bench/bench_fuzzy_linking.py): what fuzzy matching adds
to exact-only linking, and the issue-14 target it does not reach yet."""

from __future__ import annotations

import pytest

from tests.bench.bench_fuzzy_linking import Result, evaluate, split_of


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


def test_direct_matches_link_true_pairs_whose_names_fell_in_different_groups(result: Result) -> None:
    """A direct match (exchange.matching.direct_matches) is evidence beside the groups, as in the store: some
    true (a) pairs are found though their names are in different groups, through the direct match."""
    names, labels = result.groups["person_name"], result.fuzzy_labels
    direct = set(names.direct)
    through_direct = [
        (i, j)
        for i, j in result.truth
        if split_of(result.records[i], result.records[j]) == "a"
        and labels[i] != -1
        and labels[i] == labels[j]
        and names.labels.get(i, -1) != names.labels.get(j, -2)
        and ((i, j) in direct or (j, i) in direct)
    ]
    assert through_direct


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
