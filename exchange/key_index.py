"""An in-memory inverted index of integer keys, probed many keys at a time (pure numpy; no Django).

The similarity kinds find a new item's candidates through integer keys (exchange.matching: a photo's 16-bit
chunks, a document's LSH bands, a name's sampled bits): the stored items sharing a key with one of the new
item's probe keys. ``KeyIndex`` holds (key, position) pairs, positions being whatever the caller numbers its
items by, as a sorted *base* (binary search) and an unsorted *tail* of recent additions (a vectorised
membership test), merged into the base when the tail grows past a fraction of it, so that adding a batch never
re-sorts millions of keys. ``pairs(rows, keys)`` answers a whole batch of probes at once: the unique
(probe row, position) pairs sharing a key.

When the keys are small non-negative integers (``key_space``: a photo's chunk keys are below 2**21), the base
also keeps, per possible key, how many positions it has and where its run starts (dense counts and offsets
tables), so that a probe is one array read (most probe keys index nothing) or two, instead of two binary
searches over millions of keys.

Memory: a key is stored in ``key_dtype`` (int32 when the caller's keys fit, as a photo's chunk keys do) and a
position in int32: 8 bytes per key for photos (16 keys per hash, so 1.3 GB at 10 million hashes; the counts
and offsets tables are 24 MB), 12 otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["KeyIndex", "split"]

IntArray = npt.NDArray[np.int64]

_TAIL_MINIMUM = 65_536  # the tail is merged into the base past max(this, base / _TAIL_FRACTION) keys
_TAIL_FRACTION = 8


class KeyIndex:
    def __init__(self, key_dtype: npt.DTypeLike = np.int64, key_space: int | None = None) -> None:
        self.key_dtype = np.dtype(key_dtype)
        self.key_space = key_space  # keys are in [0, key_space): offsets per key instead of binary search
        self._base_keys = np.zeros(0, dtype=self.key_dtype)
        self._base_positions = np.zeros(0, dtype=np.int32)
        self._offsets: np.ndarray | None = None
        self._counts: np.ndarray | None = None  # with the offsets: per key, how many positions it has
        self._tail_keys: list[np.ndarray] = []
        self._tail_positions: list[np.ndarray] = []
        self._tail_sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._tail_size = 0

    def __len__(self) -> int:
        return int(self._base_keys.size) + self._tail_size

    def nbytes(self) -> int:
        """Bytes held by the index's arrays."""
        tail = sum(k.nbytes + p.nbytes for k, p in zip(self._tail_keys, self._tail_positions, strict=True))
        offsets = (
            0 if self._offsets is None or self._counts is None else self._offsets.nbytes + self._counts.nbytes
        )
        return int(self._base_keys.nbytes + self._base_positions.nbytes + offsets + tail)

    def add(self, positions: npt.ArrayLike, keys: npt.ArrayLike) -> None:
        """Index each ``positions[i]`` under ``keys[i]`` (parallel arrays; positions below 2**31)."""
        pos = np.asarray(positions, dtype=np.int64)
        key = np.asarray(keys, dtype=np.int64)
        if pos.shape != key.shape:
            raise ValueError("positions and keys are parallel arrays")
        if not pos.size:
            return
        low, high = self._bounds()
        if key.min() < low or key.max() > high:
            raise ValueError(f"a key does not fit in {self.key_dtype} (or the key space)")
        self._tail_keys.append(key.astype(self.key_dtype))
        self._tail_positions.append(pos.astype(np.int32))
        self._tail_size += int(key.size)
        self._tail_sorted = None
        if self._tail_size > max(_TAIL_MINIMUM, self._base_keys.size // _TAIL_FRACTION):
            self.compact()

    def _bounds(self) -> tuple[int, int]:
        info = np.iinfo(self.key_dtype)
        if self.key_space is not None:
            return 0, min(int(info.max), self.key_space - 1)
        return int(info.min), int(info.max)

    def compact(self) -> None:
        """Merge the tail into the sorted base."""
        if not self._tail_size:
            return
        keys = np.concatenate(self._tail_keys)
        positions = np.concatenate(self._tail_positions)
        if self._base_keys.size and self.key_dtype.itemsize <= 4:
            # The base is sorted already: sort the tail alone and merge the two (linear, where sorting the whole
            # again was n log n: 0.05 against 0.06-0.21 s at 3.8 million keys, and ever more as the store grows).
            self._base_keys, self._base_positions = _split_codes(
                _merged(_codes(self._base_keys, self._base_positions), np.sort(_codes(keys, positions))),
                self.key_dtype,
            )
        else:
            self._base_keys, self._base_positions = _by_key(
                np.concatenate([self._base_keys, keys]), np.concatenate([self._base_positions, positions])
            )
        if self.key_space is not None:
            counts = np.bincount(self._base_keys, minlength=self.key_space)
            self._offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
            self._counts = counts.astype(np.int32)
        self._tail_keys, self._tail_positions, self._tail_size, self._tail_sorted = [], [], 0, None

    def pairs(self, rows: npt.ArrayLike, keys: npt.ArrayLike, *, unique: bool = True) -> IntArray:
        """The (probe row, position) pairs for which ``keys[i]`` (probed for ``rows[i]``) indexes the position:
        shape (m, 2), int64; distinct and sorted by row then position, or with ``unique=False`` as found (a pair
        sharing several keys repeats: cheaper when only the few pairs that score are kept)."""
        codes = self.codes(rows, keys)
        if unique and codes.size:
            codes = np.sort(codes)
            codes = codes[np.concatenate(([True], codes[1:] != codes[:-1]))]
        return np.stack([codes >> 31, codes & 0x7FFF_FFFF], axis=1)

    def _sorted_tail(self) -> tuple[np.ndarray, np.ndarray]:
        """The tail's keys sorted, with their positions (sorted once after each addition; empty arrays when
        there is no tail)."""
        if self._tail_sorted is None:
            if not self._tail_size:
                return np.zeros(0, dtype=self.key_dtype), np.zeros(0, dtype=np.int32)
            self._tail_sorted = _by_key(np.concatenate(self._tail_keys), np.concatenate(self._tail_positions))
        return self._tail_sorted

    def probe_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What a compiled probe reads (exchange.hamming): the base's keys, its dense counts and offsets per key
        (empty without a key space), its positions, and the tail sorted by key with its positions."""
        tail_keys, tail_positions = self._sorted_tail()
        counts, offsets = self._counts, self._offsets
        if counts is None or offsets is None:
            counts, offsets = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        return (
            self._base_keys,
            counts,
            offsets,
            self._base_positions,
            tail_keys,
            tail_positions,
        )

    def codes(self, rows: npt.ArrayLike, keys: npt.ArrayLike) -> IntArray:
        """The pairs of ``pairs(rows, keys, unique=False)`` as ``row << 31 | position`` codes, one int64 each
        (a submission's hundreds of millions of candidates are not stacked into pairs: ``split`` them)."""
        row = np.asarray(rows)
        if row.dtype.kind not in "iu":
            row = row.astype(np.int64)
        key = np.asarray(keys)
        if key.dtype.kind not in "iu":
            key = key.astype(np.int64)  # integer keys are probed in their own type (int32 for photos)
        low, high = self._bounds()
        if key.size and (key.min() < low or key.max() > high):  # a key that cannot be stored cannot be found
            fits = (key >= low) & (key <= high)
            row, key = row[fits], key[fits]
        found = []
        if self._base_keys.size and key.size:
            if self._offsets is not None and self._counts is not None:
                # Most probe keys index nothing: one read of the counts drops them, the rest read their start.
                sizes = self._counts[key]
                hit = np.flatnonzero(sizes)
                lo = self._offsets[key[hit]]
                found.append(_runs(self._base_positions, row[hit], lo, sizes[hit].astype(np.int64)))
            else:
                probe = key.astype(self.key_dtype)
                lo = np.searchsorted(self._base_keys, probe, side="left")
                hi = np.searchsorted(self._base_keys, probe, side="right")
                found.append(_expand(self._base_positions, row, lo, hi))
        if self._tail_size and key.size:
            tail_keys, tail_positions = self._sorted_tail()
            probe = key.astype(self.key_dtype)
            lo = np.searchsorted(tail_keys, probe, side="left")
            found.append(_expand(tail_positions, row, lo, np.searchsorted(tail_keys, probe, side="right")))
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _by_key(keys: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (key, position) pairs sorted by key (a run of equal keys in any order: nothing needs the order they
    were added in)."""
    if keys.dtype.itemsize <= 4:
        # key << 32 | position as one int64, sorted: several times faster than an argsort of the keys
        return _split_codes(np.sort(_codes(keys, positions)), keys.dtype)
    order = np.argsort(keys)
    return keys[order], positions[order]


def _codes(keys: np.ndarray, positions: np.ndarray) -> IntArray:
    """key << 32 | position, one int64 per pair (keys of at most 32 bits), ordered as (key, position)."""
    return (keys.astype(np.int64) << 32) | positions.astype(np.int64)


def _split_codes(codes: IntArray, key_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    return (codes >> 32).astype(key_dtype), (codes & 0xFFFF_FFFF).astype(np.int32)


def _merged(first: IntArray, second: IntArray) -> IntArray:
    """Two sorted arrays as one sorted array: each of `second`'s values goes after the equal ones of `first`."""
    at = np.searchsorted(first, second, side="right") + np.arange(second.size)
    out = np.empty(first.size + second.size, dtype=first.dtype)
    rest = np.ones(out.size, dtype=bool)
    rest[at] = False
    out[at] = second
    out[rest] = first
    return out


def split(codes: IntArray) -> tuple[np.ndarray, np.ndarray]:
    """(probe rows, positions) of ``KeyIndex.codes``, as int32 arrays."""
    return (codes >> 31).astype(np.int32), (codes & 0x7FFF_FFFF).astype(np.int32)


def _expand(positions: np.ndarray, rows: IntArray, lo: np.ndarray, hi: np.ndarray) -> IntArray:
    """row << 31 | position for each probe's run positions[lo:hi] of equal keys."""
    sizes = hi - lo
    keep = sizes > 0
    return _runs(positions, rows[keep], lo[keep], sizes[keep])


def _runs(positions: np.ndarray, rows: IntArray, lo: np.ndarray, sizes: np.ndarray) -> IntArray:
    """row << 31 | position for each probe's run positions[lo : lo + size] (sizes above 0)."""
    total = int(sizes.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    at = np.repeat(lo - (np.cumsum(sizes) - sizes), sizes) + np.arange(total, dtype=np.int64)
    return (np.repeat(rows.astype(np.int64), sizes) << 31) | positions[at].astype(np.int64)
