"""The in-memory index of the similarity kinds (exchange.key_index.KeyIndex) and each matcher's vectorised
keys, units and scores (exchange.matching): the same keys as item by item, and the same matching pairs as
comparing every pair, for photos (crops included), documents and fuzzy names."""

from __future__ import annotations

import random
from itertools import combinations

import numpy as np
import pytest

from exchange import fuzzy
from exchange.documents import fingerprint_text
from exchange.key_index import KeyIndex
from exchange.matching import MATCHERS, Item, group_labels, matching_pairs
from fixtures import documents

KEY = bytes(range(32))


def test_pairs_finds_every_position_under_a_probed_key_once():
    index = KeyIndex(np.int32)
    index.add([0, 1, 2, 3], [5, 6, 5, 7])
    assert index.pairs([0, 0, 1, 0], [5, 7, 9, 5]).tolist() == [[0, 0], [0, 2], [0, 3]]
    assert index.pairs([], []).shape == (0, 2)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_negative_keys_sort_and_are_found_in_the_base_and_the_tail(dtype) -> None:
    """The base and the tail are sorted by key (as int64 codes of key and position when the keys fit in 32
    bits): negative keys sort before positive ones and keep their positions."""
    index = KeyIndex(dtype)
    keys = np.array(
        [-(2**31), 5, -3, 2**31 - 1, -3, 0] * 20_000
    )  # past the tail's limit: sorted into the base
    index.add(np.arange(len(keys)), keys)
    index.add([len(keys), len(keys) + 1], [-3, -(2**31)])  # the tail
    found = index.pairs([0, 1, 2], [-3, -(2**31), 2**31 - 1])
    assert found[found[:, 0] == 0, 1].tolist() == sorted(
        [*range(2, len(keys), 6), *range(4, len(keys), 6), len(keys)]
    )
    assert found[found[:, 0] == 1, 1].tolist() == [*range(0, len(keys), 6), len(keys) + 1]
    assert found[found[:, 0] == 2, 1].tolist() == list(range(3, len(keys), 6))


def test_a_large_tail_is_merged_into_the_base_and_still_found():
    index = KeyIndex()
    index.add(np.arange(200_000), np.arange(200_000) % 1000)
    index.add([200_000], [7])  # in the tail
    found = index.pairs([0], [7])[:, 1]
    assert len(found) == 201 and found[-1] == 200_000 and len(index) == 200_001
    assert index.nbytes() >= 200_001 * 12


@pytest.mark.parametrize("key_space", [None, 3000])
def test_compacting_merges_the_sorted_tail_into_the_base_as_sorting_everything_would(key_space) -> None:
    rng = np.random.default_rng(5)
    low = 0 if key_space else -1500
    index = KeyIndex(np.int32, key_space=key_space)
    keys, positions = [], []
    for start, size in ((0, 70_000), (70_000, 9_000), (79_000, 30_000), (109_000, 1)):  # compacts, and not
        batch = rng.integers(low, 1500, size=size)
        index.add(np.arange(start, start + size), batch)
        keys.append(batch)
        positions.append(np.arange(start, start + size))
        index.compact()
        everything = np.concatenate(keys).astype(np.int64) << 32 | np.concatenate(positions)
        expected = np.sort(everything)
        assert np.array_equal(index._base_keys, (expected >> 32).astype(np.int32))
        assert np.array_equal(index._base_positions, (expected & 0xFFFF_FFFF).astype(np.int32))
    probes = np.arange(low, 1500)
    found = index.pairs(np.zeros(probes.size, dtype=np.int64), probes)[:, 1]
    assert np.array_equal(found, np.arange(109_001))


def test_a_dense_key_space_finds_the_same_pairs_as_binary_search():
    rng = np.random.default_rng(3)
    keys, probes = rng.integers(0, 5000, size=100_000), rng.integers(0, 5000, size=20_000)
    dense, searched = KeyIndex(np.int32, key_space=5000), KeyIndex(np.int32)
    for index in (dense, searched):
        index.add(np.arange(90_000), keys[:90_000])  # compacted: the base
        index.add(np.arange(90_000, 100_000), keys[90_000:])  # the tail
    rows = np.arange(len(probes)) // 7
    assert np.array_equal(dense.pairs(rows, probes), searched.pairs(rows, probes))
    assert dense.pairs([0], [5000]).shape == (0, 2)  # outside the key space: never found
    with pytest.raises(ValueError, match="key space"):
        dense.add([0], [5000])


def test_keys_that_do_not_fit_the_key_type_are_refused_or_never_found():
    index = KeyIndex(np.int32)
    with pytest.raises(ValueError, match="does not fit"):
        index.add([0], [1 << 40])
    index.add([0], [3])
    assert index.pairs([0, 0], [(1 << 40) | 3, 3]).tolist() == [[0, 0]]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _flip(rng: random.Random, value: str, bits: int) -> str:
    number = int(value, 16)
    for bit in rng.sample(range(256), bits):
        number ^= 1 << bit
    return f"{number:064x}"


