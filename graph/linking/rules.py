"""The configurable rules: indicator strength, which weak indicators count as different evidence
(:func:`weak_indicators_link`, the one statement of the weak rule), hub thresholds, the per-platform cap
(:class:`HubRule`, the one statement of hub suppression) and their per-kind-code arrays for the column core
(``_Rules``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from exchange.contract import FUZZY_FAMILY, FUZZY_WIRE_KINDS
from exchange.normalization import STRONG_KINDS, WEAK_KINDS
from graph.linking.arrays import BoolArray, IntArray, distinct
from graph.linking.records import Strength, SuppressionReason

# A kind's code in the column API is its index in LINK_KINDS (unless the caller passes ``kinds``). A reused
# product photo is weak: stock and brand shots are reused by unrelated sellers, so a photo links two sellers only
# with another weak kind beside it (a store name, an address) or through a strong one.
DEFAULT_STRENGTH: Mapping[str, Strength] = MappingProxyType(
    {
        **dict.fromkeys(STRONG_KINDS, "strong"),
        **dict.fromkeys(WEAK_KINDS, "weak"),
        "image": "weak",
        # A near-identical falsified document (a fake authorisation letter, a forged invoice) is as particular to
        # its author as a bank account: strong.
        "document": "strong",
        # Names and addresses typed differently (exchange.fuzzy): many people share a name, and a fuzzy match is
        # looser than an exact one, so each is weak: a fuzzy name and a fuzzy address together link two sellers.
        "person_name": "weak",
        "business_name": "weak",
        "shipping_address_fuzzy": "weak",
        "return_address_fuzzy": "weak",
    }
)

# Maximum number of sellers an indicator may have and still link. A genuine actor rarely runs more than a couple
# of dozen accounts on one bank account or phone; a warehouse or a forwarder address is shared legitimately by
# more people, and store names, domains and device ids collide easily (template shops, emulator device ids).
DEFAULT_THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {
        "email": 25,
        "phone": 25,
        "tax_id": 25,
        "business_registration": 25,
        "bank_account": 25,
        "payment_account": 25,
        "crypto_wallet": 25,
        "shipping_address": 15,
        "return_address": 15,
        "store_name": 10,
        "website_domain": 10,
        "device_id": 10,
        # Counted per near-duplicate group (one image indicator per group: exchange.similarity): the brand's own
        # product shot, reused by dozens of unrelated counterfeiters, is a hub like a forwarder's address.
        "image": 10,
        "document": 10,  # per near-duplicate group, like photos: a public template letter is a hub
        # per near-duplicate group too. A name's group holds the sellers of one name (groups around a centre:
        # exchange.matching.FuzzyMatcher), and a common name is held by many unrelated sellers; but a name is a
        # weak kind that links only beside an address or another weak kind, so a name group is suppressed only
        # far later than an address (tests/bench/bench_fuzzy_linking.py: at 10 the common names' groups were
        # suppressed and their actors' pairs lost).
        "person_name": 100,
        "business_name": 100,
        "shipping_address_fuzzy": 15,
        "return_address_fuzzy": 15,
    }
)


def kind_family(kind: str) -> str:
    """The kind's family: a fuzzy address kind belongs to the exact address kind it shadows, a business name to
    the person's name, any other kind is its own family (``exchange.contract.FUZZY_FAMILY``)."""
    return FUZZY_FAMILY.get(kind, kind)


# Kinds whose indicators count as one piece of evidence however many of them two sellers share: a name or an
# address typed differently is several indicators of its kind, its groups around centres and the direct matches
# across them (exchange.similarity), and two of those must not pass for two names. Two exact addresses, two
# photos, two store names still count as two.
ONE_PIECE_KINDS = frozenset(FUZZY_WIRE_KINDS)


def weak_pair_counts(kind_a: str, kind_b: str) -> bool:
    """Whether two *different* weak indicators that two sellers share, of these kinds, are two pieces of
    evidence: when their families differ, or when they are of one kind that is not one piece however many
    (``ONE_PIECE_KINDS``). Not when the kinds differ within one family: a partner sends an address both as the
    exact ``shipping_address`` token and as its ``shipping_address_fuzzy`` group, so one shared address alone
    would otherwise link. Two exact addresses, or a fuzzy name and a fuzzy address, count; a name's two groups
    (or its group and a direct match across groups) do not."""
    if kind_family(kind_a) != kind_family(kind_b):
        return True
    return kind_a == kind_b and kind_a not in ONE_PIECE_KINDS


def weak_indicators_link(kinds: Iterable[str]) -> bool:
    """The weak rule: whether two sellers sharing these weak indicators (their kinds, one entry per distinct
    indicator) are linked, i.e. some pair of them counts (:func:`weak_pair_counts`)."""
    kinds = list(kinds)
    # Some pair counts exactly when the kinds span two families, or one kind that counts twice is repeated.
    if len({kind_family(kind) for kind in kinds}) >= 2:
        return True
    repeated = [kind for kind in kinds if kind not in ONE_PIECE_KINDS]
    return len(repeated) != len(set(repeated))


