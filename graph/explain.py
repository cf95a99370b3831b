"""Why one cluster holds together, as an investigator may see it (the Django side of `graph.evidence`).

`explain(cluster, scope)` loads the members and their sightings in a handful of queries, works out which
indicators are suppressed from linking (marked common, or held by more linkable sellers than their kind's
threshold and not forced in), and answers with plain rows for the admin: members grouped by platform, the
indicators that hold the cluster together, bridges, and evidence chains between any two members.

For a partner analyst everything of other platforms is reduced before it leaves this module: their members
become counts and neutral aliases ("Platform B · account 2"), and no indicator token or id is returned at all.
The pure graph functions are fed indicator ids (as strings) rather than tokens, so tokens are only looked up
for exchange analysts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from accounts.scoping import Scope
from exchange import similarity
from exchange.models import Indicator, Seller, Sighting, linkable_q
from exchange.normalization import SIMILARITY_KINDS
from graph import evidence, linking
from graph.clustering import hub_rule, strengths
from graph.models import ActorCluster, ClusterMember, Opinion, platform_labels


@dataclass(frozen=True, slots=True)
class Member:
    position: int  # 1-based place on the cluster page: how the page names a member in links (never the pk)
    seller_id: int
    platform_id: int
    alias: str  # what the viewer may call it: the seller_ref, or "Platform B · account 2"
    short: str  # for the picture: the seller_ref, or "Platform B #2"
    visible: bool  # the viewer may see this seller's reference and details
    linkable: bool
    seller: Seller | None  # None when not visible
    # Report dates as the viewer may see them: the month only (`report_format` "Y-m") when not visible.
    first_reported_at: datetime | None = None
    reported_at: datetime | None = None
    retracted_at: datetime | None = None
    report_format: str = "Y-m-d"


@dataclass(slots=True)
class PlatformGroup:
    platform_id: int
    label: str
    count: int
    own: bool
    members: list[Member]  # empty when the viewer may only count them


@dataclass(slots=True)
class IndicatorRow:
    key: str  # indicator id as a string: internal, never rendered for partners
    kind: str
    strength: str
    sellers: int  # members of this cluster holding it
    platforms: int  # platforms of those members
    holders: int | None  # linkable sellers exchange-wide; None: not for this viewer (see `_for_partner`)
    threshold: int
    first_seen: datetime | None
    linking: str  # auto / common / include
    suppressed: str  # "" (links), "common" or "threshold"
    first_seen_format: str = "Y-m-d"  # the date filter's format: "Y-m" where the viewer sees the month only
    links: int = 0  # member pairs whose link it is part of
    bridge: bool = False
    # Exchange analysts only:
    indicator_id: int | None = None
    token: str | None = None

    @property
    def holds(self) -> bool:
        return self.links > 0


@dataclass(frozen=True, slots=True)
class ChainStep:
    a: Member
    b: Member
    indicators: tuple[IndicatorRow, ...]
    # Per indicator, how near a similarity link is ("" for an exact one): two photos' distance in bits.
    notes: tuple[str, ...] = ()

    @property
    def noted(self) -> list[tuple[IndicatorRow, str]]:
        """(indicator, note) pairs, for templates."""
        notes = self.notes or ("",) * len(self.indicators)
        return list(zip(self.indicators, notes, strict=True))


@dataclass(slots=True)
class Explanation:
    cluster: ActorCluster
    scope: Scope
    members: list[Member]
    groups: list[PlatformGroup]
    indicators: list[IndicatorRow]  # holding ones first (strong, most links), then suppressed context
    sightings: list[linking.Sighting]  # linkable members only; token = indicator id as a string
    suppressed: frozenset[linking.IndicatorKey]
    platform_names: dict[int, str]
    strength: dict[str, str]  # per kind, as linking used it (`clustering.strengths`)
    # The earliest first report among the members, as the viewer may see it (the month only when it is
    # another platform's report and the viewer a partner analyst, as for indicators: `_for_partner`).
    earliest_report: datetime | None = None
    earliest_report_format: str = "Y-m-d"
    by_id: dict[int, Member] = field(default_factory=dict)
    rows: dict[str, IndicatorRow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {m.seller_id: m for m in self.members}
        self.rows = {row.key: row for row in self.indicators}

    @property
    def holding(self) -> list[IndicatorRow]:
        return [row for row in self.indicators if row.holds]

    @property
    def context(self) -> list[IndicatorRow]:
        return [row for row in self.indicators if not row.holds]

    @property
    def drawn(self) -> list[IndicatorRow]:
        """What the pictures draw (the SVG and the interactive graph alike): the indicators that link, and the
        suppressed ones that two or more members share; a suppressed indicator one member alone holds here is
        context for the table only."""
        return [row for row in self.indicators if row.holds or row.sellers >= 2]

    @property
    def bridges(self) -> list[IndicatorRow]:
        return [row for row in self.indicators if row.bridge]

    def chain(self, a: int, b: int) -> list[ChainStep]:
        """Shortest chain of links from member `a` to member `b`; raises `evidence.NotLinked`."""
        if a not in self.by_id or b not in self.by_id:
            raise evidence.NotLinked("both sellers must be members of this cluster")
        return self._steps(
            evidence.evidence_chain(self.sightings, a, b, suppressed=self.suppressed, strength=self.strength)
        )

    def evidence_tree(self) -> list[ChainStep]:
        """Every linkable member reached by its shortest chain of links from the viewer's first member (their
        own platform's first for a partner analyst, as `default_pair` starts): the whole cluster's evidence,
        as a referral package carries it."""
        order = [m.seller_id for m in sorted(self.members, key=lambda m: (not m.visible, m.position))]
        return self._steps(
            evidence.evidence_tree(self.sightings, order, suppressed=self.suppressed, strength=self.strength)
        )

    def _steps(self, links: list[evidence.Link]) -> list[ChainStep]:
        steps = []
        for link in links:
            rows = tuple(self.rows[str(shared.token)] for shared in link.indicators)
            notes = tuple(similarity_note(link.a, link.b, row) for row in rows)
            steps.append(ChainStep(self.by_id[link.a], self.by_id[link.b], rows, notes))
        return steps

    def at(self, position: int) -> Member | None:
        return self.members[position - 1] if 1 <= position <= len(self.members) else None

    def default_pair(self) -> tuple[Member, Member] | None:
        """Two linkable members worth explaining first: across platforms when the cluster spans several,
        starting from the viewer's own platform for a partner analyst."""
        linkable = [m for m in self.members if m.linkable]
        if len(linkable) < 2:
            return None
        first = next((m for m in linkable if m.visible), linkable[0])
        other = next((m for m in linkable if m.platform_id != first.platform_id), None)
        if other is None:
            other = next(m for m in linkable if m.seller_id != first.seller_id)
        return first, other


