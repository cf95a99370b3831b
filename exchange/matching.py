"""The one contract of the kinds that link by similarity rather than equality (pure; no Django).

An exact indicator is a kind and a transport hash, keyed on the server into a token: two sellers share it or
not. A similarity kind's item is compared by a score instead (two product photos' PDQ distance today; document
fingerprints and fuzzy names land on the same contract), so the exchange stores items, finds a new item's
near neighbours through an index of integer keys, and keeps near-duplicate *groups* as indicators
(exchange.similarity). Each kind says, through its `Matcher`:

- ``parse``: the wire form of one item (exchange.contract), validated with errors naming each field;
- ``index_keys`` / ``probe_keys``: the integer keys a stored item is indexed under, and the keys to probe
  for every stored item that may match a new one within the threshold (no scan: the candidates are the
  items sharing a key, then verified with the score);
- ``score`` / ``matches``: how near two items are, and whether that is a match at a threshold;
- ``describe``: the score in words, for the evidence chain.
"""

from __future__ import annotations

import heapq
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from exchange.contract import (
    DOCUMENT_KIND,
    FUZZY_ENCODING_KIND,
    FUZZY_WIRE_KINDS,
    IMAGE_KIND,
    IMAGE_MIN_QUALITY,
    MAX_IMAGE_CROPS,
    is_transport_hash,
)
from exchange.documents import MINHASH_HEX_LENGTH, NUM_PERM, is_minhash_hex, jaccard_estimate, lsh_bands
from exchange.fuzzy import (
    ENCODING_HEX_CHARS,
    FILTER_BITS,
    FILTER_BYTES,
    MAX_BITS_SET,
    MIN_BITS_SET,
    is_fuzzy_encoding,
)
from exchange.fuzzy_blocking import LSH_BY_KIND, HammingLSH
from exchange.key_index import KeyIndex, split
from exchange.normalization import SIMILARITY_KINDS
from exchange.perceptual import (
    INDEX_CHUNK_BITS,
    INDEX_CHUNKS,
    PDQ_BITS,
    chunk_keys,
    is_pdq_hex,
    neighbour_masks,
    probe_keys,
    variant_distance,
)

IntArray = npt.NDArray[np.int64]
Packed = tuple[IntArray, np.ndarray]  # Matcher.units: (the item of each unit, the packed units)

# Groups around centres (Matcher.transitive false) reach this many steps from their centre: an item joins a
# centre it matches (1) or, matching none, a member that joined a centre directly (2). See centre_labels.
CENTRE_DEPTH = 2
# Two items of such a kind in different groups that match each other directly, this much nearer than the kind's
# threshold, are evidence of their own between their sellers (a *direct match*: `direct_matches`). A group
# holds the variants of one value, but a retyped value can land in a group of its own while still matching a
# variant across the border. Split (a) of the linking bench (tests/bench/bench_fuzzy_linking.py), seeds 7, 1, 2,
# 3 pooled: groups alone recall 0.821 at precision 0.9915; direct matches at this margin 0.882 at 0.9918 (0.05:
# 0.876, the same 27 false pairs; 0.02: 0.887 with 28; at the threshold itself 0.893 with 34, precision
# 0.9898). Held-out seeds 4, 5, 6: groups 0.825 at 0.9952, 0.03 0.894 at 0.9944, 0.05 0.888 at 0.9944.
DIRECT_MATCH_MARGIN = 0.03
# An item makes at most this many direct matches with the items before it: the nearest (`kept_direct_matches`).
# Without a bound their number grew with the square of the population, every variant of a common name matching
# every variant in the next group: the linking bench's 10,817 person and 4,791 business names made 11,262 and
# 20,545 of them, three times its population (`--actors 3000 --background 30000`) 105,236 and 203,702. At three
# times, split (a): no bound recall 0.8068 at precision 0.9886; 20: 0.8046 at 0.9894 (87,702 and 151,559); 10:
# 0.8021 at 0.9902 (69,060 and 101,326); 5: 0.7953 at 0.9902 (48,248 and 58,849). At the bench's own size 10
# changes no pair (0.8719 at 0.9913), 5 loses one.
DIRECT_MATCHES_PER_ITEM = 10

__all__ = [
    "CENTRE_DEPTH",
    "DIRECT_MATCHES_PER_ITEM",
    "DIRECT_MATCH_MARGIN",
    "MATCHERS",
    "DocumentMatcher",
    "FuzzyMatcher",
    "ImageMatcher",
    "Item",
    "Matcher",
    "centre_labels",
    "direct_matches",
    "direct_threshold",
    "distinct_pairs",
    "fuzzy_evidence",
    "group_labels",
    "kept_direct_matches",
    "lead_mask",
    "matching_pairs",
    "nearest_few",
    "nearest_scores",
    "pair_scores",
]


@dataclass(frozen=True, eq=True)
class Item:
    """One item of a similarity kind as the exchange stores it: `value` is its canonical form (unique per
    kind: a photo's full PDQ hash), `extra` what else the score needs (a photo's quality and crop hashes)."""

    kind: str
    value: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    # An exact (kind, transport hash) the item also carries, keyed and linked like any exact indicator and
    # never stored as sent: a document's file SHA-256.
    exact: tuple[str, str] | None = None