def weak_groups_link(group: IntArray, kind: IntArray, family: IntArray, n_groups: int) -> BoolArray:
    """:func:`weak_indicators_link` of many groups at once: row i is one distinct shared weak indicator of
    group ``group[i]`` (``0..n_groups-1``, e.g. a seller pair) with kind code ``kind[i]``; ``family`` from
    :func:`family_codes`. The same statement: two families or more, or a kind that counts twice repeated."""
    codes, repeats = family[0], family[1].astype(np.bool_)
    width = max(int(codes.size), 1)
    families = np.bincount(distinct(group * width + codes[kind]) // width, minlength=n_groups)
    counted = repeats[kind]
    per_kind = group[counted] * width + kind[counted]
    repeated = np.zeros(n_groups, dtype=np.bool_)
    if per_kind.size:
        ordered = np.sort(per_kind)
        repeated[ordered[1:][ordered[1:] == ordered[:-1]] // width] = True
    return (families >= 2) | repeated


def family_codes(kinds: Sequence[str]) -> IntArray:
    """The weak rule's table for the column forms of :func:`weak_pair_counts`, shape (2, len(kinds)): per kind
    code (index in ``kinds``), row 0 its family code (equal for the kinds of one family, :func:`kind_family`)
    and row 1 whether two indicators of that kind count as two (1; 0 for ``ONE_PIECE_KINDS``)."""
    code: dict[str, int] = {}
    families = [code.setdefault(kind_family(kind), len(code)) for kind in kinds]
    repeats = [int(kind not in ONE_PIECE_KINDS) for kind in kinds]
    return np.array([families, repeats], dtype=np.int64).reshape(2, len(kinds))


def weak_pairs_count(kind_a: IntArray, kind_b: IntArray, family: IntArray) -> BoolArray:
    """:func:`weak_pair_counts` over kind-code columns (``family`` from :func:`family_codes`)."""
    codes, repeats = family[0], family[1].astype(np.bool_)
    return (codes[kind_a] != codes[kind_b]) | ((kind_a == kind_b) & repeats[kind_a])


# Any one platform's holders count for at most ceil(threshold / DEFAULT_PLATFORM_DIVISOR) towards the threshold.
# With 3, an indicator needs holders on at least three platforms (four when 3 divides the threshold) before it
# is suppressed automatically; below that an exchange analyst marks it common.
DEFAULT_PLATFORM_DIVISOR = 3


def platform_cap(threshold: int, divisor: int) -> int:
    """How many of one platform's holders count towards ``threshold``: ``ceil(threshold / divisor)``."""
    return -(-threshold // divisor)


@dataclass(frozen=True, slots=True)
class HubRule:
    """The one statement of hub suppression, for the linking core and for every display of an indicator.

    ``holders_by_platform`` are the indicator's active holders counted per platform (any iterable of counts).
    """

    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR

    def __post_init__(self) -> None:
        if self.platform_divisor < 1:
            raise ValueError(f"platform_divisor must be >= 1, got {self.platform_divisor}")

    def threshold(self, kind: str) -> int:
        return self.thresholds[kind]

    def cap(self, kind: str) -> int:
        return platform_cap(self.thresholds[kind], self.platform_divisor)

    def counted(self, kind: str, holders_by_platform: Iterable[int]) -> int:
        cap = self.cap(kind)
        return sum(min(int(n), cap) for n in holders_by_platform)

    def suppression(
        self, kind: str, holders_by_platform: Iterable[int], override: str | None = None
    ) -> SuppressionReason | None:
        """Why the indicator does not link (``"common"`` or ``"threshold"``), or None when it links."""
        if override == "common":
            return "common"
        if override == "include":
            return None
        return "threshold" if self.counted(kind, holders_by_platform) > self.thresholds[kind] else None

    def platform_hub(self, kind: str, holders_on_platform: int, override: str | None = None) -> bool:
        """Whether one platform's holders of a (not suppressed) indicator are too many to link through it."""
        return override != "include" and holders_on_platform > self.thresholds[kind]


@dataclass(frozen=True, slots=True)
class _Rules:
    strong: BoolArray  # per kind code
    family: IntArray  # the weak rule's table (family_codes): per kind code, its family and whether it repeats
    threshold: IntArray  # per kind code
    cap: IntArray  # per kind code: one platform's largest contribution to the holder count
    kinds: tuple[str, ...]


def _rules(
    kinds: Sequence[str],
    strength: Mapping[str, str] | None,
    thresholds: Mapping[str, int] | None,
    platform_divisor: int = DEFAULT_PLATFORM_DIVISOR,
) -> _Rules:
    strength = DEFAULT_STRENGTH if strength is None else strength
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    unknown = [kind for kind in kinds if kind not in strength or kind not in thresholds]
    if unknown:
        raise ValueError(f"no strength or threshold configured for indicator kinds: {sorted(unknown)}")
    bad = {kind: strength[kind] for kind in kinds if strength[kind] not in ("strong", "weak")}
    if bad:
        raise ValueError(f"strength must be 'strong' or 'weak': {bad}")
    rule = HubRule(thresholds, platform_divisor)
    return _Rules(
        strong=np.array([strength[kind] == "strong" for kind in kinds], dtype=np.bool_),
        family=family_codes(kinds),
        threshold=np.array([rule.threshold(kind) for kind in kinds], dtype=np.int64),
        cap=np.array([rule.cap(kind) for kind in kinds], dtype=np.int64),
        kinds=tuple(kinds),
    )
