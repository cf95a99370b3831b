"""The sort-based set helpers of the column core equal numpy's own (hash-based in numpy 2) on random ids with
duplicates, negatives, empties and large values."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.linking import distinct, distinct_first, distinct_inverse, isin

ids = st.lists(st.one_of(st.integers(-5, 20), st.integers(-(2**62), 2**62)), max_size=60).map(
    lambda values: np.array(values, dtype=np.int64)
)


@settings(max_examples=300, deadline=None)
@given(ids, ids)
def test_sort_based_set_helpers_equal_numpys(values: np.ndarray, test: np.ndarray) -> None:
    assert np.array_equal(distinct(values), np.unique(values))
    got, inverse = distinct_inverse(values)
    want, want_inverse = np.unique(values, return_inverse=True)
    assert np.array_equal(got, want) and np.array_equal(inverse, want_inverse)
    assert inverse.dtype == np.int64
    got, first = distinct_first(values)
    want, want_first = np.unique(values, return_index=True)
    assert np.array_equal(got, want) and np.array_equal(first, want_first)
    assert np.array_equal(isin(values, test), np.isin(values, test))
    assert np.array_equal(isin(values, np.sort(test), test_sorted=True), np.isin(values, test))
    assert np.array_equal(isin(values, test.tolist()), np.isin(values, test))
    assert isin(values, test).dtype == np.bool_ and isin(values, test).shape == values.shape
