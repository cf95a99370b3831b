"""An exchange analyst tunes a similarity kind's match threshold (issue 14): a dry run first, then the change.

`preview(kind, proposed)` regroups every stored item of the kind at the proposed threshold in memory
(exchange.matching.group_labels: through the index keys, never all pairs; for names and addresses their direct
matches too, exchange.matching.fuzzy_evidence) and links the whole exchange twice,
with today's groups and with the proposed ones (the same linking core, rules, overrides and held merges as a
full recluster), then says what would change: near-duplicate groups, the seller pairs that match through the
kind, and the clusters (formed, dissolved, changed) and sellers moving between clusters. Nothing is written.

`apply(kind, proposed, user)` makes the change in one transaction under the grouping lock: it regroups the items
(a new group keeps the id, token and analyst override of the old group most of its items come from; a direct
match that stays keeps its indicator, the others are replaced), rebuilds the kind's sightings, stores the threshold (exchange.models.MatchThreshold: it then overrides the setting for
new items and lookups), audits the change with the preview's counts, and schedules the recomputation of the
sellers concerned.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from typing import cast

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEntry
from exchange import locks, similarity
from exchange.matching import Item, fuzzy_evidence, group_labels
from exchange.models import (
    Indicator,
    Linking,
    MatchThreshold,
    Seller,
    SellerItem,
    Sighting,
    SimilarItem,
    SimilarMatch,
)
from graph import clustering, linking
from graph.clustering import KINDS
from graph.scheduling import schedule_recompute

logger = logging.getLogger("exchange.graph")

# Seller pairs are counted per group; a group with more holders than this is a hub and does not link anyway
# (its pairs are counted as C(n, 2) without listing them).
_PAIR_LISTING_LIMIT = 200


@dataclass(frozen=True)
class Preview:
    kind: str
    current: float
    proposed: float
    items: int
    groups_before: int
    groups_after: int
    pairs_before: int  # seller pairs (of different platforms) sharing a group or a direct match of the kind
    pairs_after: int
    pairs_gained: int
    pairs_lost: int
    clusters_before: int
    clusters_after: int
    clusters_formed: int  # member sets in the proposed clustering that do not exist today
    clusters_dissolved: int  # member sets of today that would not exist
    sellers_moving: int  # sellers whose cluster-mates would change

    @property
    def changes_anything(self) -> bool:
        return bool(self.pairs_gained or self.pairs_lost or self.clusters_formed or self.clusters_dissolved)


@dataclass
class _Kind:
    items: list[tuple[int, int, Item]]  # (item id, group id, item), by item id
    holders: list[tuple[int, int, int]]  # (seller id, item id, platform id) of linkable sellers
    matches: list[
        tuple[int, int, float, int]
    ]  # today's direct matches: (older item, newer item, score, indicator)

    def match_indicators(self) -> dict[tuple[int, int], int]:
        """(older item, newer item) -> the indicator of today's direct match of the two."""
        return {(older, newer): indicator for older, newer, _, indicator in self.matches}


@dataclass(frozen=True)
class _Grouping:
    group_of_item: dict[int, int]  # item id -> the item id (or group id, today's) that stands for its group
    direct: list[tuple[int, int, float]]  # direct matches: (older item id, newer item id, score)


def _load(kind: str, now: datetime) -> _Kind:
    rows = (
        SimilarItem.objects.filter(kind=kind).order_by("pk").values_list("pk", "group_id", "value", "extra")
    )
    items = [(pk, group_id, Item(kind, value, extra)) for pk, group_id, value, extra in rows]
    linkable = Seller.objects.linkable(now)
    holders = list(
        SellerItem.objects.filter(item__kind=kind, seller__in=linkable)
        .order_by("seller_id", "item_id")
        .values_list("seller_id", "item_id", "seller__platform_id")
    )
    matches = list(
        SimilarMatch.objects.filter(indicator__kind=kind)
        .order_by("older_id", "newer_id")
        .values_list("older_id", "newer_id", "score", "indicator_id")
    )
    return _Kind(items, holders, matches)


