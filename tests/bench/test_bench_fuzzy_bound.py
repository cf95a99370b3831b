"""The bound of tests/bench/bench_fuzzy_bound.py: its arithmetic on pairs made by hand, and its core on a small
population (the script's full size takes 30 s)."""

import numpy as np

from fixtures.linkage import population
from tests.bench.bench_fuzzy_bound import best_rectangle, dominated, split_a_pairs, true_split_a


def test_a_true_pair_is_dominated_by_the_false_pairs_at_least_as_high_on_both_scores() -> None:
    names = np.array([0.9, 0.6, 0.95, 0.5, 0.7, 0.9])
    addresses = np.array([0.9, 0.95, 0.8, 0.99, 0.9, 0.9])
    truth = np.array([True, True, False, False, False, False])
    # (0.9, 0.9): the false (0.9, 0.9) ties on both; (0.6, 0.95): only (0.5, 0.99) is higher on one, lower on
    # the other, so none.
    assert dominated(names, addresses, truth).tolist() == [1, 0]
    # One false pair allowed: name >= 0.6 and address above 0.9 finds the second only; name >= 0.9 and address
    # above 0.8 finds the first, with the false pair that ties it. Either finds one; four allowed find both.
    found, x, y = best_rectangle(names, addresses, truth, 1)
    assert found == 1 and 0 <= x <= 1 and 0 <= y <= 1
    assert best_rectangle(names, addresses, truth, 4)[0] == 2


def test_the_bound_scores_every_split_a_true_pair_of_a_small_population() -> None:
    records = population(40, 200, 1)
    names, addresses, truth = split_a_pairs(records, plain=False)
    expected = true_split_a(records)
    assert expected > 10 and int(truth.sum()) >= 0.9 * expected  # the filter keeps the true pairs' scores
    assert ((names >= 0.3) & (names <= 1) & (addresses >= 0.5) & (addresses <= 1)).all()
    counts = dominated(names, addresses, truth)
    assert len(counts) == truth.sum() and (counts >= 0).all()
    assert best_rectangle(names, addresses, truth, 9)[0] <= truth.sum()
