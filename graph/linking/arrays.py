"""Integer-column helpers of the column core: array types, dense re-coding of ids, sort-based distinct values,
vectorised ranges and sorted-id look-ups (numpy only)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = Sequence[int] | npt.NDArray[np.integer]


def _as_int_array(values: ArrayLike | Iterable[int]) -> IntArray:
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False)
    if isinstance(values, Sequence):
        return np.asarray(values, dtype=np.int64)
    return np.fromiter(values, dtype=np.int64)


def _densify(values: IntArray) -> tuple[IntArray, IntArray]:
    """Map ids to 0..n-1 preserving order; return (codes, ids) with ``ids[codes] == values``."""
    if values.size == 0:
        return values, values
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < 4 * values.size + 1024:  # database ids are compact: avoid a sort
        present = np.zeros(hi - lo + 1, dtype=np.bool_)
        present[values - lo] = True
        remap = np.cumsum(present, dtype=np.int64) - 1
        return remap[values - lo], np.flatnonzero(present).astype(np.int64) + lo
    ids, codes = distinct_inverse(values)
    return codes, ids


def _on_several_rows(values: IntArray) -> BoolArray:
    """Mask of the rows whose value occurs on at least two rows."""
    if values.size == 0:
        return np.zeros(0, dtype=np.bool_)
    lo = int(values.min())
    if int(values.max()) - lo < 4 * values.size + 1024:  # compact ids: count directly, no sort
        offset = values - lo
        return np.bincount(offset)[offset] >= 2
    codes, ids = _densify(values)
    return np.bincount(codes, minlength=ids.size)[codes] >= 2


def _run_starts(ordered: IntArray) -> BoolArray:
    """Mask of the rows of an ascending column where a new value starts."""
    is_new = np.ones(ordered.size, dtype=np.bool_)
    is_new[1:] = ordered[1:] != ordered[:-1]
    return is_new


def distinct(values: IntArray) -> IntArray:
    """Sorted distinct values (sort-based: numpy 2's hash-based ``np.unique``, and ``union1d``/``setdiff1d``
    built on it, are 10-25x slower on hundreds of thousands of ids)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    return ordered[_run_starts(ordered)]


def distinct_inverse(values: IntArray) -> tuple[IntArray, IntArray]:
    """``np.unique(values, return_inverse=True)``, sort-based: (sorted distinct values, each value's index in
    them)."""
    if values.size == 0:
        return values[:0], np.zeros(0, dtype=np.int64)
    order = np.argsort(values)
    ordered = values[order]
    is_new = _run_starts(ordered)
    inverse = np.empty(values.size, dtype=np.int64)
    inverse[order] = np.cumsum(is_new) - 1
    return ordered[is_new], inverse


def distinct_first(values: IntArray) -> tuple[IntArray, IntArray]:
    """``np.unique(values, return_index=True)``, sort-based: (sorted distinct values, the row of each one's
    first occurrence)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    is_new = _run_starts(ordered)
    return ordered[is_new], order[is_new].astype(np.int64)


def isin(values: IntArray, test: IntArray | Iterable[int], *, test_sorted: bool = False) -> BoolArray:
    """``np.isin(values, test)``, sort-based (a binary search of each value in the sorted test values).
    ``test_sorted``: ``test`` already ascends (duplicates allowed), skip its sort."""
    wanted = _as_int_array(test)
    if not test_sorted:
        wanted = distinct(wanted)
    if wanted.size == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=np.bool_)
    at = np.searchsorted(wanted, values).clip(max=wanted.size - 1)
    return np.asarray(wanted[at] == values, dtype=np.bool_)


def _ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """Concatenate ``arange(s, e)`` for every pair, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _lookup(sorted_ids: IntArray, wanted: IntArray) -> IntArray:
    """Positions of the ``wanted`` ids that occur in ``sorted_ids`` (others are left out)."""
    if sorted_ids.size == 0 or wanted.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, wanted)
    clipped = np.minimum(pos, sorted_ids.size - 1)
    return clipped[sorted_ids[clipped] == wanted].astype(np.int64)


def _id_array(ids: Iterable[int]) -> IntArray:
    """Sorted distinct ids (an array as it is: `list()` of hundreds of thousands of numpy scalars was slow)."""
    return distinct(_as_int_array(ids if isinstance(ids, np.ndarray) else list(ids)))


def _find(sorted_ids: IntArray, wanted: IntArray) -> tuple[IntArray, BoolArray]:
    """Positions of ``wanted`` in ``sorted_ids`` and a mask of which were found."""
    if sorted_ids.size == 0:
        return np.zeros(wanted.size, dtype=np.int64), np.zeros(wanted.size, dtype=np.bool_)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), sorted_ids.size - 1).astype(np.int64)
    return pos, sorted_ids[pos] == wanted