def similarity_note(a: int, b: int, row: IndicatorRow) -> str:
    """How near the two sellers' items of a similarity kind are, in words ("" for an exact kind): for photos,
    the smallest distance between one's photos and the other's in that near-duplicate group."""
    if row.kind not in SIMILARITY_KINDS:
        return ""
    return similarity.note(a, b, Indicator(pk=int(row.key), kind=row.kind))


def explain(cluster: ActorCluster, scope: Scope) -> Explanation:
    now = timezone.now()
    # A partner analyst's own sellers that their platform detached with a false positive are not in the
    # cluster for them (ClusterMemberQuerySet.attached): not shown, not part of the evidence they read.
    hidden = set(_detached_for(cluster, scope))
    sellers = list(
        Seller.objects.filter(cluster_membership__cluster=cluster)
        .exclude(pk__in=hidden)
        .select_related("platform")
        .order_by("platform_id", "seller_ref", "id")
    )
    platform_ids = sorted({s.platform_id for s in sellers})
    platform_names = _platform_names(sellers, platform_ids, scope)
    members = _members(sellers, platform_names, scope, now)
    groups = _groups(members, platform_ids, platform_names, scope)
    platform_of = {m.seller_id: m.platform_id for m in members}
    held = _held(cluster, members, hidden)
    sightings, kind_of, linking_of, holders_in = (
        held.sightings,
        held.kind_of,
        held.linking_of,
        held.holders_in,
    )

    per_platform = _holders_per_platform(cluster, now)
    global_holders = {key: sum(counts.values()) for key, counts in per_platform.items()}
    rule = hub_rule()
    limits = rule.thresholds
    suppressed_reason = {
        key: reason
        for key, kind in kind_of.items()
        if (reason := rule.suppression(kind, per_platform[key].values(), linking_of[key])) is not None
    }
    # A platform that alone holds an indicator too often links none of its holders through it.
    sightings = [
        s
        for s in sightings
        if not rule.platform_hub(s.kind, per_platform[str(s.token)][s.platform_id], linking_of[str(s.token)])
    ]
    suppressed = frozenset((kind_of[key], key) for key in suppressed_reason)
    strength = strengths()
    holding = {
        str(h.indicator.token): h
        for h in evidence.holding_indicators(sightings, suppressed=suppressed, strength=strength)
    }
    bridge_keys = {
        str(b.token) for b in evidence.bridges(sightings, suppressed=suppressed, strength=strength)
    }

    shown = [
        key
        for key in kind_of
        if key in holding
        or (key in suppressed_reason and (len(holders_in[key]) >= 2 or global_holders.get(key, 0) >= 2))
    ]
    tokens = _tokens(shown) if scope.everything else {}
    indicator_rows: list[IndicatorRow] = []
    for key in shown:
        held_by = holders_in[key]
        indicator_rows.append(
            IndicatorRow(
                key=key,
                kind=kind_of[key],
                strength=strength[kind_of[key]],
                sellers=len(held_by),
                platforms=len({platform_of[s] for s in held_by}),
                holders=global_holders.get(key, 0),
                threshold=limits[kind_of[key]],
                first_seen=held.first_seen_of.get(key),
                linking=linking_of[key],
                suppressed=suppressed_reason.get(key, ""),
                links=holding[key].links if key in holding else 0,
                bridge=key in bridge_keys,
                indicator_id=int(key) if scope.everything else None,
                token=tokens.get(key),
            )
        )
    indicator_rows.sort(
        key=lambda r: (not r.holds, r.strength != "strong", -r.links, -r.sellers, r.kind, int(r.key))
    )
    if scope.is_partner:
        own = {
            key
            for key, held_by in holders_in.items()
            if any(platform_of[s] == scope.platform_id for s in held_by)
        }
        for row in indicator_rows:
            if row.key not in own:
                _for_partner(row)
    return Explanation(
        cluster=cluster,
        scope=scope,
        members=members,
        groups=groups,
        indicators=indicator_rows,
        sightings=sightings,
        suppressed=suppressed,
        platform_names=platform_names,
        strength=strength,
        **_earliest_report(sellers, scope),
    )