def photos() -> list[Item]:
    rng = random.Random(5)
    items = []
    for _ in range(25):
        full = _hex(rng, 64)
        crops = [_flip(rng, full, rng.randint(20, 60)) for _ in range(rng.randint(0, 18))]
        items.append(Item("image", full, {"quality": 90, "crops": crops}))
        # a near copy: its full hash near the original's, or near one of its crops (the original cropped)
        base = crops[0] if crops and rng.random() < 0.5 else full
        items.append(Item("image", _flip(rng, base, rng.randint(0, 40)), {"quality": 90, "crops": []}))
    return items


def names() -> list[Item]:
    values = [
        "John Smith",
        "Jon Smyth",
        "Jonathan Smithson",
        "Ann Lee",
        "Anne Lee",
        "Maria Gonzalez",
        "Mary Gonzales",
    ]
    return [
        Item("person_name", fuzzy.to_hex(fuzzy.encode("person_name", v, KEY, f"s{i}-{j}".encode())), {})
        for i, v in enumerate(values)
        for j in range(2)
    ]


def letters() -> list[Item]:
    out = []
    for seed in range(4):
        base = documents.document(seed, "authorisation")
        for edit in range(3):
            doc = documents.edited(base, random.Random(edit)) if edit else base
            out.append(Item("document", fingerprint_text(documents.render_text(doc), KEY), {}))
    return out


KINDS = {"image": photos, "person_name": names, "document": letters}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_vectorised_keys_are_the_item_by_item_keys(kind: str):
    items = KINDS[kind]()
    rule = MATCHERS[kind]
    item_of, _ = rule.units(items)
    rows, keys = rule.key_arrays(items)
    for i, item in enumerate(items):
        assert set(keys[item_of[rows] == i].tolist()) == rule.index_keys(item)
    for threshold in {"image": (31, 47)}.get(kind) or (rule_threshold(kind),):
        rows, keys = rule.probe_arrays(items, threshold)
        for i, item in enumerate(items):
            assert set(keys[item_of[rows] == i].tolist()) == rule.probe_keys(item, threshold)


def rule_threshold(kind: str) -> float:
    return {"person_name": 0.7, "document": 0.8}[kind]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_matching_pairs_through_the_index_are_the_pairs_of_an_all_pairs_comparison(kind: str):
    items = KINDS[kind]()
    rule = MATCHERS[kind]
    threshold = 31 if kind == "image" else rule_threshold(kind)
    every = {
        (b, a)
        for a, b in combinations(range(len(items)), 2)
        if rule.matches(rule.score(items[a], items[b]), threshold)
    }
    found = set(matching_pairs(rule, items, threshold))
    assert found <= every and found  # no pair the score refuses, and some pairs match
    if kind == "image":
        assert found == every  # multi-index hashing is exact: a pair within the threshold shares a chunk
    else:
        assert len(found) >= 0.9 * len(every)  # LSH: near pairs escape rarely (exchange.fuzzy_blocking)
    labels = group_labels(rule, items, threshold)
    assert all(labels[a] == labels[b] for a, b in found)


def test_centres_take_the_oldest_centre_an_item_matches_and_reach_two_steps_never_more():
    from exchange.matching import CENTRE_DEPTH, centre_labels

    assert CENTRE_DEPTH == 2
    # 1 matches 0 (a centre); 2 matches only 1, which joined 0 directly: 0's group, two steps out; 3 matches only
    # 2, two steps out: a centre of its own; 4 matches 3 and 0: the oldest centre; 5 matches only 4: 0's group;
    # 6 matches only 2 and 5 (both two steps out): a centre.
    pairs = [(1, 0), (2, 1), (3, 2), (4, 3), (4, 0), (5, 4), (6, 2), (6, 5)]
    assert centre_labels(pairs, 8) == [0, 0, 0, 3, 0, 0, 6, 7]


