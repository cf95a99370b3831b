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

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.contract import IMAGE_KIND, IMAGE_MIN_QUALITY, MAX_IMAGE_CROPS
from exchange.normalization import SIMILARITY_KINDS
from exchange.perceptual import PDQ_BITS, chunk_keys, is_pdq_hex, probe_keys, variant_distance

__all__ = ["MATCHERS", "ImageMatcher", "Item", "Matcher"]


@dataclass(frozen=True, eq=True)
class Item:
    """One item of a similarity kind as the exchange stores it: `value` is its canonical form (unique per
    kind: a photo's full PDQ hash), `extra` what else the score needs (a photo's quality and crop hashes)."""

    kind: str
    value: str
    extra: Mapping[str, Any] = field(default_factory=dict)


class Matcher(ABC):
    kind: str
    fields: frozenset[str]
    closer_is_lower: bool  # a distance (lower is nearer) rather than a similarity (higher is nearer)

    @abstractmethod
    def parse(self, item: Mapping[str, Any], path: str, errors: dict[str, list[str]]) -> Item | None:
        """The item a partner sent, or None with `errors` naming every bad field (never quoting a value)."""

    @abstractmethod
    def index_keys(self, item: Item) -> set[int]: ...

    @abstractmethod
    def probe_keys(self, item: Item, threshold: float) -> set[int]: ...

    @abstractmethod
    def score(self, a: Item, b: Item) -> float: ...

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
        else:
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

    def index_keys(self, item: Item) -> set[int]:
        return {key for h in self.hashes(item) for key in chunk_keys(h)}

    def probe_keys(self, item: Item, threshold: float) -> set[int]:
        return {key for h in self.hashes(item) for key in probe_keys(h, int(threshold))}

    def score(self, a: Item, b: Item) -> float:
        return variant_distance(self.hashes(a), self.hashes(b))

    def describe(self, score: float, threshold: float) -> str:
        return f"near-duplicate photos, {int(score)} of {PDQ_BITS} bits apart (a match is {int(threshold)} or fewer)"


MATCHERS: dict[str, Matcher] = {matcher.kind: matcher for matcher in (ImageMatcher(),)}
assert set(MATCHERS) == set(SIMILARITY_KINDS), "every similarity kind has its matcher"
