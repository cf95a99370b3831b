"""Partners' opinions on clusters: which clusters a platform may give one on, when it first heard of the actor,
the time to action, and the hook other parts of the loop extend (`on_opinion_recorded`).

A platform gives its opinion on a live cluster it sees (one of its sellers is in it: `ActorCluster.seen_by`) or
on one a lookup of its showed it: the `lookup` audit entries record the cluster refs each answer revealed
(exchange.lookups), so the exchange accepts an opinion on a cluster only when its own log says the platform
learnt the ref that way. The writes are `graph.actions.do_record_opinion` and `do_review_false_positive`.

Time to action: from the first signal the platform received about the actor (the earlier of its first lookup
that showed the cluster and its own report of the seller, by the exchange's clock) to the time of action the
platform gives with `actioned`. The distribution per platform is what the admin's time-to-action page and the
transparency report show.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min

from accounts.models import AuditEntry
from exchange.models import Seller
from graph.models import ActorCluster, ClusterMember, Opinion, OpinionKind

logger = logging.getLogger("exchange.graph")

DAY = timedelta(days=1)


def first_lookup_at(platform_id: int, ref: str) -> datetime | None:
    """When a lookup of `platform_id` first showed the cluster `ref` (its audit entry), or None if none did."""
    # A substring test on the JSON list is portable (SQLite has no JSON containment); refs are fixed-length
    # and unique, so one cannot be part of another.
    return AuditEntry.objects.filter(
        action="lookup", platform_id=platform_id, details__refs__icontains=ref
    ).aggregate(first=Min("created_at"))["first"]


def own_members(cluster: ActorCluster, platform_id: int) -> list[int]:
    """The platform's sellers in the cluster that it sees there (not detached by its false positives)."""
    return list(
        ClusterMember.objects.attached()
        .filter(cluster=cluster, seller__platform_id=platform_id)
        .values_list("seller_id", flat=True)
    )


def first_signal_at(
    platform_id: int, cluster: ActorCluster, seller: Seller | None, looked_up: datetime | None
) -> datetime | None:
    """The first signal the platform received about the actor: the earlier of its first lookup that showed the
    cluster (`looked_up`) and its report of the seller (the exchange's receipt, `created_at`: a partner's
    `reported_at` may be backdated), or of its earliest seller in the cluster when it names none."""
    if seller is not None:
        reported = seller.created_at
    else:
        reported = Seller.objects.filter(
            pk__in=own_members(cluster, platform_id), platform_id=platform_id
        ).aggregate(first=Min("created_at"))["first"]
    moments = [moment for moment in (looked_up, reported) if moment is not None]
    return min(moments, default=None)


def on_opinion_recorded(opinion: Opinion) -> None:
    """Runs inside `do_record_opinion`'s transaction once the opinion and its audit entry are written: the one
    place where what follows an opinion starts. The other platforms that see the cluster (their sellers in it,
    not detached) are told with a `cluster.opinion_added` webhook event, queued in the same transaction so
    that no opinion is announced unless stored: the opinion's kind and the counts everyone may see (how many
    platforms gave each kind), never who gave it or about which seller."""
    from exchange.client import webhooks as contract
    from graph import webhooks

    cluster = opinion.cluster
    others = set(webhooks.own_sellers(cluster, webhooks.cluster_platforms(cluster))) - {opinion.platform_id}
    counts = cluster.opinions.platform_counts()
    queued = webhooks.emit(
        others,
        contract.CLUSTER_OPINION_ADDED,
        lambda platform_id: {
            "cluster": webhooks.cluster_view(cluster),
            "opinion": opinion.kind,
            "recorded_at": opinion.created_at,
            "opinions": counts,
        },
        cluster=cluster,
    )
    logger.info(
        "event=opinion_recorded opinion=%s cluster=%s platform=%s kind=%s webhook_events=%s",
        opinion.pk,
        opinion.cluster_id,
        opinion.platform_id,
        opinion.kind,
        queued,
    )


# ------------------------------------------------------------------------------------------- time to action