def _today(data: _Kind) -> _Grouping:
    return _Grouping(
        {pk: group_id for pk, group_id, _ in data.items},
        [(older, newer, score) for older, newer, score, _ in data.matches],
    )


def _labels(kind: str, data: _Kind, proposed: float) -> _Grouping:
    """The kind's groups at the proposed threshold (item id -> the item id that stands for its group), and
    their direct matches."""
    rule = similarity.matcher(kind)
    ids = [pk for pk, _, _ in data.items]
    items = [item for _, _, item in data.items]
    found: list[tuple[int, int, float]] = []
    if rule.transitive:
        labels = group_labels(rule, items, proposed)
    else:
        labels, found = fuzzy_evidence(rule, items, proposed)
    return _Grouping(
        {ids[i]: ids[label] for i, label in enumerate(labels)},
        [(ids[b], ids[a], score) for a, b, score in found],
    )


def _pairs(grouping: _Grouping, holders: list[tuple[int, int, int]]) -> tuple[set[tuple[int, int]], int]:
    """Seller pairs of different platforms sharing a group or a direct match; plus the pair count of hub-sized
    groups."""
    sellers: dict[int, set[tuple[int, int]]] = defaultdict(set)
    of_item: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for seller_id, item_id, platform_id in holders:
        sellers[grouping.group_of_item[item_id]].add((seller_id, platform_id))
        of_item[item_id].add((seller_id, platform_id))
    pairs: set[tuple[int, int]] = set()
    hub_pairs = 0
    for members in sellers.values():
        if len(members) > _PAIR_LISTING_LIMIT:
            hub_pairs += len(members) * (len(members) - 1) // 2
            continue
        for (a, pa), (b, pb) in combinations(sorted(members), 2):
            if pa != pb:
                pairs.add((a, b))
    for older, newer, _ in grouping.direct:
        for a, pa in of_item[older]:
            for b, pb in of_item[newer]:
                if pa != pb:
                    pairs.add((min(a, b), max(a, b)))
    return pairs, hub_pairs


def _clusters(
    columns: clustering.Columns, now: datetime, overrides: dict[int, linking.Override]
) -> set[frozenset[int]]:
    result = clustering.link_all(columns, now, overrides)
    return {frozenset(cluster.members) for cluster in result.clusters}


def _match_ids(data: _Kind, grouping: _Grouping) -> dict[tuple[int, int], int]:
    """(older, newer) -> the negative id that stands for a direct match in a dry run (below every group's: a
    group stands as its negated label, an item id in a proposed grouping and a group's indicator id in
    today's, which can be far above every item id)."""
    below = max([pk for pk, _, _ in data.items] + list(grouping.group_of_item.values()), default=0) + 1
    return {(older, newer): -(below + n) for n, (older, newer, _) in enumerate(grouping.direct)}


def _columns_with(
    base: clustering.Columns, kind: str, data: _Kind, grouping: _Grouping
) -> clustering.Columns:
    """The exchange's shared sightings with the kind's rows replaced by the grouping given (groups and direct
    matches as negative ids, so they never collide with indicator ids)."""
    code = KINDS.index(kind)
    keep = base.kind != code
    group_of_item = grouping.group_of_item
    rows = {
        (seller_id, -group_of_item[item_id], code, platform) for seller_id, item_id, platform in data.holders
    }
    ends: dict[int, list[int]] = defaultdict(list)
    for (older, newer), match in _match_ids(data, grouping).items():
        ends[older].append(match)
        ends[newer].append(match)
    rows |= {
        (seller_id, match, code, platform)
        for seller_id, item_id, platform in data.holders
        for match in ends.get(item_id, ())
    }
    extra = np.array(sorted(rows), dtype=np.int64).reshape(-1, 4)
    return clustering.Columns(
        np.concatenate([base.seller[keep], extra[:, 0]]),
        np.concatenate([base.indicator[keep], extra[:, 1]]),
        np.concatenate([base.kind[keep], extra[:, 2]]),
        np.concatenate([base.platform[keep], extra[:, 3]]),
    )


