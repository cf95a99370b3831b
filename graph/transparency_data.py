"""The transparency report's figures as counted from the models: `FIGURES` is the one list of what the report
shows, in order. Adding a figure is adding an entry here with a function from the period to its counts (the
consortium's and, where it can be attributed, each platform's own); `graph.transparency` publishes it with the
suppression rules, in the HTML, the CSV and the charts. A figure whose data the exchange does not record yet is
an entry without a function: it shows as "not collected yet" (none today).

Counting rules, said once for every figure:
- A period is [start, end) in UTC. Reports count by the date partners give (`reported_at`: a seller's first
  report, a sighting's first), so a partner backfilling old reports adds to a past period; purged reports are
  no longer counted there (the purge figures count them).
- Lookups, retractions, purges and appeals count audit entries, which are never purged.
- Opinions count by the exchange's receipt (`created_at`); actions and times to action by the time of action
  the partner gives (`acted_at`), so an action reported late adds to the period it happened in.
- "Live at period end" means created before the end and not dissolved before it; a cluster counts as
  cross-platform as last recorded. A platform's cluster figures count the clusters that hold its sellers now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from typing import Any

from django.db.models import Count, IntegerField, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncMonth

from accounts.models import AuditEntry, Platform
from exchange.models import Seller, Sighting, Submission
from exchange.normalization import LINK_KINDS as KINDS
from graph.models import (
    ActorCluster,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    EventKind,
    Opinion,
    OpinionKind,
)
from graph.opinions import action_cases, actioned_rows, distribution
from graph.transparency import (
    CONSORTIUM,
    Column,
    Figure,
    Median,
    MedianTally,
    Period,
    Raw,
    Report,
    Tally,
    publish,
)


def _in(period: Period, field: str = "created_at") -> Q:
    return Q(**{f"{field}__gte": period.start, f"{field}__lt": period.end})


def _by_platform(rows: Iterable[tuple[int | None, int | None]]) -> dict[int, int]:
    return {platform_id: count or 0 for platform_id, count in rows if platform_id is not None}


def _rows_tally(queryset: QuerySet[Any], platform_field: str) -> Tally:
    """Rows in `queryset`, in all and per platform (one grouped query)."""
    per_platform = _by_platform(queryset.values_list(platform_field).annotate(n=Count("id")).order_by())
    return Tally(queryset.count(), per_platform)


def _clusters_tally(clusters: QuerySet[ActorCluster]) -> Tally:
    """Clusters in `clusters`, in all and per platform whose sellers they hold now."""
    holders = (
        ClusterMember.objects.filter(cluster__in=clusters)
        .values_list("seller__platform")
        .annotate(n=Count("cluster", distinct=True))
        .order_by()
    )
    return Tally(clusters.count(), _by_platform(holders))


# --- participation


def member_platforms(period: Period) -> Raw:
    return Tally(Platform.objects.filter(created_at__lt=period.end).count())


def reporting_platforms(period: Period) -> Raw:
    return Tally(Submission.objects.filter(_in(period)).values("platform").distinct().count())


# --- reports


def sellers_reported(period: Period) -> Raw:
    return _rows_tally(Seller.objects.filter(_in(period, "first_reported_at")), "platform")


def sellers_confirmed(period: Period) -> Raw:
    return _rows_tally(
        Seller.objects.filter(_in(period, "first_reported_at"), status="confirmed"), "platform"
    )


def signals_by_kind(period: Period) -> Raw:
    rows = (
        Sighting.objects.filter(_in(period, "first_seen"))
        .values_list("indicator__kind", "seller__platform")
        .annotate(n=Count("id"))
        .order_by()
    )
    consortium: dict[str, int] = defaultdict(int)
    per_platform: dict[str, dict[int, int]] = defaultdict(dict)
    for kind, platform_id, count in rows:
        consortium[kind] += count
        per_platform[kind][platform_id] = count
    kinds = [*KINDS, *sorted(set(consortium) - set(KINDS))]
    return {kind: Tally(consortium[kind], per_platform[kind]) for kind in kinds}


def retractions(period: Period) -> Raw:
    return _rows_tally(AuditEntry.objects.filter(_in(period), action="seller_retracted"), "platform")


def _detail_sum(name: str) -> Sum:
    """The sum of an integer in the audit entries' details (portable: PostgreSQL and SQLite)."""
    return Sum(Cast(KT(f"details__{name}"), IntegerField()))


