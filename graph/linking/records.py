"""The linking core's vocabulary: indicator and override types, the :class:`Sighting` input record and the
result records (:class:`Cluster`, :class:`SuppressedIndicator`, :class:`HeldMerge`, :class:`Linkage`,
:class:`Relinkage`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

Strength = Literal["strong", "weak"]
Override = Literal["common", "include"]
SuppressionReason = Literal["common", "threshold"]
Token = bytes | str
IndicatorKey = tuple[str, Token]
# Mapping keys are invariant: accept maps keyed by (kind, str) or (kind, bytes) as well.
IndicatorOverrides = (
    Mapping[IndicatorKey, Override]
    | Mapping[tuple[str, str], Override]
    | Mapping[tuple[str, bytes], Override]
)


class Sighting(NamedTuple):
    """One seller holding one indicator (as loaded from the database)."""

    seller_id: int
    platform_id: int
    kind: str
    token: Token
    first_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class SuppressedIndicator[K]:
    """An indicator held by >= 2 active sellers that was kept from linking, shown as context."""

    indicator: K
    kind: str
    sellers: int  # active holders
    reason: SuppressionReason
    counted: int = 0  # holders counted towards the threshold (each platform's share capped)


@dataclass(frozen=True, slots=True)
class Cluster[K]:
    """One actor cluster: its members (sorted seller ids) and the suppressed indicators they hold."""

    members: tuple[int, ...]
    suppressed: tuple[SuppressedIndicator[K], ...]

    @property
    def member_set(self) -> frozenset[int]:
        return frozenset(self.members)


@dataclass(frozen=True, slots=True)
class HeldMerge:
    """A merge held for an exchange analyst: ``platform``'s fresh ``sellers`` alone would join ``parts``.

    ``members`` is the whole link component (held sellers, the parts, everything else in it): an incremental
    run that touches any of them recomputes all of it.
    """

    platform: int
    sellers: tuple[int, ...]
    parts: tuple[tuple[int, ...], ...]  # the parts with no seller of ``platform``, by smallest member
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Linkage[K]:
    """Result of a full linking run. Clusters are ordered by their smallest member."""

    clusters: tuple[Cluster[K], ...]
    suppressed: tuple[SuppressedIndicator[K], ...]  # every suppressed indicator, sorted by indicator
    # (indicator, platform) pairs where that platform alone holds more than the threshold: its holders do
    # not link through the indicator (sorted)
    platform_hubs: tuple[tuple[K, int], ...] = ()
    held: tuple[HeldMerge, ...] = ()  # by (smallest member, platform)


@dataclass(frozen=True, slots=True)
class Relinkage[K, C: Hashable]:
    """Result of an incremental run: replace the ``retired`` previous clusters by ``clusters``.

    ``scope`` is the set of sellers whose cluster was recomputed; every previous cluster intersecting it is in
    ``retired`` and every returned cluster lies inside it. Clusters outside the scope are unchanged.
    """

    clusters: tuple[Cluster[K], ...]
    retired: tuple[C, ...]
    scope: frozenset[int]
    platform_hubs: tuple[tuple[K, int], ...] = ()  # as in Linkage, for the indicators held in scope
    held: tuple[HeldMerge, ...] = ()  # the held merges inside ``scope``
    retired_held: tuple[Any, ...] = ()  # the previous held merges to replace by ``held``
