"""graph.image_index: the index returns exactly what a brute-force scan returns; near-duplicate groups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph import image_index as ii


def planted(seed: int, n: int, near: int, max_flips: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random stored hashes and ``near`` queries, each a stored hash with 0..max_flips bits flipped."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 256, (n, ii.HASH_BYTES), dtype=np.uint8)
    queries = []
    for _ in range(near):
        bits = np.unpackbits(stored[rng.integers(n)])
        bits[rng.choice(ii.HASH_BITS, int(rng.integers(0, max_flips + 1)), replace=False)] ^= 1
        queries.append(np.packbits(bits))
    queries.append(rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8))  # and one unrelated query
    return stored, np.array(queries, dtype=np.uint8)


def near_copies(base: np.ndarray, count: int, flips: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for _ in range(count):
        bits = np.unpackbits(base)
        bits[rng.choice(ii.HASH_BITS, flips, replace=False)] ^= 1
        out.append(np.packbits(bits))
    return np.array(out, dtype=np.uint8)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    threshold=st.integers(0, 63),
    chunks=st.sampled_from([8, 16, 32]),
)
def test_index_returns_exactly_what_brute_force_returns(
    seed: int, n: int, threshold: int, chunks: int
) -> None:
    if threshold // chunks > 3:
        threshold = 3 * chunks + 3  # the largest a chunking supports; still exact
    stored, queries = planted(seed, n, near=12, max_flips=threshold + 8)
    index = ii.MultiIndexHash(stored, chunks=chunks)
    tree = ii.BKTree(stored)
    batch = index.search_many(queries, threshold)  # one vectorised pass, as for a photo and its variants
    assert len(batch) == len(queries)
    for q, batched in zip(queries, batch, strict=True):
        expected_ids, expected_d = ii.brute_force(stored, q, threshold)
        for found_ids, found_d in (index.search(q, threshold), batched, tree.search(q, threshold)):
            assert found_ids.tolist() == expected_ids.tolist()
            assert found_d.tolist() == expected_d.tolist()
        assert set(expected_ids.tolist()) <= set(index.candidates(q, threshold).tolist())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(0, 31))
def test_planted_neighbour_at_any_distance_up_to_31_is_found(seed: int, flips: int) -> None:
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 256, (2_000, ii.HASH_BYTES), dtype=np.uint8)
    target = int(rng.integers(len(stored)))
    query = near_copies(stored[target], 1, flips, rng)[0]
    ids, distances = ii.MultiIndexHash(stored).search(query, 31)
    assert target in ids.tolist()
    assert distances[ids.tolist().index(target)] == flips


def test_clustered_hashes_beyond_the_threshold_are_not_returned() -> None:
    """Hashes at 32 bits share chunks with the query but are verified away; only those <= 31 remain."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8)
    stored = np.concatenate([near_copies(base, 50, 31, rng), near_copies(base, 50, 32, rng)])
    ids, distances = ii.MultiIndexHash(stored).search(base, 31)
    assert ids.tolist() == list(range(50))
    assert set(distances.tolist()) == {31}


def test_hex_bytes_and_arrays_are_one_hash_and_bad_hashes_are_refused() -> None:
    h = "0123456789abcdef" * 4
    both: list[str | bytes] = [h, bytes.fromhex(h)]
    index = ii.MultiIndexHash(both)
    assert index.search(h, 0)[0].tolist() == [0, 1]
    assert index.search(bytes.fromhex(h), 0)[0].tolist() == [0, 1]
    bads: list[str | bytes] = ["ab" * 31, "ab" * 33, "zz" * 32, b"\x00" * 31]
    for bad in bads:
        with pytest.raises(ValueError):
            ii.MultiIndexHash([bad])
        with pytest.raises(ValueError):
            index.search(bad)
    with pytest.raises(ValueError):
        ii.to_matrix(np.zeros((3, 31), dtype=np.uint8))
    with pytest.raises(ValueError):
        ii.MultiIndexHash(chunks=12)
    with pytest.raises(ValueError, match="more chunks"):
        ii.MultiIndexHash([h], chunks=8).search(h, 40)  # radius 5 of 32-bit chunks: refused, not slow


def test_empty_index_and_add_keep_ids() -> None:
    index = ii.MultiIndexHash()
    h = "f" * 64
    assert index.search(h)[0].tolist() == []
    assert index.add([h]).tolist() == [0]
    assert index.add(["0" * 64, h]).tolist() == [1, 2]
    assert index.search(h)[0].tolist() == [0, 2]
    assert len(index) == 3


def test_neighbour_masks_count() -> None:
    assert len(ii.neighbour_masks(16, 0)) == 1
    assert len(ii.neighbour_masks(16, 1)) == 17
    assert len(ii.neighbour_masks(16, 2)) == 1 + 16 + 120
    assert len(ii.neighbour_masks(32, 3)) == 5_489


def brute_force_groups(matrix: np.ndarray, threshold: int) -> list[list[int]]:
    n = len(matrix)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in np.flatnonzero(ii.hamming_to_many(matrix[i], matrix) <= threshold).tolist():
            parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), threshold=st.integers(0, 40))
def test_near_duplicate_groups_are_the_brute_force_components(seed: int, threshold: int) -> None:
    """Chains: a hash near a copy of a copy joins the group even when it is far from the first hash."""
    rng = np.random.default_rng(seed)
    parts = [rng.integers(0, 256, (60, ii.HASH_BYTES), dtype=np.uint8)]
    for _ in range(5):
        chain = [rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8)]
        for _ in range(int(rng.integers(1, 5))):
            chain.append(near_copies(chain[-1], 1, int(rng.integers(0, 36)), rng)[0])
        parts.append(np.array(chain))
    matrix = np.concatenate(parts)
    matrix = matrix[rng.permutation(len(matrix))]
    assert ii.near_duplicate_groups(matrix, threshold) == brute_force_groups(matrix, threshold)


def test_near_duplicate_groups_of_a_chain_and_a_reused_photo() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8)
    b = near_copies(a, 1, 20, rng)[0]
    c = near_copies(b, 1, 20, rng)[0]  # c may be > 31 from a, but is one group through b
    lone = rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8)
    hub = rng.integers(0, 256, ii.HASH_BYTES, dtype=np.uint8)
    hubs = near_copies(hub, 6, 5, rng)
    matrix = np.concatenate([[a, lone, b], hubs, [c]])
    groups = ii.near_duplicate_groups(matrix, 31)
    assert groups == [[0, 2, 9], [3, 4, 5, 6, 7, 8]]
    index = ii.MultiIndexHash(matrix)
    assert ii.near_duplicate_groups(matrix, 31, index=index) == groups
    with pytest.raises(ValueError):
        ii.near_duplicate_groups(matrix[:3], 31, index=index)