def reports_purged(period: Period) -> Raw:
    """`purge_reports` leaves one entry per platform (sellers) and one for the run (sellers, sightings,
    indicators); the run's entry is the consortium's (a deleted platform's entries lose their platform)."""
    entries = AuditEntry.objects.filter(_in(period), action="purge")
    runs = entries.filter(platform__isnull=True, details__has_key="sightings")
    total = runs.aggregate(n=_detail_sum("sellers"))["n"] or 0
    per_platform = (
        entries.filter(platform__isnull=False)
        .values_list("platform")
        .annotate(n=_detail_sum("sellers"))
        .order_by()
    )
    return Tally(total, _by_platform(per_platform))


# --- clusters


def _live_at_end(period: Period) -> QuerySet[ActorCluster]:
    return ActorCluster.objects.filter(created_at__lt=period.end).filter(
        Q(dissolved_at__isnull=True) | Q(dissolved_at__gte=period.end)
    )


def clusters_live(period: Period) -> Raw:
    return _clusters_tally(_live_at_end(period))


def cross_platform_clusters_live(period: Period) -> Raw:
    return _clusters_tally(_live_at_end(period).filter(cross_platform=True))


def _formed_by_month(period: Period, clusters: QuerySet[ActorCluster]) -> Raw:
    """Clusters formed in each month of the period (two grouped queries, whatever the number of months)."""
    formed = clusters.filter(_in(period))
    consortium = dict(
        formed.annotate(month=TruncMonth("created_at", tzinfo=UTC))
        .values_list("month")
        .annotate(n=Count("id"))
        .order_by()
    )
    holders = (
        ClusterMember.objects.filter(cluster__in=formed)
        .annotate(month=TruncMonth("cluster__created_at", tzinfo=UTC))
        .values_list("month", "seller__platform")
        .annotate(n=Count("cluster", distinct=True))
        .order_by()
    )
    per_platform: dict[str, dict[int, int]] = defaultdict(dict)
    for month, platform_id, count in holders:
        per_platform[f"{month:%Y-%m}"][platform_id] = count
    by_month = {f"{month:%Y-%m}": count for month, count in consortium.items()}
    return {month: Tally(by_month.get(month, 0), per_platform[month]) for month in period.months()}


def clusters_formed(period: Period) -> Raw:
    return _formed_by_month(period, ActorCluster.objects.all())


def cross_platform_clusters_formed(period: Period) -> Raw:
    return _formed_by_month(period, ActorCluster.objects.filter(cross_platform=True))


def _clusters_moved_to(status: str, period: Period) -> Raw:
    moved = ClusterEvent.objects.filter(_in(period), kind=EventKind.STATUS, details__to=status)
    return _clusters_tally(ActorCluster.objects.filter(pk__in=moved.values("cluster_id")))


def clusters_confirmed(period: Period) -> Raw:
    return _clusters_moved_to(ClusterStatus.CONFIRMED, period)


def clusters_dismissed(period: Period) -> Raw:
    return _clusters_moved_to(ClusterStatus.DISMISSED, period)


# --- screening


def _lookups(period: Period, detail: str | None) -> Raw:
    entries = AuditEntry.objects.filter(_in(period), action="lookup")
    if detail is None:
        return _rows_tally(entries, "platform")
    total = entries.aggregate(n=_detail_sum(detail))["n"] or 0
    per_platform = entries.values_list("platform").annotate(n=_detail_sum(detail)).order_by()
    return Tally(total, _by_platform(per_platform))


# --- appeals


APPEAL_ENTRIES = ("appeal_recorded", "appeal_updated")


def appeals_recorded(period: Period) -> Raw:
    """Appeals partners recorded in the period (`appeal_recorded`: a seller's first appeal, whatever its
    outcome then)."""
    return _rows_tally(AuditEntry.objects.filter(_in(period), action="appeal_recorded"), "platform")


