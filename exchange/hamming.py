"""Near 256-bit hashes through a ``KeyIndex``, probed and scored in one compiled pass (numba; no Django).

A photo submission's search is millions of candidate pairs of hashes: every stored hash sharing a probe key (a
16-bit chunk within one bit, exchange.matching.ImageMatcher) with a new one. Done in numpy, each candidate is
written out as an int64 code, split, gathered and scored in separate passes over arrays of tens of millions
(about 75 ns a candidate); most are far apart and dropped at the end. ``hamming_pairs`` walks the same
candidates in one compiled loop instead: for each probe key, its run of positions in the index (the dense
counts and offsets of the base, a binary search of the sorted tail), and for each position the distance of the
two hashes, the first 128 bits first, keeping only the pairs within the threshold. The candidates are never
stored. The probes go in key order (so that probes of one key read the same stored hashes from cache), and a
large batch in parts, one per core (the loop releases the GIL). Its result is the numpy path's, pair for pair
(tests/exchange/test_hamming.py).

numba compiles the loop on first use in a process (a few seconds) and caches the machine code beside this
module, or, where that folder is read-only, in ``NUMBA_CACHE_DIR`` (by default a folder in the temporary
directory). ``warm_up()`` loads or compiles it ahead, e.g. while a gunicorn worker warms its indexes.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from exchange.key_index import KeyIndex

# numba caches beside this module, else under the user's home; a container's unprivileged user may have neither
# writable (the Dockerfile's does not), and numba then refuses to cache at all: a folder under the temporary
# directory instead, unless the operator chose one. Read when numba is imported, so set before.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(os.path.dirname(os.path.abspath(__file__)), os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "numba-cache")

from numba import njit  # after the cache folder is chosen

__all__ = ["hamming_pairs", "warm_up"]

_THREADS = max(1, min(4, os.cpu_count() or 1))
_PART = 1_000_000  # probe keys per part: parts of a large submission run on all cores

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, nogil=True, inline="always")
def _popcount(x: np.uint64) -> int:  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _scan(
    codes: np.ndarray,
    base_keys: np.ndarray,
    counts: np.ndarray,
    offsets: np.ndarray,
    base_positions: np.ndarray,
    tail_keys: np.ndarray,
    tail_positions: np.ndarray,
    mine: np.ndarray,
    theirs: np.ndarray,
    threshold: int,
) -> tuple[np.ndarray, np.ndarray, int]:  # pragma: no cover - compiled
    capacity = 4096
    out_i = np.empty(capacity, dtype=np.int64)
    out_j = np.empty(capacity, dtype=np.int64)
    found = 0
    dense = counts.shape[0] > 0
    for p in range(codes.shape[0]):
        r = codes[p] & 0xFFFF_FFFF
        key = codes[p] >> 32
        a0, a1, a2, a3 = mine[r, 0], mine[r, 1], mine[r, 2], mine[r, 3]
        for part in range(2):
            if part == 0:
                if dense:
                    if key < 0 or key >= counts.shape[0]:
                        continue
                    start = offsets[key]
                    stop = start + counts[key]
                else:
                    start = np.searchsorted(base_keys, key, side="left")
                    stop = np.searchsorted(base_keys, key, side="right")
                positions = base_positions
            else:
                if tail_keys.shape[0] == 0:
                    continue
                start = np.searchsorted(tail_keys, key, side="left")
                stop = np.searchsorted(tail_keys, key, side="right")
                positions = tail_positions
            for at in range(start, stop):
                j = positions[at]
                d = _popcount(a0 ^ theirs[j, 0]) + _popcount(a1 ^ theirs[j, 1])
                if d > threshold:
                    continue
                d += _popcount(a2 ^ theirs[j, 2]) + _popcount(a3 ^ theirs[j, 3])
                if d > threshold:
                    continue
                if found == capacity:
                    capacity *= 2
                    grown_i = np.empty(capacity, dtype=np.int64)
                    grown_j = np.empty(capacity, dtype=np.int64)
                    grown_i[:found] = out_i[:found]
                    grown_j[:found] = out_j[:found]
                    out_i, out_j = grown_i, grown_j
                out_i[found] = r
                out_j[found] = j
                found += 1
    return out_i, out_j, found


def _words(units: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 hashes as (n, 4) native uint64 words (the popcount of their XOR is the same either way),
    read-only whatever they were: numba compiles one loop per kind of array, and units come both ways."""
    words = np.ascontiguousarray(units, dtype=np.uint8).view(np.uint64).reshape(len(units), 4)
    words.flags.writeable = False
    return words


def hamming_pairs(
    index_arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    rows: npt.ArrayLike,
    keys: npt.ArrayLike,
    mine: np.ndarray,
    theirs: np.ndarray,
    threshold: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(my unit, their unit) of every candidate pair within ``threshold`` bits: the probe keys ``keys[k]`` of
    my units ``rows[k]`` against the index (``KeyIndex.probe_arrays()``: it holds their units' positions), my
    units ``mine`` and theirs ``theirs`` as (n, 32) uint8 rows. A pair sharing several keys repeats, as in
    ``KeyIndex.codes``."""
    # Probed in key order, as key << 32 | row codes (rows below 2**32; the loop splits them): probes of one key
    # read one run of positions and the same stored hashes one after another, from cache, where probes in the
    # callers' order read them from memory each time (a submission's 26 million probe keys against 1.9 million
    # stored hashes: 1.8 s in key order, 6.5 s in the callers').
    codes = np.sort((np.asarray(keys).astype(np.int64) << 32) | np.asarray(rows).astype(np.int64))
    words = _words(mine), _words(theirs)
    parts = [(start, min(len(codes), start + _PART)) for start in range(0, len(codes), _PART)] or [(0, 0)]

    def scan(part: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        start, stop = part
        out_i, out_j, found = _scan(codes[start:stop], *index_arrays, *words, int(threshold))
        return out_i[:found], out_j[:found]

    if len(parts) == 1:
        return scan(parts[0])
    with ThreadPoolExecutor(_THREADS) as pool:  # the loop runs without the GIL: one part per core
        found = list(pool.map(scan, parts))
    return np.concatenate([i for i, _ in found]), np.concatenate([j for _, j in found])


def warm_up() -> None:
    """Compile (or load from numba's cache) the loop for the index's types, before the first request."""
    index = KeyIndex(np.int32, key_space=4)
    index.add(np.arange(2), np.array([1, 2]))
    index.add(np.arange(2, 3), np.array([1]))  # a tail too
    units = np.zeros((3, 32), dtype=np.uint8)
    hamming_pairs(index.probe_arrays(), np.zeros(2, np.int32), np.array([1, 3], np.int32), units, units, 31)
