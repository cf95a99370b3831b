"""The compiled probe of photo hashes (exchange.hamming) finds what probing the index and scoring in numpy finds:
the same pairs, each as often, from the dense base, a searched base and the tail."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from exchange import hamming
from exchange.key_index import KeyIndex, split
from exchange.matching import ImageMatcher, Item, unit_matches

IMAGE = ImageMatcher()  # as MATCHERS["image"]


def _numpy_pairs(index: KeyIndex, rows, keys, mine, theirs, threshold) -> Counter[tuple[int, int]]:
    i, j = split(index.codes(rows, keys))
    hits = IMAGE.unit_hits(mine, theirs, i, j, threshold)
    return Counter(zip(i[hits].tolist(), j[hits].tolist(), strict=True))


def _near(rng: np.random.Generator, units: np.ndarray, bits: int) -> np.ndarray:
    out = units.copy()
    for row in out:
        for bit in rng.choice(256, size=bits, replace=False):
            row[bit // 8] ^= 1 << (bit % 8)
    return out


@pytest.mark.parametrize("part", [1_000_000, 997])  # one part, or many run on threads
@pytest.mark.parametrize("key_space", [IMAGE.key_space, None])
@pytest.mark.parametrize("threshold", [0, 12, 31])
def test_the_compiled_probe_finds_the_numpy_paths_pairs_as_often(
    key_space, threshold, part, monkeypatch
) -> None:
    monkeypatch.setattr(hamming, "_PART", part)
    rng = np.random.default_rng(threshold)
    theirs = rng.integers(0, 256, size=(3000, 32), dtype=np.uint8)
    index = KeyIndex(IMAGE.key_dtype, key_space)
    rows, keys = IMAGE.key_arrays([], (np.arange(len(theirs)), theirs))  # each its own photo's full hash
    index.add(rows[: 16 * 2500], keys[: 16 * 2500])
    index.compact()  # the base
    index.add(rows[16 * 2500 :], keys[16 * 2500 :])  # and a tail
    mine = np.concatenate(
        [
            _near(rng, theirs[:150], 5),
            _near(rng, theirs[2800:2950], 25),
            rng.integers(0, 256, (100, 32), np.uint8),
        ]
    )
    probe_rows, probe_keys = IMAGE._probes(
        np.arange(len(mine)), mine.view(">u2").reshape(len(mine), 16).astype(np.int64), 31, IMAGE.FULL
    )
    i, j = hamming.hamming_pairs(index.probe_arrays(), probe_rows, probe_keys, mine, theirs, threshold)
    expected = _numpy_pairs(index, probe_rows, probe_keys, mine, theirs, threshold)
    assert Counter(zip(i.tolist(), j.tolist(), strict=True)) == expected
    if threshold >= 12:
        assert len(expected) >= 150  # the near copies are there
    distances = np.bitwise_count(mine[i] ^ theirs[j]).sum(axis=1)
    assert (distances <= threshold).all()


def test_an_empty_index_and_keys_outside_the_key_space_find_nothing() -> None:
    units = np.zeros((2, 32), dtype=np.uint8)
    empty = KeyIndex(IMAGE.key_dtype, IMAGE.key_space)
    i, j = hamming.hamming_pairs(
        empty.probe_arrays(), np.array([0], np.int32), np.array([5], np.int32), units, units, 31
    )
    assert i.size == j.size == 0
    index = KeyIndex(IMAGE.key_dtype, 8)
    index.add(np.arange(70_000) % 2, np.arange(70_000) % 8)  # past the tail's minimum: a dense base
    index.compact()
    i, j = hamming.hamming_pairs(
        index.probe_arrays(), np.array([0, 1], np.int32), np.array([-1, 8], np.int32), units, units, 31
    )
    assert i.size == 0


def test_photo_submissions_use_the_compiled_probe_and_match_as_before() -> None:
    """Through `unit_matches`, with and without a filter on the pairs (a batch's own pairs): the numpy path's
    result (the base Matcher's `probe_hits` is None, so the generic code runs for comparison)."""
    rng = np.random.default_rng(9)
    stored = rng.integers(0, 256, size=(400, 32), dtype=np.uint8)
    items = [Item("image", bytes(row).hex(), {"quality": 90, "crops": []}) for row in _near(rng, stored, 8)]
    item_of, units = IMAGE.units(items)
    index = KeyIndex(IMAGE.key_dtype, IMAGE.key_space)
    index.add(*IMAGE.key_arrays([], (np.arange(len(stored)), stored)))
    probes = IMAGE.probe_arrays(items, 31, packed=(item_of, units))

    class NumpyOnly(type(IMAGE)):  # type: ignore[misc]
        def probe_hits(self, *args, **kwargs):
            return None

    def odd(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (j % 2) == 1

    for wanted in (None, odd):
        fast = unit_matches(IMAGE, index, units, stored, probes, 31, wanted)
        slow = unit_matches(NumpyOnly(), index, units, stored, probes, 31, wanted)
        assert Counter(map(tuple, fast.tolist())) == Counter(map(tuple, slow.tolist()))
        assert len(fast) >= (200 if wanted else 400)


def test_warming_up_compiles_without_error() -> None:
    hamming.warm_up()
