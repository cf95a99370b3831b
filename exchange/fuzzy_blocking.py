"""Blocking and scoring of fuzzy encodings (``exchange.fuzzy``) without comparing all pairs.

Pure numpy, no Django. Comparing every new encoding with every stored one is quadratic: 1,000 new sellers
against a million stored encodings would be a billion Dice computations. Blocking first proposes candidate
pairs, then only those are scored.

The scheme is locality-sensitive hashing for Hamming distance by bit sampling (Indyk and Motwani 1998; the
"Hamming LSH" blocking of Karapiperis and Verykios 2015 for Bloom-filter encodings): ``HammingLSH`` fixes
``bands`` groups of ``rows`` bit positions each, drawn once from a public seed (they need not be secret: the
positions of a keyed encoding say nothing without the key). Two encodings are a candidate pair when they agree
on all ``rows`` sampled bits of at least one band. Two encodings that agree on a fraction ``s`` of their bits
become candidates with probability ``1 - (1 - s ** rows) ** bands``: close to 1 for a true pair (a typo moves
a few dozen of the 1,024 bits, ``s`` about 0.9), small for unrelated values (``s`` about 0.6-0.7).

``fuzzy_pairs(new, stored, threshold)`` blocks, scores the candidates with Dice and keeps those at or above
the threshold. ``BlockingIndex`` holds the stored side sorted per band, so that it is built once and queried
with many batches; a query costs a binary search per band plus the scoring of its candidates.

Parameters: ``LSH_BY_KIND`` (``DEFAULT_LSH``, ``DEFAULT_BANDS`` x ``DEFAULT_ROWS``, for names; ``ADDRESS_LSH``
for addresses) are tuned on fixtures/corruption.py so that
the blocking keeps >= 99% of the pairs an all-pairs comparison would keep at the starting thresholds
(tests/exchange/test_fuzzy_blocking.py; the benchmark tests/bench/bench_fuzzy_blocking.py prints the
recall and candidate counts beside the time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from exchange.fuzzy import FILTER_BITS, FILTER_BYTES

__all__ = [
    "ADDRESS_BANDS",
    "ADDRESS_LSH",
    "ADDRESS_ROWS",
    "DEFAULT_BANDS",
    "DEFAULT_LSH",
    "DEFAULT_ROWS",
    "LSH_BY_KIND",
    "LSH_SEED",
    "BlockingIndex",
    "HammingLSH",
    "candidate_pairs",
    "dice_pairs",
    "fuzzy_pairs",
    "to_matrix",
]

DEFAULT_BANDS = 100
DEFAULT_ROWS = 22
LSH_SEED = 20261202
# Addresses keep more of their bits under corruption than names (fewer, longer words), so fewer and wider
# bands keep the same recall with a third of the candidates.
ADDRESS_BANDS = 48
ADDRESS_ROWS = 24

_CHUNK = 16_384  # rows unpacked at a time when computing band keys (bounded memory at a million rows)
_SCORE_CHUNK = 262_144  # candidate pairs scored at a time


@dataclass(frozen=True)
class HammingLSH:
    """``bands`` x ``rows`` sampled bit positions (``rows`` <= 64), drawn without replacement per band."""

    bands: int = DEFAULT_BANDS
    rows: int = DEFAULT_ROWS
    seed: int = LSH_SEED
    positions: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.rows <= 64 or self.bands < 1:
            raise ValueError("rows must be 1..64 and bands at least 1")
        rng = np.random.default_rng(self.seed)
        positions = np.stack(
            [rng.choice(FILTER_BITS, size=self.rows, replace=False) for _ in range(self.bands)]
        )
        object.__setattr__(self, "positions", positions)

    def keys(self, matrix: np.ndarray) -> np.ndarray:
        """The band keys of every row of ``matrix``: shape (bands, n), uint32 (rows <= 32) or uint64."""
        n = matrix.shape[0]
        width = 32 if self.rows <= 32 else 64
        out = np.empty((self.bands, n), dtype=np.uint32 if width == 32 else np.uint64)
        dtype = out.dtype.type
        flat = self.positions.ravel()
        for start in range(0, n, _CHUNK):
            bits = np.unpackbits(matrix[start : start + _CHUNK], axis=1)[:, flat]
            packed = np.packbits(bits.reshape(-1, self.bands, self.rows), axis=2)  # (chunk, bands, bytes)
            key = np.zeros(packed.shape[:2], dtype=dtype)
            for byte in range(packed.shape[2]):
                key = (key << dtype(8)) | packed[:, :, byte].astype(dtype)
            out[:, start : start + _CHUNK] = key.T
        return out


DEFAULT_LSH = HammingLSH()
ADDRESS_LSH = HammingLSH(ADDRESS_BANDS, ADDRESS_ROWS)
LSH_BY_KIND: dict[str, HammingLSH] = {
    "person_name": DEFAULT_LSH,
    "business_name": DEFAULT_LSH,
    "shipping_address": ADDRESS_LSH,
    "return_address": ADDRESS_LSH,
}


def to_matrix(encodings: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """Encodings as an (n, FILTER_BYTES) uint8 array (a numpy array of that shape is returned as it is)."""
    if isinstance(encodings, np.ndarray):
        if encodings.ndim != 2 or encodings.shape[1] != FILTER_BYTES or encodings.dtype != np.uint8:
            raise ValueError(f"expected an (n, {FILTER_BYTES}) uint8 array")
        return encodings
    if any(len(e) != FILTER_BYTES for e in encodings):
        raise ValueError(f"every encoding has {FILTER_BYTES} bytes")
    if not encodings:
        return np.zeros((0, FILTER_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(encodings), dtype=np.uint8).reshape(-1, FILTER_BYTES)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(axis=1, dtype=np.int64)


class BlockingIndex:
    """The stored encodings, with each band's keys sorted for binary search."""

    def __init__(self, stored: Sequence[bytes] | np.ndarray, lsh: HammingLSH = DEFAULT_LSH) -> None:
        self.lsh = lsh
        self.matrix = to_matrix(stored)
        self.words = self.matrix.view(np.uint64)
        self.counts = _popcount_rows(self.words)
        keys = lsh.keys(self.matrix)
        order = np.argsort(keys, axis=1, kind="stable")
        self.sorted_keys = np.take_along_axis(keys, order, axis=1)
        # int32 row numbers halve the index's memory at a million rows
        self.order = order.astype(np.int32 if len(self) < 2**31 else np.int64)

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def candidates(self, new: Sequence[bytes] | np.ndarray) -> np.ndarray:
        """Unique (new row, stored row) pairs sharing at least one band key: shape (m, 2), int64, sorted."""
        matrix = to_matrix(new)
        n_new, n_stored = matrix.shape[0], len(self)
        if n_new == 0 or n_stored == 0:
            return np.zeros((0, 2), dtype=np.int64)
        new_keys = self.lsh.keys(matrix)
        found = []
        for band in range(self.lsh.bands):
            row = self.sorted_keys[band]
            lo = np.searchsorted(row, new_keys[band], side="left")
            hi = np.searchsorted(row, new_keys[band], side="right")
            sizes = hi - lo
            total = int(sizes.sum())
            if not total:
                continue
            left = np.repeat(np.arange(n_new, dtype=np.int64), sizes)
            offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            right = self.order[band][np.repeat(lo, sizes) + offsets].astype(np.int64)
            found.append(left * n_stored + right)
        if not found:
            return np.zeros((0, 2), dtype=np.int64)
        flat = np.sort(np.concatenate(found))  # sort and drop repeats: faster here than np.unique's hashing
        flat = flat[np.concatenate(([True], flat[1:] != flat[:-1]))]
        return np.stack([flat // n_stored, flat % n_stored], axis=1)

    def score(self, new: Sequence[bytes] | np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Dice similarity of each (new row, stored row) pair."""
        return dice_pairs(to_matrix(new), self.matrix, pairs, right_counts=self.counts)

    def query(self, new: Sequence[bytes] | np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
        """(new row, stored row, dice) of the candidates with dice >= threshold, by new row then stored row."""
        matrix = to_matrix(new)
        pairs = self.candidates(matrix)
        scores = self.score(matrix, pairs)
        keep = scores >= threshold
        return [
            (int(i), int(j), float(s))
            for (i, j), s in zip(pairs[keep].tolist(), scores[keep].tolist(), strict=True)
        ]


def dice_pairs(
    left: np.ndarray, right: np.ndarray, pairs: np.ndarray, *, right_counts: np.ndarray | None = None
) -> np.ndarray:
    """Dice similarity of ``left[i]`` and ``right[j]`` for each (i, j) in ``pairs`` (0.0 for two empty rows)."""
    left_words, right_words = left.view(np.uint64), right.view(np.uint64)
    left_counts = _popcount_rows(left_words)
    if right_counts is None:
        right_counts = _popcount_rows(right_words)
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), _SCORE_CHUNK):
        i, j = pairs[start : start + _SCORE_CHUNK, 0], pairs[start : start + _SCORE_CHUNK, 1]
        common = _popcount_rows(left_words[i] & right_words[j])
        total = left_counts[i] + right_counts[j]
        out[start : start + len(i)] = np.divide(2 * common, total, out=np.zeros(len(i)), where=total > 0)
    return out


def candidate_pairs(
    new: Sequence[bytes] | np.ndarray, stored: Sequence[bytes] | np.ndarray, lsh: HammingLSH = DEFAULT_LSH
) -> np.ndarray:
    """The blocking's candidate (new row, stored row) pairs; see ``BlockingIndex.candidates``."""
    return BlockingIndex(stored, lsh).candidates(new)


def fuzzy_pairs(
    new: Sequence[bytes] | np.ndarray,
    stored: Sequence[bytes] | np.ndarray,
    threshold: float,
    lsh: HammingLSH = DEFAULT_LSH,
) -> list[tuple[int, int, float]]:
    """(new row, stored row, dice) for the blocked candidates whose Dice similarity is >= ``threshold``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be between 0 and 1")
    return BlockingIndex(stored, lsh).query(new, threshold)