def _earliest_report(sellers: list[Seller], scope: Scope) -> dict[str, Any]:
    first = min(sellers, key=lambda s: s.first_reported_at, default=None)
    if first is None:
        return {}
    if scope.is_partner and first.platform_id != scope.platform_id:
        return {"earliest_report": month_of(first.first_reported_at), "earliest_report_format": "Y-m"}
    return {"earliest_report": first.first_reported_at}


def _for_partner(row: IndicatorRow) -> None:
    """What a partner analyst sees of an indicator that only other platforms' members of the cluster hold
    (README, "Privacy model"): no exchange-wide holder count (it would count other platforms' reports outside
    any cluster they can see, more than a lookup tells) and the month it was first seen, not the day (the day
    dates another platform's report). Kind, strength, the counts within the cluster, whether it links and
    whether it is a bridge stay: they are the evidence."""
    row.holders = None
    if row.first_seen is not None:
        row.first_seen = month_of(row.first_seen)
        row.first_seen_format = "Y-m"


def month_of(moment: datetime) -> datetime:
    """How a partner analyst sees the date of another platform's report: its month, not its day."""
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _month_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else month_of(moment)


def _members(
    sellers: list[Seller], platform_names: dict[int, str], scope: Scope, now: datetime
) -> list[Member]:
    """The cluster's members as `scope` may see them: another platform's sellers only as numbered accounts."""
    members: list[Member] = []
    ordinal: dict[int, int] = defaultdict(int)
    for seller in sellers:
        visible = scope.everything or seller.platform_id == scope.platform_id
        ordinal[seller.platform_id] += 1
        alias = (
            seller.seller_ref
            if visible
            else f"{platform_names[seller.platform_id]} · account {ordinal[seller.platform_id]}"
        )
        members.append(
            Member(
                position=len(members) + 1,
                seller_id=seller.pk,
                platform_id=seller.platform_id,
                alias=alias,
                short=seller.seller_ref
                if visible
                else f"{platform_names[seller.platform_id]} #{ordinal[seller.platform_id]}",
                visible=visible,
                linkable=seller.is_linkable(now),
                seller=seller if visible else None,
                first_reported_at=seller.first_reported_at if visible else month_of(seller.first_reported_at),
                reported_at=seller.reported_at if visible else month_of(seller.reported_at),
                retracted_at=seller.retracted_at if visible else _month_or_none(seller.retracted_at),
                report_format="Y-m-d" if visible else "Y-m",
            )
        )
    return members


