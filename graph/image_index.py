"""Near-duplicate search over 256-bit perceptual hashes (PDQ, ``exchange.perceptual``) without a scan.

Pure numpy, no Django. Matching is by Hamming distance (two photos match when at most ``threshold`` of their
256 bits differ, 31 by default), so an equality index does not help and a scan of 10 million stored hashes per
new photo is far too slow for incremental linking.

``MultiIndexHash`` is multi-index hashing (Norouzi, Punjani and Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012): the 256 bits are split into ``chunks`` contiguous chunks. If two hashes differ
in at most ``d`` bits, the differences are shared among the chunks, so by pigeonhole at least one chunk
differs in at most ``floor(d / chunks)`` bits. Each chunk has a sorted table of the stored hashes' chunk values;
a query looks up, per chunk, every value within that radius of its own chunk (``neighbour_masks``), collects
the stored hashes found as candidates, and verifies them with the full distance. Nothing within ``d`` is
missed, and with 16 chunks of 16 bits and radius 1 (d = 31) a query makes 16 x 17 = 272 binary searches and
verifies a candidate set that is a tiny fraction of the stored hashes (about 17 / 65,536 of them per chunk for
uniformly spread hashes). 32 chunks of 8 bits would need no enumeration (radius 0) but make one stored hash in
8 a candidate; 8 chunks of 32 bits need radius 3 (5,489 values per chunk).

``BKTree`` (Burkhard and Keller 1973) is the classic metric tree, kept for the benchmark
(tests/bench/bench_image_index.py) beside faiss's binary multi-hash index and a brute-force numpy floor
(``brute_force``). ``near_duplicate_groups(hashes, threshold)`` is the connected components of the
within-threshold graph, found through the index: what becomes an "image group" for hub counting.

Hashes are given as 64-character hex strings, as 32-byte ``bytes``, or as an (n, 32) uint8 array
(``to_matrix``); bit order as in the hex form (the first hex digit holds the first four bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from exchange import perceptual

__all__ = [
    "HASH_BITS",
    "HASH_BYTES",
    "BKTree",
    "MultiIndexHash",
    "brute_force",
    "hamming_to_many",
    "near_duplicate_groups",
    "neighbour_masks",
    "to_matrix",
]

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
DEFAULT_CHUNKS = 16
DEFAULT_THRESHOLD = 31  # exchange.perceptual.PDQ_MATCH_THRESHOLD (not imported: this core takes any hash)

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def to_matrix(hashes: Sequence[str | bytes] | np.ndarray) -> np.ndarray:
    """Hashes as a C-contiguous (n, 32) uint8 array; ``ValueError`` for a hash of the wrong length or form."""
    if isinstance(hashes, np.ndarray):
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or hashes.dtype != np.uint8:
            raise ValueError(f"expected an (n, {HASH_BYTES}) uint8 array")
        return np.ascontiguousarray(hashes)
    rows = []
    for h in hashes:
        if isinstance(h, str):
            if len(h) != 2 * HASH_BYTES:
                raise ValueError(f"a hash has {2 * HASH_BYTES} hex characters, one has {len(h)}")
            try:
                h = bytes.fromhex(h)
            except ValueError:
                raise ValueError("a hash is hex (0-9, a-f)") from None
        if len(h) != HASH_BYTES:
            raise ValueError(f"a hash has {HASH_BYTES} bytes, one has {len(h)}")
        rows.append(h)
    if not rows:
        return np.zeros((0, HASH_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, HASH_BYTES).copy()


def hamming_to_many(query: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Distances (int) from one (32,) uint8 hash to each row of an (n, 32) uint8 array."""
    x = np.bitwise_xor(stored, query[None, :])
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x.view(np.uint64)).sum(axis=1, dtype=np.int64)
    return _POPCOUNT8[x].sum(axis=1, dtype=np.int64)