def _overrides_with(kind: str, data: _Kind, grouping: _Grouping) -> dict[int, linking.Override]:
    """Today's overrides, and for the kind's groups (as negative ids) the override of any old group they hold
    items of ("common" wins, as when groups merge); a direct match keeps the override of today's direct match
    of the same two items."""
    overrides = clustering.overrides()
    old_override = dict(
        Indicator.objects.filter(kind=kind).exclude(linking=Linking.AUTO).values_list("pk", "linking")
    )
    for item_id, old_group, _ in data.items:
        chosen = old_override.get(old_group)
        if chosen is None:
            continue
        group = -grouping.group_of_item[item_id]
        if overrides.get(group) != Linking.COMMON:
            overrides[group] = cast(linking.Override, chosen)
    today = data.match_indicators()
    for pair, match in _match_ids(data, grouping).items():
        chosen = old_override.get(today.get(pair, 0))
        if chosen is not None:
            overrides[match] = cast(linking.Override, chosen)
    return overrides


def preview(kind: str, proposed: float) -> Preview:
    """What setting `kind`'s threshold to `proposed` would change (module docstring). Writes nothing."""
    now = timezone.now()
    data = _load(kind, now)
    return _preview(kind, proposed, now, data, _labels(kind, data, proposed))


def _preview(kind: str, proposed: float, now: datetime, data: _Kind, after: _Grouping) -> Preview:
    """`preview` of the kind's items `data` regrouped as `after` (apply computes both once and uses them)."""
    current = similarity.thresholds()[kind]
    before = _today(data)
    pairs_before, hubs_before = _pairs(before, data.holders)
    pairs_after, hubs_after = _pairs(after, data.holders)
    base = clustering.read_shared(now)
    # Today's grouping goes through the same path as the proposed one (all the kind's holders, singletons
    # included), so the comparison sees only the threshold's effect.
    clusters_before = _clusters(
        _columns_with(base, kind, data, before), now, _overrides_with(kind, data, before)
    )
    clusters_after = _clusters(
        _columns_with(base, kind, data, after), now, _overrides_with(kind, data, after)
    )
    mates_before = {seller: members for members in clusters_before for seller in members}
    mates_after = {seller: members for members in clusters_after for seller in members}
    moving = sum(
        1
        for seller in set(mates_before) | set(mates_after)
        if mates_before.get(seller) != mates_after.get(seller)
    )
    return Preview(
        kind=kind,
        current=current,
        proposed=proposed,
        items=len(data.items),
        groups_before=len(set(before.group_of_item.values())),
        groups_after=len(set(after.group_of_item.values())),
        pairs_before=len(pairs_before) + hubs_before,
        pairs_after=len(pairs_after) + hubs_after,
        pairs_gained=len(pairs_after - pairs_before),
        pairs_lost=len(pairs_before - pairs_after),
        clusters_before=len(clusters_before),
        clusters_after=len(clusters_after),
        clusters_formed=len(clusters_after - clusters_before),
        clusters_dissolved=len(clusters_before - clusters_after),
        sellers_moving=moving,
    )