def _appeals_decided(outcome: str, period: Period) -> Raw:
    """Appeals whose outcome became `outcome` in the period (recorded so, or updated to it from another)."""
    entries = AuditEntry.objects.filter(_in(period), action__in=APPEAL_ENTRIES, details__to=outcome).exclude(
        details__from=outcome
    )
    return _rows_tally(entries, "platform")


def appeals_upheld(period: Period) -> Raw:
    return _appeals_decided("upheld", period)


def appeals_rejected(period: Period) -> Raw:
    return _appeals_decided("rejected", period)


def lookup_requests(period: Period) -> Raw:
    return _lookups(period, None)


def indicators_screened(period: Period) -> Raw:
    return _lookups(period, "indicators")


def indicators_matched(period: Period) -> Raw:
    return _lookups(period, "matches")


# --- feedback


def opinions_by_kind(period: Period) -> Raw:
    """Opinions partners gave in the period (by the exchange's receipt), by kind; each platform its own."""
    rows = (
        Opinion.objects.filter(_in(period)).values_list("kind", "platform").annotate(n=Count("id")).order_by()
    )
    consortium: dict[str, int] = defaultdict(int)
    per_platform: dict[str, dict[int, int]] = defaultdict(dict)
    for kind, platform_id, count in rows:
        consortium[kind] += count
        per_platform[kind][platform_id] = count
    return {kind: Tally(consortium[kind], per_platform[kind]) for kind in OpinionKind.values}


def _actioned_in(period: Period) -> QuerySet[Opinion]:
    return Opinion.objects.filter(_in(period, "acted_at"), kind=OpinionKind.ACTIONED)


def clusters_actioned(period: Period) -> Raw:
    """Clusters some partner acted on in the period (by the time of action it gave); each platform's own are
    the clusters it acted on."""
    acted = _actioned_in(period)
    per_platform = acted.values_list("platform").annotate(n=Count("cluster", distinct=True)).order_by()
    return Tally(acted.values("cluster").distinct().count(), _by_platform(per_platform))


def median_time_to_action(period: Period) -> Raw:
    """The median of the times to action of the actions taken in the period (graph.opinions: one case per
    platform, cluster and seller), in days, of all platforms and of each."""
    cases = action_cases(actioned_rows(period.start, period.end))
    every = [duration for durations in cases.values() for duration in durations]
    return MedianTally(
        _median(every),
        {platform_id: _median(durations) for platform_id, durations in cases.items()},
    )


def _median(durations: list[timedelta]) -> Median:
    days = distribution(durations).median_days
    return Median(days if days is not None else 0.0, len(durations))


PARTICIPATION, REPORTS, CLUSTERS, SCREENING, FEEDBACK = (
    "Participation",
    "Reports received",
    "Actor clusters",
    "Screening (lookups)",
    "Feedback and appeals",
)