@pytest.mark.parametrize("threshold", [0, 15, 31, 64])
def test_photo_pairs_are_judged_in_two_steps_as_in_one(threshold: int) -> None:
    """ImageMatcher.unit_hits drops pairs on their first 128 bits before reading the rest: the same verdicts as
    scoring every pair whole (Matcher.unit_hits), for pairs from identical to unrelated, at several
    thresholds."""
    from exchange.matching import Matcher

    rng = np.random.default_rng(threshold)
    rule = MATCHERS["image"]
    mine = rng.integers(0, 256, size=(40, 32), dtype=np.uint8)
    theirs = np.concatenate([rng.integers(0, 256, size=(200, 32), dtype=np.uint8), mine.copy()])
    bits = np.unpackbits(theirs[200:], axis=1)
    flips = rng.random(bits.shape) < np.linspace(0, 0.3, len(bits))[:, None]  # 0 to ~77 bits flipped
    theirs[200:] = np.packbits(bits ^ flips, axis=1)
    pairs = np.stack(np.meshgrid(np.arange(40), np.arange(240), indexing="ij"), axis=-1).reshape(-1, 2)
    two_steps = rule.unit_hits(mine, theirs, pairs[:, 0], pairs[:, 1], threshold)
    whole = Matcher.unit_hits(rule, mine, theirs, pairs[:, 0], pairs[:, 1], threshold)
    assert two_steps.dtype == np.bool_ and np.array_equal(two_steps, whole)
    assert 0 < whole.sum() < len(pairs)  # some pairs match and some do not


def test_centres_take_the_nearest_centre_an_item_matches_then_the_oldest():
    from exchange.matching import centre_labels

    # 2 matches centres 0 (0.75) and 1 (0.9): the nearer; 3 matches 0 and 1 equally: the oldest; 4 matches no
    # centre but 2 (0.8) and 3 (0.95), both one step out: the nearer, 3, in 0's group; 5 matches only 4, two
    # steps out: a centre of its own.
    pairs = [(2, 0), (2, 1), (3, 0), (3, 1), (4, 2), (4, 3), (5, 4)]
    assert centre_labels(pairs, 6, [0.75, 0.9, 0.8, 0.8, 0.8, 0.95, 0.99]) == [0, 1, 1, 0, 0, 5]
    # a distance: lower is nearer
    assert centre_labels(pairs, 6, [20, 3, 5, 5, 5, 2, 1], closer_is_lower=True) == [0, 1, 1, 0, 0, 5]


def _all_pairs(rule, mine: list[Item], theirs: list[Item], threshold: float) -> set[tuple[int, int]]:
    return {
        (a, b)
        for a, x in enumerate(mine)
        for b, y in enumerate(theirs)
        if rule.matches(rule.score(x, y), threshold)
    }


def test_a_batchs_own_photo_pairs_are_found_by_its_full_hashes_alone_whichever_photo_holds_the_crops():
    """matching_pairs probes with the full hashes only (the leads): a crop is found from the other photo's
    full hash, also when the newer photo holds the crop (the copies first here, their originals after)."""
    items = photos()
    items = items[1::2] + items[0::2]  # near copies (no crops) first, their cropped originals later
    rule = MATCHERS["image"]
    every = {(max(a, b), min(a, b)) for a, b in _all_pairs(rule, items, items, 31) if a != b}
    assert set(matching_pairs(rule, items, 31)) == every
    assert any(items[a].extra["crops"] and not items[b].extra["crops"] for a, b in every)  # newer holds crops


@pytest.mark.parametrize("stored_count", [3, 40])
def test_stored_photos_are_found_the_same_from_either_side(stored_count: int) -> None:
    """Probes.stored_pairs: a new photo's crops are compared with the stored full hashes by probing from
    whichever side has fewer (3 stored photos against the batch's crops: from the stored side; 40: from the
    batch's), and both find exactly the pairs an all-pairs comparison finds."""
    from exchange.matching import Probes, distinct_pairs, lead_mask

    rule = MATCHERS["image"]
    rng = random.Random(stored_count)
    originals = [item for item in photos() if item.extra["crops"]]
    filler = (Item("image", _hex(rng, 64), {"quality": 90, "crops": []}) for _ in range(stored_count))
    stored = [*originals, *filler][:stored_count]
    new = []
    for item in stored[:3]:  # copies holding crops near a stored full hash, copies near it, unrelated crops
        crops = [_flip(rng, item.value, rng.randint(0, 25)), _hex(rng, 64)]
        new.append(Item("image", _hex(rng, 64), {"quality": 90, "crops": crops}))
        new.append(Item("image", _flip(rng, item.value, 12), {"quality": 90, "crops": [_hex(rng, 64)]}))
    stored_of, stored_units = rule.units(stored)
    index = KeyIndex(rule.key_dtype, rule.key_space)
    index.add(*rule.key_arrays(stored))
    leads = np.flatnonzero(lead_mask(stored_of))
    probes = Probes(rule, new, 31)
    mirrored = 0 < len(leads) < probes.non_leads
    assert mirrored == (stored_count == 3)
    pairs = probes.stored_pairs(index, stored_units, leads)
    found = {tuple(p) for p in distinct_pairs(probes.item_of[pairs[:, 0]], stored_of[pairs[:, 1]]).tolist()}
    every = _all_pairs(rule, new, stored, 31)
    assert found == every and len(every) == 6  # each of the 3 photos copied twice, the unrelated crops apart