class Matcher(ABC):
    kind: str
    fields: frozenset[str]
    closer_is_lower: bool  # a distance (lower is nearer) rather than a similarity (higher is nearer)
    # How items form groups. Transitive: the connected components of the "matches" graph (a new item bridging
    # two groups merges them), right for photos and documents, whose copies of one original are far from any
    # other. Not transitive: groups around a *centre*, the group's first item; a new item joins the group
    # whose centre it matches best (the oldest of equally near ones), else that of the member of depth 1 it
    # matches best (`CENTRE_DEPTH`, `centre_labels`), or becomes a centre. Names and addresses
    # are a dense space ("Jon Smith", "John Smith", "John Smyth", "Joan Smyth", ...): as components they
    # chained most names into one group (tests/bench/bench_fuzzy_linking.py); around centres, a group holds the
    # variants of one value.
    transitive: bool = True

    @abstractmethod
    def parse(self, item: Mapping[str, Any], path: str, errors: dict[str, list[str]]) -> Item | None:
        """The item a partner sent, or None with `errors` naming every bad field (never quoting a value)."""

    @abstractmethod
    def index_keys(self, item: Item) -> set[int]: ...

    @abstractmethod
    def probe_keys(self, item: Item, threshold: float) -> set[int]: ...

    @abstractmethod
    def score(self, a: Item, b: Item) -> float: ...

    def scores(self, item: Item, stored: Sequence[Item]) -> list[float]:
        """`score` of `item` against each of `stored` (a kind may do it in one vectorised pass)."""
        return [self.score(item, other) for other in stored]

    def matches(self, score: float, threshold: float) -> bool:
        return score <= threshold if self.closer_is_lower else score >= threshold

    def farthest(self, scores: list[float]) -> float | None:
        """The least near of several scores (a group's spread)."""
        if not scores:
            return None
        return max(scores) if self.closer_is_lower else min(scores)

    def nearest(self, scores: list[float]) -> float | None:
        if not scores:
            return None
        return min(scores) if self.closer_is_lower else max(scores)

    @abstractmethod
    def describe(self, score: float, threshold: float) -> str: ...

    # --- the in-memory index (exchange.similarity): many items at once ---------------------------------------
    # The index compares *units*: a photo's units are its hashes (full and crops), any other kind's unit is the
    # item itself. Keys are int64 (key_dtype says what they fit in) and belong to units; `units` packs the units
    # as rows of one array and `unit_scores` compares rows pairwise. Two items match when some pair of their
    # units sharing a key matches: exact for photos too, because a pair of hashes within the threshold shares
    # a chunk key (pigeonhole), and the variant distance is the least distance of the pairs compared. The
    # defaults go item by item; a kind overrides them with vectorised forms giving the same keys and scores.
    key_dtype: Any = np.int64
    key_space: int | None = None  # keys are in [0, key_space) (a dense index), or any int64

    def units(self, items: Sequence[Item]) -> tuple[IntArray, np.ndarray]:
        """(the item row of each unit, the units packed as the rows of one array)."""
        packed = np.empty(len(items), dtype=object)
        packed[:] = list(items)
        return np.arange(len(items), dtype=np.int64), packed

    def unit_scores(self, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        """The score of each packed row of `mine` against the same row of `theirs`, as float64."""
        return np.fromiter(
            (self.score(a, b) for a, b in zip(mine, theirs, strict=True)), np.float64, len(mine)
        )

    def unit_hits(
        self, mine: np.ndarray, theirs: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float
    ) -> np.ndarray:
        """Which pairs (my unit i[k], their unit j[k]) match at `threshold`: a boolean mask."""
        return np.asarray(self.matches(self.unit_scores(mine[i], theirs[j]), threshold))  # type: ignore[arg-type]

    def probe_hits(
        self,
        index: KeyIndex,
        mine: np.ndarray,
        theirs: np.ndarray,
        probes: tuple[IntArray, IntArray],
        threshold: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The (my unit, their unit) pairs that share a key and match, found in one pass without listing the
        candidates, for kinds that have one (photos: exchange.hamming); None for the others, which
        `unit_matches` probes and scores in numpy."""
        return None

    def prepare(self) -> None:  # noqa: B027 - a hook most kinds leave as it is
        """Get ready to match ahead of the first request (the photos' compiled probe); nothing for most kinds."""

    def key_arrays(self, items: Sequence[Item], packed: Packed | None = None) -> tuple[IntArray, IntArray]:
        """(unit row, key) of every index key of every unit (`units`' order), as parallel int64 arrays
        (`packed`: what `units(items)` gives, when the caller has it already)."""
        return _flatten([self.index_keys(item) for item in items])

    def probe_arrays(
        self,
        items: Sequence[Item],
        threshold: float,
        *,
        leads_only: bool = False,
        packed: Packed | None = None,
    ) -> tuple[IntArray, IntArray]:
        """(unit row, key) of every probe key of every unit (`units`' order), as parallel int64 arrays; with
        `leads_only`, of the *leads* only (an item's first unit: a photo's full hash; the only unit of the
        other kinds). Two items are compared on (lead, any unit) pairs both ways, never on two other units
        (two crops), so against an index of the same items the leads' probes alone find every matching pair
        (one way round), and the other units' probes are needed only against other items (`Probes`)."""
        return _flatten([self.probe_keys(item, threshold) for item in items])

    def mirror_probe_arrays(
        self, units: np.ndarray, leads: np.ndarray, threshold: float
    ) -> tuple[IntArray, IntArray] | None:
        """The other way round of the non-lead units' probes: (unit row, key) of the keys with which the
        packed `units` at positions `leads` (leads of stored items) find, in an index of new items' keys,
        every non-lead unit that the non-leads' own probes would have found them from. None for kinds whose
        items are one unit each (nothing to mirror). `Probes.stored_pairs` probes from whichever side has
        fewer units."""
        return None


def lead_mask(item_of: np.ndarray) -> np.ndarray:
    """Which units are leads, given the item of each unit (`Matcher.units`: an item's units come together, its
    lead first)."""
    return np.concatenate(([True], item_of[1:] != item_of[:-1]))[: len(item_of)]


def _flatten(keys: Sequence[set[int]]) -> tuple[IntArray, IntArray]:
    sizes = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    rows = np.repeat(np.arange(len(keys), dtype=np.int64), sizes)
    flat = np.fromiter((key for item in keys for key in sorted(item)), dtype=np.int64, count=int(sizes.sum()))
    return rows, flat


@lru_cache(maxsize=50_000)
def _photo_bits(full: str, crops: tuple[str, ...]) -> np.ndarray:
    """A photo's hashes as a (1 + MAX_IMAGE_CROPS, 32) uint8 array: full hash, crops, then the full hash again
    as padding; cached, as one batch scores each stored photo against many new ones."""
    hashes = [full, *crops[:MAX_IMAGE_CROPS]]
    hashes += [full] * (1 + MAX_IMAGE_CROPS - len(hashes))
    bits = _bits(hashes)
    bits.flags.writeable = False
    return bits


def _bits(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes as an (n, 32) uint8 array."""
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), 32)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each 32-byte hash over the last axis (uint8, contiguous): four 64-bit words at a time."""
    words = np.ascontiguousarray(x).view(np.uint64)
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def _halves(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and second 16 bytes of each 32-byte row, as (n,) arrays of 16-byte records (views, no copy):
    indexing one gathers a row's half in one read."""
    records = np.ascontiguousarray(units).view(np.dtype("V16"))  # (n, 2)
    return records[:, 0], records[:, 1]


def _words(records: np.ndarray) -> np.ndarray:
    """16-byte records as (n, 2) uint64 words."""
    return records.view(np.uint64).reshape(-1, 2)


_LOWER_HEX = re.compile("[0-9a-f]*")


def _all_pdq_hex(values: list[Any]) -> bool:
    """Whether every value is a PDQ hash (64 lowercase hex characters): `_hex_problem` of none, in one pass
    (a 5,000-photo submission has 90,000 crop hashes)."""
    return all(type(v) is str and len(v) == 64 for v in values) and bool(
        _LOWER_HEX.fullmatch("".join(values))
    )


def _hex_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string of 64 lowercase hex characters (a PDQ hash)"
    if len(value) != 64:
        return f"must be 64 hex characters (a 256-bit PDQ hash), got {len(value)} characters"
    if not is_pdq_hex(value):
        return "must be lowercase hexadecimal (0-9, a-f)"
    return None


class ImageMatcher(Matcher):
    """Product photos: the full photo's PDQ hash with its quality and sub-crop hashes (exchange.perceptual);
    the score is the variant distance in bits (a match at 31 or fewer, PDQ's default); indexed by multi-index
    hashing over the 16-bit chunks of every hash of the photo."""

    kind = IMAGE_KIND
    fields = frozenset({"kind", "hash", "quality", "crops"})
    closer_is_lower = True

    def parse(self, item: Mapping[str, Any], path: str, errors: dict[str, list[str]]) -> Item | None:
        before = len(errors)
        unknown = sorted(set(item) - self.fields)
        if unknown:
            errors[f"{path}.{unknown[0]}"] = [
                "unknown field; an image indicator has 'kind', 'hash', 'quality' and 'crops'"
            ]
        value = item.get("hash")
        problem = "is required" if value is None else _hex_problem(value)
        if problem:
            errors[f"{path}.hash"] = [problem]
        quality = item.get("quality")
        if quality is None:
            errors[f"{path}.quality"] = ["is required: the PDQ quality score (0-100) the hash came with"]
        elif not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
            errors[f"{path}.quality"] = ["must be an integer from 0 to 100 (PDQ's quality score)"]
        elif quality < IMAGE_MIN_QUALITY:
            errors[f"{path}.quality"] = [
                f"is {quality}: hashes of quality below {IMAGE_MIN_QUALITY} (flat images) are too unreliable "
                "to match on; do not send them"
            ]
        crops = item.get("crops", [])
        if not isinstance(crops, list):
            errors[f"{path}.crops"] = ["must be a list of PDQ hashes (the sub-crop variants), possibly empty"]
        elif len(crops) > MAX_IMAGE_CROPS:
            errors[f"{path}.crops"] = [f"at most {MAX_IMAGE_CROPS} sub-crop hashes, got {len(crops)}"]
        elif not _all_pdq_hex(crops):  # the common case checked at once; else the first bad crop is named
            for k, crop in enumerate(crops):
                crop_problem = _hex_problem(crop)
                if crop_problem:
                    errors[f"{path}.crops[{k}]"] = [crop_problem]
                    break
        if len(errors) > before:
            return None
        unique_crops = list(dict.fromkeys(str(c) for c in crops))
        return Item(IMAGE_KIND, str(value), {"quality": quality, "crops": unique_crops})

    @staticmethod
    def hashes(item: Item) -> tuple[str, ...]:
        return (item.value, *item.extra.get("crops", ()))

    # The variant distance compares one photo's full hash with every hash of the other, never two crops: so
    # full hashes are indexed in space 0 and crops in space 1, a new photo's full hash probes both and its
    # crops probe the full hashes only (a quarter of the candidates of probing everything against everything).
    FULL, CROP = 0, 1

    def index_keys(self, item: Item) -> set[int]:
        keys = set(chunk_keys(item.value, self.FULL))
        for crop in item.extra.get("crops", ()):
            keys.update(chunk_keys(crop, self.CROP))
        return keys

    def probe_keys(self, item: Item, threshold: float) -> set[int]:
        keys = probe_keys(item.value, int(threshold), (self.FULL, self.CROP))
        for crop in item.extra.get("crops", ()):
            keys |= probe_keys(crop, int(threshold), (self.FULL,))
        return keys

    def score(self, a: Item, b: Item) -> float:
        return variant_distance(self.hashes(a), self.hashes(b))

    def scores(self, item: Item, stored: Sequence[Item]) -> list[float]:
        """The variant distances in one numpy pass: the new photo's full hash against every hash of each
        stored photo, and each of its hashes against each stored full hash."""
        if not stored:
            return []
        query = _photo_bits(item.value, tuple(item.extra.get("crops", ())))  # (19, 32): full first
        theirs = np.stack(
            [_photo_bits(o.value, tuple(o.extra.get("crops", ()))) for o in stored]
        )  # (n, 19, 32)
        # A photo's rows past its own crops repeat its full hash: distances already counted, harmless.
        to_all_of_theirs = _popcount(np.bitwise_xor(query[0], theirs)).min(axis=1)  # our full vs all theirs
        to_their_full = _popcount(np.bitwise_xor(query[:, None, :], theirs[:, 0, :][None, :, :])).min(axis=0)
        return [float(d) for d in np.minimum(to_all_of_theirs, to_their_full)]

    def describe(self, score: float, threshold: float) -> str:
        return f"near-duplicate photos, {int(score)} of {PDQ_BITS} bits apart (a match is {int(threshold)} or fewer)"

    key_dtype = np.int32  # (space * 16 + chunk position) << 16 | the chunk's value: 21 bits
    key_space = 2 * INDEX_CHUNKS << INDEX_CHUNK_BITS

    def units(self, items: Sequence[Item]) -> tuple[IntArray, np.ndarray]:
        """Every hash of every photo, its full hash first, as (n, 32) uint8 rows."""
        rows, texts = [], []
        for row, item in enumerate(items):
            hashes = [item.value, *list(item.extra.get("crops", ()))[:MAX_IMAGE_CROPS]]
            rows.extend([row] * len(hashes))
            texts.extend(hashes)
        units = np.frombuffer(bytes.fromhex("".join(texts)), dtype=np.uint8).reshape(len(texts), 32)
        return np.asarray(rows, dtype=np.int64), units

    def unit_scores(self, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        return _popcount(np.bitwise_xor(mine, theirs)).astype(np.float64)

    def unit_hits(
        self, mine: np.ndarray, theirs: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float
    ) -> np.ndarray:
        """As the base, in two steps: the distance over the first 128 bits of each pair, then over the rest
        for the pairs still within the threshold. An unrelated pair is about 64 bits apart on the first half
        alone, so nearly every candidate is dropped after reading 16 of its 32 bytes (a photo's 80,000
        candidates among 10 million stored hashes: a quarter of the time). Each side's first half is gathered
        as one 16-byte record per pair."""
        a, b = _halves(mine), _halves(theirs)
        x, y = _words(a[0][i]), _words(b[0][j])  # (pairs, 2) words: the first 128 bits
        first = np.bitwise_count(x[:, 0] ^ y[:, 0]).astype(np.int16)
        first += np.bitwise_count(x[:, 1] ^ y[:, 1])
        near = np.flatnonzero(first <= threshold)
        x, y = _words(a[1][i[near]]), _words(b[1][j[near]])
        rest = np.bitwise_count(x ^ y).sum(axis=1, dtype=np.int64)
        hits = np.zeros(len(i), dtype=np.bool_)
        hits[near[first[near] + rest <= threshold]] = True
        return hits

    def probe_hits(
        self,
        index: KeyIndex,
        mine: np.ndarray,
        theirs: np.ndarray,
        probes: tuple[IntArray, IntArray],
        threshold: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The candidates walked and scored in one compiled pass (`exchange.hamming.hamming_pairs`): the same
        pairs as probing the index and `unit_hits`, a pair repeated as often, without writing out the
        candidates, most of which are far apart (a 5,000-photo submission against 10,000 stored photos has
        10 million of them)."""
        from exchange import hamming  # numba: imported when photos are first matched

        return hamming.hamming_pairs(index.probe_arrays(), *probes, mine, theirs, int(threshold))

    def prepare(self) -> None:
        from exchange import hamming

        hamming.warm_up()

    def _chunks(self, items: Sequence[Item], packed: Packed | None) -> tuple[np.ndarray, np.ndarray]:
        """(is a crop, the 16 chunk values) of every unit."""
        item_of, units = packed if packed is not None else self.units(items)
        crop = ~lead_mask(item_of)
        values = np.ascontiguousarray(units).view(">u2").reshape(len(units), INDEX_CHUNKS)
        return crop, values.astype(np.int64)

    def key_arrays(self, items: Sequence[Item], packed: Packed | None = None) -> tuple[IntArray, IntArray]:
        crop, values = self._chunks(items, packed)
        position = np.arange(INDEX_CHUNKS, dtype=np.int64)
        space = np.where(crop, self.CROP, self.FULL)[:, None]
        keys = ((space * INDEX_CHUNKS + position) << INDEX_CHUNK_BITS) | values
        return np.repeat(np.arange(len(crop), dtype=np.int64), INDEX_CHUNKS), keys.ravel()

    def probe_arrays(
        self,
        items: Sequence[Item],
        threshold: float,
        *,
        leads_only: bool = False,
        packed: Packed | None = None,
    ) -> tuple[IntArray, IntArray]:
        crop, values = self._chunks(items, packed)
        fulls = np.flatnonzero(~crop)
        # A full hash probes the full hashes' space and the crops' (the same keys, shifted by one space); a
        # crop probes the full hashes' only. Rows are int32 too: a submission's probes run to millions.
        parts = [
            self._probes(fulls, values[fulls], threshold, self.FULL),
            self._probes(fulls, values[fulls], threshold, self.CROP),
        ]
        if not leads_only:
            crops = np.flatnonzero(crop)
            parts.append(self._probes(crops, values[crops], threshold, self.FULL))
        return np.concatenate([rows for rows, _ in parts]), np.concatenate([keys for _, keys in parts])

    def mirror_probe_arrays(
        self, units: np.ndarray, leads: np.ndarray, threshold: float
    ) -> tuple[IntArray, IntArray]:
        """Stored full hashes probing the crops' space: what a new photo's crops find by probing the full
        hashes' space, found from the stored side (cheaper when the store holds fewer photos than the batch
        holds crops: 10,000 stored photos against a 5,000-photo submission's 90,000 crops)."""
        values = np.ascontiguousarray(units[leads]).view(">u2").reshape(len(leads), INDEX_CHUNKS)
        return self._probes(np.asarray(leads), values.astype(np.int64), threshold, self.CROP)

    def _probes(
        self, rows: np.ndarray, values: np.ndarray, threshold: float, space: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, key) of every key within `threshold // INDEX_CHUNKS` bits of each of the rows' 16 chunk
        values (`values`, (n, 16)), in `space`: the multi-index probes, int32."""
        masks = np.asarray(neighbour_masks(int(threshold) // INDEX_CHUNKS), dtype=np.int32)
        position = (np.arange(INDEX_CHUNKS, dtype=np.int32) + space * INDEX_CHUNKS) << INDEX_CHUNK_BITS
        keys = (values.astype(np.int32)[:, :, None] ^ masks[None, None, :]) | position[None, :, None]
        return np.repeat(rows.astype(np.int32), INDEX_CHUNKS * len(masks)), keys.reshape(-1)


def _band_key(hex_key: str) -> int:
    """A band key as a signed 64-bit integer (its first 16 hex digits): what the index column holds."""
    value = int(hex_key[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


class DocumentMatcher(Matcher):
    """Documents: the keyed MinHash of the normalised text (exchange.documents) and the file's SHA-256; the
    score is the estimated Jaccard similarity (a match at 0.8 or more); indexed by LSH bands (32 bands of 8
    values: pairs at 0.8 share a band with probability 0.997, pairs at 0.5 with 0.118)."""

    kind = DOCUMENT_KIND
    fields = frozenset({"kind", "hash", "minhash"})
    closer_is_lower = False

    def parse(self, item: Mapping[str, Any], path: str, errors: dict[str, list[str]]) -> Item | None:
        before = len(errors)
        unknown = sorted(set(item) - self.fields)
        if unknown:
            errors[f"{path}.{unknown[0]}"] = [
                "unknown field; a document indicator has 'kind', 'hash' and 'minhash'"
            ]
        sha = item.get("hash")
        if sha is None:
            errors[f"{path}.hash"] = [
                "is required: the SHA-256 of the document's file, 64 lowercase hex characters"
            ]
        elif not is_transport_hash(sha):
            errors[f"{path}.hash"] = [
                "must be the SHA-256 of the document's file: 64 lowercase hex characters"
            ]
        minhash = item.get("minhash")
        if minhash is None:
            errors[f"{path}.minhash"] = ["is required: the document's keyed MinHash (exchange.documents)"]
        elif not is_minhash_hex(minhash):
            size = len(minhash) if isinstance(minhash, str) else None
            errors[f"{path}.minhash"] = [
                f"must be {MINHASH_HEX_LENGTH} lowercase hex characters (a {NUM_PERM}-value MinHash)"
                + (f", got {size} characters" if size is not None and size != MINHASH_HEX_LENGTH else "")
            ]
        if len(errors) > before:
            return None
        return Item(DOCUMENT_KIND, str(minhash), {}, exact=(DOCUMENT_KIND, str(sha)))

    def index_keys(self, item: Item) -> set[int]:
        return {_band_key(key) for key in lsh_bands(item.value)}

    def probe_keys(self, item: Item, threshold: float) -> set[int]:
        return self.index_keys(item)

    def score(self, a: Item, b: Item) -> float:
        return jaccard_estimate(a.value, b.value)

    def units(self, items: Sequence[Item]) -> tuple[IntArray, np.ndarray]:
        """Each document's MinHash values, (n, NUM_PERM) uint32."""
        packed = np.frombuffer(bytes.fromhex("".join(item.value for item in items)), dtype=">u4")
        return np.arange(len(items), dtype=np.int64), packed.reshape(len(items), NUM_PERM)

    def unit_scores(self, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        return (mine == theirs).mean(axis=1) if len(mine) else np.zeros(0, dtype=np.float64)

    def describe(self, score: float, threshold: float) -> str:
        return (
            f"near-duplicate documents, estimated Jaccard similarity {score:.2f} (a match is {threshold:.2f} "
            "or more)"
        )


@lru_cache(maxsize=200_000)
def _encoding_words(value: str) -> np.ndarray:
    """A fuzzy encoding as 16 uint64 words (cached like photos: one batch scores a stored item many times)."""
    words = np.frombuffer(bytes.fromhex(value), dtype=np.uint64)
    words.flags.writeable = False
    return words


class FuzzyMatcher(Matcher):
    """Names and addresses typed differently: the hardened keyed Bloom-filter encoding (exchange.fuzzy) made on
    the partner's side with the consortium key; the score is the Dice similarity of the set bits (a match at the
    kind's threshold, 0.70 for names and 0.85 for addresses by default); indexed by Hamming LSH bit sampling
    (exchange.fuzzy_blocking: one key per band, the band's sampled bits, namespaced by kind and band)."""

    fields = frozenset({"kind", "encoding"})
    closer_is_lower = False
    transitive = False  # groups around centres (Matcher.transitive)

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.spec_kind = FUZZY_ENCODING_KIND[kind]
        self.lsh: HammingLSH = LSH_BY_KIND[self.spec_kind]
        # band b's key k is stored as (kind code << 56) | (b << 40) | k: rows <= 40 bits, bands < 65,536
        assert self.lsh.rows <= 40 and self.lsh.bands < 1 << 16
        self._prefix = (FUZZY_WIRE_KINDS.index(kind) + 1) << 56

    def parse(self, item: Mapping[str, Any], path: str, errors: dict[str, list[str]]) -> Item | None:
        before = len(errors)
        unknown = sorted(set(item) - self.fields)
        if unknown:
            errors[f"{path}.{unknown[0]}"] = [
                f"unknown field; a {self.kind} indicator has 'kind' and 'encoding' (no 'hash': the value is "
                "never sent, only its keyed encoding)"
            ]
        encoding = item.get("encoding")
        if encoding is None:
            errors[f"{path}.encoding"] = [
                f"is required: the keyed Bloom-filter encoding of the {self.spec_kind.replace('_', ' ')} "
                "(exchange.fuzzy.encode)"
            ]
        elif not is_fuzzy_encoding(encoding):
            size = len(encoding) if isinstance(encoding, str) else None
            errors[f"{path}.encoding"] = [
                f"must be {ENCODING_HEX_CHARS} lowercase hex characters (a {FILTER_BITS}-bit encoding)"
                + (f", got {size} characters" if size is not None and size != ENCODING_HEX_CHARS else "")
            ]
        else:
            ones = int(encoding, 16).bit_count()
            if not MIN_BITS_SET <= ones <= MAX_BITS_SET:  # exchange.fuzzy says why
                errors[f"{path}.encoding"] = [
                    f"has {ones} of {FILTER_BITS} bits set; an encoding of a real value sets between "
                    f"{MIN_BITS_SET} and {MAX_BITS_SET}"
                ]
        if len(errors) > before:
            return None
        return Item(self.kind, str(encoding), {})

    def index_keys(self, item: Item) -> set[int]:
        matrix = np.frombuffer(bytes.fromhex(item.value), dtype=np.uint8).reshape(1, FILTER_BYTES)
        keys = self.lsh.keys(matrix)[:, 0]
        return {self._prefix | (band << 40) | int(key) for band, key in enumerate(keys.tolist())}

    def probe_keys(self, item: Item, threshold: float) -> set[int]:
        return self.index_keys(item)

    def units(self, items: Sequence[Item]) -> tuple[IntArray, np.ndarray]:
        """Each encoding's words, (n, FILTER_BYTES // 8) uint64."""
        packed = np.frombuffer(bytes.fromhex("".join(item.value for item in items)), dtype=np.uint64)
        return np.arange(len(items), dtype=np.int64), packed.reshape(len(items), FILTER_BYTES // 8)

    def unit_scores(self, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
        common = np.bitwise_count(mine & theirs).sum(axis=1, dtype=np.int64)
        total = np.bitwise_count(mine).sum(axis=1, dtype=np.int64) + np.bitwise_count(theirs).sum(
            axis=1, dtype=np.int64
        )
        return np.divide(2 * common, total, out=np.zeros(len(mine)), where=total > 0)

    def key_arrays(self, items: Sequence[Item], packed: Packed | None = None) -> tuple[IntArray, IntArray]:
        matrix = np.frombuffer(bytes.fromhex("".join(item.value for item in items)), dtype=np.uint8).reshape(
            len(items), FILTER_BYTES
        )
        keys = self.lsh.keys(matrix).astype(np.int64)  # (bands, n)
        band = np.arange(self.lsh.bands, dtype=np.int64)[:, None]
        flat = (self._prefix | (band << 40) | keys).T.ravel()  # item by item
        return np.repeat(np.arange(len(items), dtype=np.int64), self.lsh.bands), flat

    def probe_arrays(
        self,
        items: Sequence[Item],
        threshold: float,
        *,
        leads_only: bool = False,
        packed: Packed | None = None,
    ) -> tuple[IntArray, IntArray]:
        return self.key_arrays(items)  # one unit per item: every unit is a lead

    def score(self, a: Item, b: Item) -> float:
        return self.scores(a, [b])[0]

    def scores(self, item: Item, stored: Sequence[Item]) -> list[float]:
        if not stored:
            return []
        theirs = np.stack([_encoding_words(other.value) for other in stored])
        mine = np.broadcast_to(_encoding_words(item.value), theirs.shape)
        return [float(x) for x in self.unit_scores(mine, theirs)]

    def describe(self, score: float, threshold: float) -> str:
        what = {
            "person_name": "names",
            "business_name": "business names",
            "shipping_address": "shipping addresses",
            "return_address": "return addresses",
        }[self.spec_kind]
        return f"similar {what}, Dice similarity {score:.2f} of the keyed encodings (a match is {threshold:.2f} or more)"


MATCHERS: dict[str, Matcher] = {
    matcher.kind: matcher
    for matcher in (ImageMatcher(), DocumentMatcher(), *(FuzzyMatcher(kind) for kind in FUZZY_WIRE_KINDS))
}
assert set(MATCHERS) == set(SIMILARITY_KINDS), "every similarity kind has its matcher"


class Probes:
    """Items of one kind ready for the index at a threshold: their units (`Matcher.units`), their probe keys
    and an index of their own keys, each computed once, when first needed, for both the stored items' search
    (`stored_pairs`) and the batch's own (`matching_pairs`)."""

    def __init__(self, rule: Matcher, items: Sequence[Item], threshold: float) -> None:
        self.rule, self.items, self.threshold = rule, items, threshold
        self.item_of, self.units = rule.units(items)
        self.is_lead = lead_mask(self.item_of)

    @cached_property
    def lead_probes(self) -> tuple[IntArray, IntArray]:
        return self.rule.probe_arrays(
            self.items, self.threshold, leads_only=True, packed=(self.item_of, self.units)
        )

    @cached_property
    def all_probes(self) -> tuple[IntArray, IntArray]:
        if self.non_leads == 0:
            return self.lead_probes
        return self.rule.probe_arrays(self.items, self.threshold, packed=(self.item_of, self.units))

    @property
    def non_leads(self) -> int:
        return len(self.item_of) - len(self.items)

    @cached_property
    def index(self) -> KeyIndex:
        """A throwaway index of the items' own keys."""
        index = KeyIndex(self.rule.key_dtype, self.rule.key_space)
        index.add(*self.rule.key_arrays(self.items, (self.item_of, self.units)))
        return index

    def stored_pairs(self, index: KeyIndex, stored: np.ndarray, stored_leads: np.ndarray) -> IntArray:
        """The (unit of mine, stored unit) pairs that match: `index` holds the stored units' keys, `stored`
        the packed units, `stored_leads` their leads' positions. My leads probe the stored index; my other
        units' comparisons with stored leads are probed from whichever side has fewer units: mine into the
        stored index, or the stored leads into my own (`Matcher.mirror_probe_arrays`): a 5,000-photo
        submission's 90,000 crops against 10,000 stored photos' full hashes is 27 million probe keys one
        way and 2.7 million the other. Shape (m, 2), a pair possibly repeated."""
        rule, limit = self.rule, self.threshold
        mirror = (
            rule.mirror_probe_arrays(stored, stored_leads, limit)
            if 0 < len(stored_leads) < self.non_leads
            else None
        )
        if mirror is None:
            return unit_matches(rule, index, self.units, stored, self.all_probes, limit)
        forward = unit_matches(rule, index, self.units, stored, self.lead_probes, limit)
        back = unit_matches(rule, self.index, stored, self.units, mirror, limit)
        return np.concatenate([forward, back[:, ::-1]])


def centre_labels(
    pairs: Iterable[tuple[int, int]],
    count: int,
    scores: Iterable[float] | None = None,
    closer_is_lower: bool = False,
) -> list[int]:
    """Groups around centres from the matching (a, b) pairs, a > b, of `count` items taken oldest first: each
    item joins the centre it matches best (`scores`, parallel to `pairs`: the highest similarity, or the lowest
    distance with `closer_is_lower`; the oldest of equally near ones, and the oldest when no scores are given);
    failing that, the group of the member it matches best among those that joined a centre directly (one step
    out, never further: `CENTRE_DEPTH`); or it is a centre itself. Per item, its centre's position.

    Joining the nearest centre rather than the oldest keeps a variant with its own original when an earlier,
    looser centre also matches it (tests/bench/bench_fuzzy_linking.py, addresses at 0.80: recall on named,
    addressed pairs 0.60 -> 0.72). The second step keeps a variant that has drifted from the original but not
    from another variant of it ("Anclrew Taylor" / "Andrew Taylor" / "Andrew Tayplor": 0.715 -> 0.805 at the
    default thresholds, precision 0.995 -> 0.991); a third added nothing."""
    pairs = list(pairs)
    earlier: dict[int, list[tuple[float, int]]] = {}
    for (a, b), score in zip(pairs, [0.0] * len(pairs) if scores is None else scores, strict=True):
        earlier.setdefault(a, []).append((score, b))
    label = list(range(count))
    depth = [0] * count  # 0: a centre; 1: joined a centre; 2: joined through a member of depth 1
    for item in range(count):
        for step in range(1, CENTRE_DEPTH + 1):
            options = [(score, b, b) for score, b in earlier.get(item, ()) if depth[b] == step - 1]
            through = best_centre(options, closer_is_lower)
            if through is not None:
                label[item], depth[item] = label[through], step
                break
    return label


def best_centre[T](options: Sequence[tuple[float, Any, T]], closer_is_lower: bool = False) -> T | None:
    """The centre an item joins among `options`, each (score, age, what joining it means): the nearest (the
    highest similarity, or the lowest distance with `closer_is_lower`), then the oldest (the lowest age); None
    when there is none. The one choice rule of `centre_labels` and of the store (`exchange.similarity`)."""
    nearest = nearest_few(options, 1, closer_is_lower)
    return nearest[0] if nearest else None


def nearest_few[T](
    options: Iterable[tuple[float, Any, T]], count: int, closer_is_lower: bool = False
) -> list[T]:
    """The `count` nearest of `options`, each (score, age, what), in `best_centre`'s order: the nearest first,
    then the oldest."""
    sign = 1.0 if closer_is_lower else -1.0
    return [option[2] for option in heapq.nsmallest(count, options, key=lambda o: (sign * o[0], o[1]))]


def kept_direct_matches[T](options: Iterable[tuple[float, Any, T]], closer_is_lower: bool = False) -> list[T]:
    """Of one item's direct matches with the items before it, each (score, age, what), those it keeps: the
    `DIRECT_MATCHES_PER_ITEM` nearest. The one rule of `direct_matches` and of the store
    (`exchange.similarity`)."""
    return nearest_few(options, DIRECT_MATCHES_PER_ITEM, closer_is_lower)


def pair_scores(rule: Matcher, items: Sequence[Item], pairs: Sequence[tuple[int, int]]) -> list[float]:
    """`rule`'s score of each (a, b) pair of positions in `items` (vectorised when each item is one unit)."""
    if not pairs:
        return []
    item_of, units = rule.units(items)
    if len(item_of) != len(items):
        return [rule.score(items[a], items[b]) for a, b in pairs]
    at = np.asarray(pairs, dtype=np.int64)
    return [float(x) for x in rule.unit_scores(units[at[:, 0]], units[at[:, 1]])]


def matching_pairs(
    rule: Matcher, items: Sequence[Item], threshold: float, probes: Probes | None = None
) -> list[tuple[int, int]]:
    """The (a, b) positions, a > b, of the items of one kind that match each other at `threshold`: through a
    throwaway `KeyIndex` of their units' keys (`unit_matches`; never all pairs)."""
    if len(items) < 2:
        return []
    probes = probes or Probes(rule, items, threshold)
    item_of, is_lead = probes.item_of, probes.is_lead

    def once(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        # Leads probe everything, so a pair of leads is found both ways round (keep it with the earlier item
        # second) and a lead with another unit one way only (keep it); never an item with itself.
        a, b = item_of[i], item_of[j]
        return np.asarray((b < a) | ((a != b) & ~is_lead[j]))

    pairs = unit_matches(rule, probes.index, probes.units, probes.units, probes.lead_probes, threshold, once)
    a, b = item_of[pairs[:, 0]], item_of[pairs[:, 1]]
    found = distinct_pairs(np.maximum(a, b), np.minimum(a, b))
    return [(int(a), int(b)) for a, b in found.tolist()]


def nearest_scores(
    rule: Matcher,
    pairs: IntArray,
    mine: tuple[np.ndarray, np.ndarray],
    theirs: tuple[np.ndarray, np.ndarray],
) -> tuple[IntArray, IntArray, np.ndarray]:
    """(my item, their item, score) per distinct item pair among matching unit `pairs` ((my unit, their unit),
    as `unit_matches` gives them), sorted; `mine` and `theirs` are each (the item of each unit, the packed
    units). The score is the nearest of the pair's units' scores: the item pair's own score, since a photo's
    variant distance is its nearest pair of hashes compared, and a pair within the threshold is among those
    found (each other kind has one unit per item)."""
    scores = rule.unit_scores(mine[1][pairs[:, 0]], theirs[1][pairs[:, 1]])
    codes = (mine[0][pairs[:, 0]].astype(np.int64) << 31) | theirs[0][pairs[:, 1]].astype(np.int64)
    order = np.lexsort((scores if rule.closer_is_lower else -scores, codes))
    codes, scores = codes[order], scores[order]
    first = np.concatenate(([True], codes[1:] != codes[:-1]))[: len(codes)]
    return codes[first] >> 31, codes[first] & 0x7FFF_FFFF, scores[first]


def distinct_pairs(a: np.ndarray, b: np.ndarray) -> IntArray:
    """The distinct (a[k], b[k]) pairs of two arrays of non-negative ints below 2**31, sorted: shape (m, 2).
    One sort of int64 codes (np.unique(axis=0) sorts rows as structured records, several times slower)."""
    codes = np.sort((np.asarray(a, dtype=np.int64) << 31) | np.asarray(b, dtype=np.int64))
    codes = codes[np.concatenate(([True], codes[1:] != codes[:-1]))] if codes.size else codes
    return np.stack([codes >> 31, codes & 0x7FFF_FFFF], axis=1)


def unit_matches(
    rule: Matcher,
    index: KeyIndex,
    mine: np.ndarray,
    theirs: np.ndarray,
    probes: tuple[IntArray, IntArray],
    threshold: float,
    wanted: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    chunk: int = 500_000,
) -> IntArray:
    """The (my unit, their unit) pairs that share a key (`index` holds theirs, `probes` are mine) and match at
    `threshold`: shape (m, 2), a pair possibly repeated. Probed `chunk` keys at a time and scored pairwise, so
    that memory stays bounded however many candidates a large batch has (a photo against 10 million stored
    hashes has about 80,000). `wanted` (a mask over candidate pairs, given as my units and their units) drops
    candidates before they are scored. A kind with a compiled probe (`Matcher.probe_hits`: photos) finds the
    matching pairs in one pass instead, and `wanted` is applied to them: the same pairs."""
    fast = rule.probe_hits(index, mine, theirs, probes, threshold)
    if fast is not None:
        i, j = fast
        if wanted is not None:  # after scoring rather than before: the same pairs
            keep = wanted(i, j)
            i, j = i[keep], j[keep]
        return np.stack([i, j], axis=1)  # int64, as the loop gives them
    rows, keys = probes
    kept = []
    for start in range(0, len(rows), chunk):
        codes = index.codes(rows[start : start + chunk], keys[start : start + chunk])
        for at in range(0, len(codes), 4 * chunk):
            i, j = split(codes[at : at + 4 * chunk])
            if wanted is not None:
                keep = wanted(i, j)
                i, j = i[keep], j[keep]
            hits = rule.unit_hits(mine, theirs, i, j, threshold)
            kept.append(np.stack([i[hits], j[hits]], axis=1).astype(np.int64))
    return np.concatenate(kept) if kept else np.zeros((0, 2), dtype=np.int64)


def group_labels(rule: Matcher, items: Sequence[Item], threshold: float) -> list[int]:
    """The near-duplicate groups of `items` (one kind, oldest first) at `threshold`, formed as the store forms
    them (through the index keys, `matching_pairs`; never all pairs): per item, the position of the first item
    of its group. Components of the "matches" graph, or groups around centres (`Matcher.transitive`)."""
    if not rule.transitive:
        return fuzzy_evidence(rule, items, threshold)[0]
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in matching_pairs(rule, items, threshold):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(len(items))]


def direct_threshold(rule: Matcher, threshold: float) -> float:
    """The score at which two items in different groups around centres are a direct match (`DIRECT_MATCH_MARGIN`
    nearer than the kind's `threshold`)."""
    return threshold - DIRECT_MATCH_MARGIN if rule.closer_is_lower else threshold + DIRECT_MATCH_MARGIN


def direct_matches(
    rule: Matcher,
    labels: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    scores: Sequence[float],
    threshold: float,
) -> list[tuple[int, int, float]]:
    """The direct matches among items grouped around centres (`labels`, from `centre_labels`): the matching
    (a, b) pairs (a > b, with their `scores`, found at `threshold`) whose items are in different groups and
    match at `direct_threshold`, as (a, b, score). Each is one indicator of the kind, held by the sellers of
    both items (exchange.similarity), beside the groups: their sellers link through it as through one group, and
    a group and a direct match, being of one kind, count as one piece of evidence (graph.linking.rules).
    Each item a keeps its nearest few b (`kept_direct_matches`)."""
    limit = direct_threshold(rule, threshold)
    options: dict[int, list[tuple[float, int, int]]] = {}
    for (a, b), score in zip(pairs, scores, strict=True):
        if labels[a] != labels[b] and rule.matches(score, limit):
            options.setdefault(a, []).append((score, b, b))
    kept = {(a, b) for a, found in options.items() for b in kept_direct_matches(found, rule.closer_is_lower)}
    return [(a, b, score) for (a, b), score in zip(pairs, scores, strict=True) if (a, b) in kept]


def fuzzy_evidence(
    rule: Matcher, items: Sequence[Item], threshold: float
) -> tuple[list[int], list[tuple[int, int, float]]]:
    """The groups around centres of `items` (one kind, oldest first, `group_labels`) and their direct matches
    (`direct_matches`): everything the store forms for a kind that is not transitive."""
    pairs = matching_pairs(rule, items, threshold)
    scores = pair_scores(rule, items, pairs)
    labels = centre_labels(pairs, len(items), scores, rule.closer_is_lower)
    return labels, direct_matches(rule, labels, pairs, scores, threshold)