def brute_force(stored: np.ndarray, query: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """The floor: (ids, distances) of every stored hash within ``threshold`` of ``query``, ids ascending."""
    distances = hamming_to_many(query, stored)
    ids = np.flatnonzero(distances <= threshold)
    return ids, distances[ids]


def neighbour_masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``radius`` bits set (XOR with a value: its neighbours)."""
    return np.array(perceptual.neighbour_masks(radius, bits), dtype=np.uint64)


class MultiIndexHash:
    """Multi-index hashing over ``chunks`` chunks (8, 16 or 32 bits each), exact for any threshold.

    ``search(query, threshold)`` returns exactly what ``brute_force`` returns. The tables cost 12 bytes per
    stored hash and chunk (the chunk value as uint64 and the id as int32), plus 32 bytes for the hash.
    ``add`` appends hashes and re-sorts the tables (fine for batches; a persistent index would merge).
    """

    def __init__(self, hashes: Sequence[str | bytes] | np.ndarray = (), chunks: int = DEFAULT_CHUNKS):
        if chunks not in (8, 16, 32):
            raise ValueError("chunks is 8, 16 or 32 (chunks of 32, 16 or 8 bits)")
        self.chunks = chunks
        self.chunk_bits = HASH_BITS // chunks
        self._dtype = {8: ">u4", 16: ">u2", 32: "u1"}[chunks]
        self._masks: dict[int, np.ndarray] = {}
        self.hashes = np.zeros((0, HASH_BYTES), dtype=np.uint8)
        self._keys = np.zeros((chunks, 0), dtype=np.uint64)
        self._ids = np.zeros((chunks, 0), dtype=np.int32)
        self.add(hashes)

    def __len__(self) -> int:
        return len(self.hashes)

    def _chunk_values(self, matrix: np.ndarray) -> np.ndarray:
        """(chunks, n) uint64 chunk values of an (n, 32) uint8 matrix."""
        return matrix.view(self._dtype).astype(np.uint64).T

    def add(self, hashes: Sequence[str | bytes] | np.ndarray) -> np.ndarray:
        """Append hashes; returns their ids (consecutive, after the existing ones)."""
        matrix = to_matrix(hashes)
        start = len(self.hashes)
        ids = np.arange(start, start + len(matrix), dtype=np.int64)
        if not len(matrix):
            return ids
        if start + len(matrix) > np.iinfo(np.int32).max:
            raise ValueError("too many hashes for one index")
        self.hashes = np.concatenate([self.hashes, matrix])
        values = self._chunk_values(self.hashes)
        order = np.argsort(values, axis=1, kind="stable")
        self._keys = np.take_along_axis(values, order, axis=1)
        self._ids = order.astype(np.int32)
        return ids

    def _radius_masks(self, radius: int) -> np.ndarray:
        if radius not in self._masks:
            self._masks[radius] = neighbour_masks(self.chunk_bits, radius)
        return self._masks[radius]

    def _candidate_pairs(self, matrix: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
        """(query row, stored id) pairs sharing a chunk within ``floor(threshold / chunks)`` bits, unique and
        sorted by query row then id: a superset of the answers (pigeonhole), one vectorised pass per chunk."""
        radius = max(threshold, 0) // self.chunks
        if radius > 3:
            raise ValueError(f"threshold {threshold} needs radius {radius} per chunk: use more chunks")
        masks = self._radius_masks(radius)
        values = self._chunk_values(matrix)  # (chunks, q)
        rows_parts, id_parts = [], []
        for chunk in range(self.chunks):
            keys = self._keys[chunk]
            probes = (values[chunk][:, None] ^ masks[None, :]).ravel()
            lo = np.searchsorted(keys, probes, side="left")
            counts = np.searchsorted(keys, probes, side="right") - lo
            hit = np.flatnonzero(counts)
            if not len(hit):
                continue
            lo, counts = lo[hit], counts[hit]
            total = int(counts.sum())
            ends = np.cumsum(counts)
            positions = np.repeat(lo - ends + counts, counts) + np.arange(total)
            id_parts.append(self._ids[chunk, positions].astype(np.int64))
            rows_parts.append(np.repeat(hit // len(masks), counts))
        if not id_parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        key = np.unique(np.concatenate(rows_parts) * max(len(self), 1) + np.concatenate(id_parts))
        return key // max(len(self), 1), key % max(len(self), 1)

    def candidates(self, query: str | bytes | np.ndarray, threshold: int) -> np.ndarray:
        """The ids (ascending) the index verifies for ``query`` at ``threshold``."""
        return self._candidate_pairs(_one(query).reshape(1, HASH_BYTES), threshold)[1]

    def search_many(
        self, queries: Sequence[str | bytes] | np.ndarray, threshold: int = DEFAULT_THRESHOLD
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``search`` for each query, in one vectorised pass (a photo's full hash and its variants at once)."""
        matrix = to_matrix(queries)
        empty = np.zeros(0, dtype=np.int64)
        if threshold < 0 or not len(self) or not len(matrix):
            return [(empty, empty) for _ in range(len(matrix))]
        rows, ids = self._candidate_pairs(matrix, threshold)
        x = np.bitwise_xor(matrix[rows], self.hashes[ids])
        if hasattr(np, "bitwise_count"):  # numpy >= 2.0
            distances = np.bitwise_count(x.view(np.uint64)).sum(axis=1, dtype=np.int64)
        else:
            distances = _POPCOUNT8[x].sum(axis=1, dtype=np.int64)
        keep = distances <= threshold
        rows, ids, distances = rows[keep], ids[keep], distances[keep]
        bounds = np.searchsorted(rows, np.arange(len(matrix) + 1))
        return [(ids[a:b], distances[a:b]) for a, b in pairwise(bounds.tolist())]

    def search(
        self, query: str | bytes | np.ndarray, threshold: int = DEFAULT_THRESHOLD
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids ascending, distances) of every stored hash within ``threshold`` of ``query``."""
        return self.search_many(_one(query).reshape(1, HASH_BYTES), threshold)[0]


def _one(query: str | bytes | np.ndarray) -> np.ndarray:
    if isinstance(query, np.ndarray):
        return to_matrix(query.reshape(1, -1))[0]
    return to_matrix([query])[0]


class BKTree:
    """A Burkhard-Keller tree over hashes as Python ints (the benchmark's second contender); exact."""

    def __init__(self, hashes: Sequence[str | bytes] | np.ndarray = ()) -> None:
        # node: [value, id, {distance: child}]
        self._root: list | None = None
        self._size = 0
        self.add(hashes)

    def __len__(self) -> int:
        return self._size

    def add(self, hashes: Sequence[str | bytes] | np.ndarray) -> None:
        for row in to_matrix(hashes):
            value = int.from_bytes(row.tobytes(), "big")
            node = [value, self._size, {}]
            self._size += 1
            if self._root is None:
                self._root = node
                continue
            current = self._root
            while True:
                d = (current[0] ^ value).bit_count()
                child = current[2].get(d)
                if child is None:
                    current[2][d] = node
                    break
                current = child

    def search(
        self, query: str | bytes | np.ndarray, threshold: int = DEFAULT_THRESHOLD
    ) -> tuple[np.ndarray, np.ndarray]:
        value = int.from_bytes(_one(query).tobytes(), "big")
        hits: list[tuple[int, int]] = []
        stack = [self._root] if self._root is not None else []
        while stack:
            node = stack.pop()
            d = (node[0] ^ value).bit_count()
            if d <= threshold:
                hits.append((node[1], d))
            for edge, child in node[2].items():
                if d - threshold <= edge <= d + threshold:
                    stack.append(child)
        hits.sort()
        return (
            np.array([h[0] for h in hits], dtype=np.int64),
            np.array([h[1] for h in hits], dtype=np.int64),
        )


def near_duplicate_groups(
    hashes: Sequence[str | bytes] | np.ndarray,
    threshold: int = DEFAULT_THRESHOLD,
    index: MultiIndexHash | None = None,
) -> list[list[int]]:
    """Connected components (of two or more hashes) of the graph "within ``threshold`` bits", by the index.

    Each group is a sorted list of positions in ``hashes``; groups are sorted by their first position. Single
    hashes with no near duplicate are not listed. ``index``: one already holding exactly ``hashes``.
    """
    matrix = to_matrix(hashes)
    if index is None:
        index = MultiIndexHash(matrix)
    elif len(index) != len(matrix):
        raise ValueError("the index must hold exactly the hashes")
    parent = list(range(len(matrix)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(matrix)):
        ids, _ = index.search(matrix[i], threshold)
        for j in ids.tolist():
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(matrix)):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