@dataclass
class _Held:
    """The indicators the cluster's members hold, keyed by indicator id as a string."""

    sightings: list[linking.Sighting] = field(default_factory=list)  # linkable members' only
    kind_of: dict[str, str] = field(default_factory=dict)
    linking_of: dict[str, str] = field(default_factory=dict)  # the analyst's linking override
    holders_in: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # linkable members
    first_seen_of: dict[str, datetime] = field(default_factory=dict)


def _detached_for(cluster: ActorCluster, scope: Scope) -> list[int]:
    if scope.everything or scope.platform_id is None:
        return []
    return list(
        Opinion.objects.standing_false_positives()
        .filter(cluster=cluster, seller__platform_id=scope.platform_id)
        .values_list("seller_id", flat=True)
    )


def _held(cluster: ActorCluster, members: list[Member], hidden: set[int]) -> _Held:
    linkable_ids = {m.seller_id for m in members if m.linkable}
    platform_of = {m.seller_id: m.platform_id for m in members}
    held = _Held()
    rows = (
        Sighting.objects.filter(seller__cluster_membership__cluster=cluster)
        .exclude(seller_id__in=hidden)
        .order_by("seller_id", "indicator_id")
        .values_list("seller_id", "indicator_id", "indicator__kind", "indicator__linking", "first_seen")
    )
    for seller_id, indicator_id, kind, linking_state, first_seen in rows:
        key = str(indicator_id)
        held.kind_of[key], held.linking_of[key] = kind, linking_state
        if seller_id in linkable_ids:
            held.sightings.append(linking.Sighting(seller_id, platform_of[seller_id], kind, key, first_seen))
            held.holders_in[key].add(seller_id)
            earliest = held.first_seen_of.get(key)
            if first_seen is not None and (earliest is None or first_seen < earliest):
                held.first_seen_of[key] = first_seen
    return held


def _holders_per_platform(cluster: ActorCluster, now: datetime) -> dict[str, Counter[int]]:
    """Linkable holders exchange-wide, per platform, of the cluster's indicators: hub suppression depends on
    them, not on this cluster alone."""
    held = Sighting.objects.filter(seller__cluster_membership__cluster=cluster).values("indicator_id")
    per_platform: dict[str, Counter[int]] = defaultdict(Counter)
    for indicator_id, platform_id, n in (
        Sighting.objects.filter(linkable_q(now, "seller__"), indicator_id__in=held)
        .values("indicator_id", "seller__platform_id")
        .annotate(n=Count("id"))
        .values_list("indicator_id", "seller__platform_id", "n")
    ):
        per_platform[str(indicator_id)][platform_id] = n
    return per_platform


def _platform_names(sellers: list[Seller], platform_ids: list[int], scope: Scope) -> dict[int, str]:
    """Real names for exchange analysts and for the partner's own platform; the consortium setting decides
    whether other platforms are named or lettered."""
    names = {s.platform_id: s.platform.name for s in sellers}
    if scope.everything:
        return names
    others = [p for p in platform_ids if p != scope.platform_id]
    labels = platform_labels(others, reveal=False)
    if settings.EXCHANGE_REVEAL_PLATFORM_NAMES:
        labels = {p: names[p] for p in others}
    if scope.platform_id in names:
        labels[scope.platform_id] = names[scope.platform_id]
    return labels


def _groups(
    members: list[Member], platform_ids: list[int], names: dict[int, str], scope: Scope
) -> list[PlatformGroup]:
    groups = []
    for platform_id in platform_ids:
        mine = [m for m in members if m.platform_id == platform_id]
        visible = scope.everything or platform_id == scope.platform_id
        groups.append(
            PlatformGroup(
                platform_id=platform_id,
                label=names[platform_id],
                count=len(mine),
                own=platform_id == scope.platform_id,
                members=mine if visible else [],
            )
        )
    # The partner's own platform first, then the largest.
    groups.sort(key=lambda g: (not g.own, -g.count, g.label))
    return groups


def _tokens(keys: list[str]) -> dict[str, str]:
    return {
        str(pk): token
        for pk, token in Indicator.objects.filter(pk__in=[int(k) for k in keys]).values_list("pk", "token")
    }


def member_counts(cluster_ids: list[int]) -> dict[int, dict[int, int]]:
    """{cluster id: {platform id: members}} for a page of clusters, in one query."""
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    rows = (
        ClusterMember.objects.filter(cluster_id__in=cluster_ids)
        .values("cluster_id", "seller__platform_id")
        .annotate(n=Count("seller_id"))
        .values_list("cluster_id", "seller__platform_id", "n")
    )
    for cluster_id, platform_id, n in rows:
        counts[cluster_id][platform_id] = n
    return counts