def apply(kind: str, proposed: float, user: AbstractBaseUser) -> Preview:
    """Set `kind`'s threshold to `proposed` and regroup its items (module docstring); returns the preview of
    the change as it was made."""
    with transaction.atomic(durable=True):
        locks.hold(locks.GROUPING)
        now = timezone.now()
        data = _load(kind, now)
        after = _labels(kind, data, proposed)
        change = _preview(kind, proposed, now, data, after)
        old_group = {pk: group_id for pk, group_id, _ in data.items}
        first_seen = dict(SimilarItem.objects.filter(kind=kind).values_list("pk", "first_seen"))
        # Each new group keeps the old group most of its items come from (ties: the oldest), once.
        members: dict[int, list[int]] = defaultdict(list)
        for item_id, label in after.group_of_item.items():
            members[label].append(item_id)
        claimed: set[int] = set()
        group_of_label: dict[int, int] = {}
        old_rows = {row.pk: row for row in Indicator.objects.filter(kind=kind)}
        for label, items in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            votes = Counter(old_group[i] for i in items)
            ranked = sorted(votes, key=lambda g: (-votes[g], g))
            keep = next((g for g in ranked if g not in claimed), None)
            if keep is None:
                keep = Indicator.objects.create(
                    kind=kind,
                    token=similarity.new_group_token(),
                    key_version=old_rows[ranked[0]].key_version,
                    first_seen=min(first_seen[i] for i in items),
                    linking=Linking.COMMON
                    if any(old_rows[g].linking == Linking.COMMON for g in votes)
                    else Linking.AUTO,
                ).pk
            claimed.add(keep)
            group_of_label[label] = keep
        new_group = {item_id: group_of_label[label] for item_id, label in after.group_of_item.items()}
        moved = [item_id for item_id in new_group if new_group[item_id] != old_group[item_id]]
        for target in sorted({new_group[i] for i in moved}):
            SimilarItem.objects.filter(pk__in=[i for i in moved if new_group[i] == target]).update(
                group_id=target
            )
        # A direct match that stays keeps its indicator (and override); the others are replaced.
        today = data.match_indicators()
        kept = [(older, newer) for older, newer, _ in after.direct if (older, newer) in today]
        new_matches = [
            (older, newer, score) for older, newer, score in after.direct if (older, newer) not in today
        ]
        staying = [today[pair] for pair in kept]
        fresh = similarity.create_direct_matches(
            [(older, newer, score, kind) for older, newer, score in new_matches],
            max((row.key_version for row in old_rows.values()), default=1),
            now,
        )
        matches_of: dict[int, list[int]] = defaultdict(list)
        for (older, newer), match in zip(
            kept + [(older, newer) for older, newer, _ in new_matches], staying + fresh, strict=True
        ):
            matches_of[older].append(match)
            matches_of[newer].append(match)
        # The kind's sightings again, from which items each seller was reported with.
        old_sightings = {
            (s.seller_id, s.indicator_id): s
            for s in Sighting.objects.filter(indicator__kind=kind, indicator__in=old_rows)
        }
        wanted: dict[tuple[int, int], tuple[datetime, datetime]] = {}

        def see(seller_id: int, old: int, new: int, seen: datetime) -> None:
            """The seller's sighting of indicator `new` (its sighting of `old` before, if any, gives its last)."""
            before = old_sightings.get((seller_id, old))
            last = max(seen, before.last_seen) if before else seen
            first, latest = wanted.get((seller_id, new), (seen, last))
            wanted[(seller_id, new)] = (min(first, seen), max(latest, last))

        for seller_id, item_id, seen in SellerItem.objects.filter(item__kind=kind).values_list(
            "seller_id", "item_id", "first_seen"
        ):
            see(seller_id, old_group[item_id], new_group[item_id], seen)
            for match in matches_of.get(item_id, ()):
                see(seller_id, match, match, seen)
        touched_sellers = {seller for seller, _ in old_sightings} | {seller for seller, _ in wanted}
        Sighting.objects.filter(indicator_id__in=list(old_rows)).delete()
        Sighting.objects.bulk_create(
            [
                Sighting(seller_id=seller, indicator_id=group, first_seen=first, last_seen=last)
                for (seller, group), (first, last) in sorted(wanted.items())
            ]
        )
        unused = set(old_rows) - set(new_group.values()) - set(staying)
        Indicator.objects.filter(pk__in=unused).delete()
        similarity.recount(set(new_group.values()) | set(staying) | set(fresh))
        MatchThreshold.objects.update_or_create(
            kind=kind, defaults={"value": proposed, "changed_at": now, "changed_by_id": user.pk}
        )
        AuditEntry.objects.record(
            "match_threshold_changed",
            user.get_username(),
            None,
            "match_threshold",
            kind,
            before=change.current,
            after=proposed,
            groups_before=change.groups_before,
            groups_after=change.groups_after,
            pairs_gained=change.pairs_gained,
            pairs_lost=change.pairs_lost,
            clusters_formed=change.clusters_formed,
            clusters_dissolved=change.clusters_dissolved,
        )
        schedule_recompute(sellers=touched_sellers)
    logger.info(
        "event=match_threshold_changed kind=%s before=%s after=%s groups_before=%s groups_after=%s",
        kind,
        change.current,
        proposed,
        change.groups_before,
        change.groups_after,
    )
    return change