FIGURES: list[Figure] = [
    Figure(
        "platforms.members",
        PARTICIPATION,
        "Member platforms",
        "Platforms that had joined the exchange by the end of the period (including any deactivated since).",
        member_platforms,
    ),
    Figure(
        "platforms.reporting",
        PARTICIPATION,
        "Platforms that sent reports",
        "Platforms with at least one accepted submission received in the period.",
        reporting_platforms,
    ),
    Figure(
        "sellers.reported",
        REPORTS,
        "Sellers reported",
        "Seller accounts first reported in the period (by the report date partners give).",
        sellers_reported,
    ),
    Figure(
        "sellers.confirmed",
        REPORTS,
        "of which confirmed (enforcement taken)",
        "Sellers reported in the period whose report says the platform took enforcement action.",
        sellers_confirmed,
        part_of="sellers.reported",
    ),
    Figure(
        "signals",
        REPORTS,
        "Signals reported, by indicator kind",
        "Seller-indicator sightings (one hashed identifier of one reported seller) first reported in the period.",
        signals_by_kind,
        chart="bars",
    ),
    Figure(
        "reports.retracted",
        REPORTS,
        "Reports retracted",
        "Reports partners withdrew in the period (an appeal upheld, or a mistake); they stop linking at once.",
        retractions,
    ),
    Figure(
        "reports.purged",
        REPORTS,
        "Reports purged",
        "Retracted or expired reports deleted in the period after the grace period (purge_reports).",
        reports_purged,
    ),
    Figure(
        "clusters.live",
        CLUSTERS,
        "Actor clusters at period end",
        "Sets of linked sellers that existed at the end of the period (or now, for a running period).",
        clusters_live,
    ),
    Figure(
        "clusters.live_cross_platform",
        CLUSTERS,
        "of which cross-platform",
        "Clusters at period end that span two or more platforms.",
        cross_platform_clusters_live,
        part_of="clusters.live",
    ),
    Figure(
        "clusters.formed",
        CLUSTERS,
        "Actor clusters formed, by month",
        "Clusters that first appeared in the period.",
        clusters_formed,
        chart="columns",
        legend="all clusters",
    ),
    Figure(
        "clusters.formed_cross_platform",
        CLUSTERS,
        "Cross-platform clusters formed, by month",
        "Clusters formed in the period that span two or more platforms.",
        cross_platform_clusters_formed,
        part_of="clusters.formed",
        legend="cross-platform",
    ),
    Figure(
        "clusters.confirmed",
        CLUSTERS,
        "Clusters confirmed as one actor",
        "Clusters an exchange analyst moved to 'confirmed actor' in the period.",
        clusters_confirmed,
    ),
    Figure(
        "clusters.dismissed",
        CLUSTERS,
        "Clusters dismissed",
        "Clusters an exchange analyst dismissed in the period.",
        clusters_dismissed,
    ),
    Figure(
        "lookups.requests",
        SCREENING,
        "Lookup requests",
        "Screening requests partners sent through the API in the period.",
        lookup_requests,
    ),
    Figure(
        "lookups.indicators",
        SCREENING,
        "Indicators screened",
        "Hashed identifiers those requests asked about.",
        indicators_screened,
    ),
    Figure(
        "lookups.matches",
        SCREENING,
        "of which matched another platform's report",
        "Screened identifiers that a live report of another platform holds.",
        indicators_matched,
        part_of="lookups.indicators",
    ),
    Figure(
        "feedback.opinions",
        FEEDBACK,
        "Opinions on clusters",
        "Partners' opinions on clusters given in the period, by kind: seen too (they know the actor), false "
        "positive (their seller is not the actor), disputed (under appeal on their side), actioned (they took "
        "enforcement on the strength of the signal).",
        opinions_by_kind,
    ),
    Figure(
        "feedback.actions",
        FEEDBACK,
        "Clusters acted on",
        "Clusters on which a partner reported taking enforcement, with a time of action in the period.",
        clusters_actioned,
    ),
    Figure(
        "feedback.appeals",
        FEEDBACK,
        "Appeals",
        "Sellers' appeals against reports that partners recorded in the period.",
        appeals_recorded,
    ),
    Figure(
        "feedback.appeals_upheld",
        FEEDBACK,
        "Appeals upheld",
        "Appeals decided for the seller in the period (the ban lifted and the report retracted).",
        appeals_upheld,
    ),
    Figure(
        "feedback.appeals_rejected",
        FEEDBACK,
        "Appeals rejected",
        "Appeals decided against the seller in the period.",
        appeals_rejected,
    ),
    Figure(
        "feedback.time_to_action",
        FEEDBACK,
        "Median time to action (days)",
        "From the first signal a partner received about an actor (its lookup that showed the cluster, or its "
        "own report of the seller) to the action it reported, for actions taken in the period (shown over 10 "
        "or more cases).",
        median_time_to_action,
    ),
]


def build_report(period: Period, shown: Sequence[Platform]) -> Report:
    """The report with the consortium's figures and the `shown` platforms' own (each in its own column).

    Every platform's numbers are counted whoever is shown: the consortium's figures must be the same in every
    report, and the differencing rule checks them against every platform's own."""
    raw = {figure.key: figure.compute(period) if figure.compute else None for figure in FIGURES}
    columns = [CONSORTIUM, *(Column(p.pk, p.name, p.slug) for p in shown)]
    every_platform = Platform.objects.values_list("pk", flat=True)
    return publish(period, FIGURES, raw, columns, every_platform)


def scope_label(shown: Sequence[Platform], all_platforms: bool) -> str:
    """How the audit log names what a report showed."""
    if all_platforms:
        return "consortium and every platform"
    return "consortium" + "".join(f" and {platform.slug}" for platform in shown)