@dataclass(frozen=True, slots=True)
class Distribution:
    """Times to action of one platform (or all): how many cases, the median, the 90th percentile and the share
    handled within a day. Times are None without a case."""

    cases: int
    median: timedelta | None
    p90: timedelta | None
    within_day: float | None

    @property
    def median_days(self) -> float | None:
        return None if self.median is None else self.median / DAY

    @property
    def median_text(self) -> str:
        return duration_text(self.median)

    @property
    def p90_text(self) -> str:
        return duration_text(self.p90)

    @property
    def within_day_text(self) -> str:
        return "–" if self.within_day is None else f"{self.within_day:.0%}"


def duration_text(duration: timedelta | None) -> str:
    """Hours up to two days ("5.5 hours"), then days ("3.2 days"); "–" without a value."""
    if duration is None:
        return "–"
    hours = duration / timedelta(hours=1)
    return f"{hours:.1f} hours" if hours < 48 else f"{duration / DAY:.1f} days"


def distribution(durations: Iterable[timedelta]) -> Distribution:
    """Median and 90th percentile ("inclusive" quantiles: linear between the closest ranks, the 90th of one case
    is that case) and the share within 24 hours."""
    values = sorted(durations)
    if not values:
        return Distribution(0, None, None, None)
    seconds = [value.total_seconds() for value in values]
    p90 = seconds[0] if len(seconds) == 1 else statistics.quantiles(seconds, n=10, method="inclusive")[-1]
    return Distribution(
        cases=len(values),
        median=timedelta(seconds=statistics.median(seconds)),
        p90=timedelta(seconds=p90),
        within_day=sum(1 for value in values if value <= DAY) / len(values),
    )


def action_cases(
    opinions: Iterable[tuple[int, int, int | None, datetime, datetime]],
) -> dict[int, list[timedelta]]:
    """{platform id: its times to action} from (platform, cluster, seller, first signal, acted at) rows of
    `actioned` opinions. One case per platform, cluster and seller (its earliest action): recording the same
    action twice does not count it twice. A time is never negative (acted_at may be a clock skew early)."""
    earliest: dict[tuple[int, int, int | None], tuple[datetime, datetime]] = {}
    for platform_id, cluster_id, seller_id, signal, acted in opinions:
        key = (platform_id, cluster_id, seller_id)
        if key not in earliest or acted < earliest[key][1]:
            earliest[key] = (signal, acted)
    cases: dict[int, list[timedelta]] = {}
    for (platform_id, _, _), (signal, acted) in sorted(earliest.items(), key=lambda item: _order(item[0])):
        cases.setdefault(platform_id, []).append(max(acted - signal, timedelta(0)))
    return cases


def _order(key: tuple[int, int, int | None]) -> tuple[int, int, int]:
    platform_id, cluster_id, seller_id = key
    return platform_id, cluster_id, -1 if seller_id is None else seller_id


def actioned_rows(
    start: datetime | None = None, end: datetime | None = None, platform_id: int | None = None
) -> list[tuple[int, int, int | None, datetime, datetime]]:
    """(platform, cluster, seller, first signal, acted at) of the `actioned` opinions acted on in [start, end),
    of one platform or all."""
    query = Opinion.objects.filter(kind=OpinionKind.ACTIONED, first_signal_at__isnull=False)
    if start is not None:
        query = query.filter(acted_at__gte=start)
    if end is not None:
        query = query.filter(acted_at__lt=end)
    if platform_id is not None:
        query = query.filter(platform_id=platform_id)
    rows = query.order_by().values_list(
        "platform_id", "cluster_id", "seller_id", "first_signal_at", "acted_at"
    )
    return [
        (platform_id, cluster_id, seller_id, signal, acted)
        for platform_id, cluster_id, seller_id, signal, acted in rows
        if signal is not None and acted is not None  # always, for `actioned` (the query and a constraint)
    ]


def time_to_action(
    platform_id: int | None = None, start: datetime | None = None, end: datetime | None = None
) -> dict[int, Distribution]:
    """{platform id: its distribution} for the platforms with a case (one platform's only when given)."""
    cases = action_cases(actioned_rows(start, end, platform_id))
    return {platform: distribution(durations) for platform, durations in cases.items()}
