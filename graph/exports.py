"""Clusters read for an export, as plain data: graph/stix.py and graph/misp.py build from it.

A partner's view is the partner API's: `ActorCluster.summary()` and `ActorCluster.partner_view()`, so the one
rule about what a partner may learn of other platforms (counts, neutral labels unless the consortium reveals
names, never their seller references or tokens) is written once, on the model. The exchange analysts' full
export names every member and platform.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Max

from accounts.models import Platform
from graph.models import ActorCluster, ClusterEvent, ClusterMember
from graph.stix import ClusterData, PlatformCount, SellerData


def _cluster_data(summary: dict[str, Any], cluster: ActorCluster, **view: Any) -> ClusterData:
    return ClusterData(
        ref=summary["id"],
        risk=summary["risk"],
        kinds=summary["kinds"],
        size=summary["size"],
        platforms=summary["platforms"],
        cross_platform=summary["cross_platform"],
        first_seen=cluster.created_at,
        changed_at=cluster.changed_at,
        **view,
    )


def partner_cluster_data(cluster: ActorCluster, platform: Platform) -> ClusterData:
    """The cluster as `platform` sees it through the partner API."""
    view = cluster.partner_view(platform.pk)
    return _cluster_data(
        cluster.summary(),
        cluster,
        sellers=[
            SellerData(s["seller_ref"], platform.name, s["status"], s["reported_at"], platform.slug)
            for s in view["your_sellers"]
        ],
        counts=[PlatformCount(other["platform"], other["accounts"]) for other in view["other_platforms"]],
        viewer=platform.slug,
    )


def full_cluster_data(clusters: Iterable[ActorCluster]) -> list[ClusterData]:
    """The clusters in full, for exchange analysts: every member by reference, every platform by name, the
    analysts' status and the time of the last recorded event. One query for all their members, one for the
    events' times."""
    clusters = list(clusters)
    last_events = dict(
        ClusterEvent.objects.filter(cluster__in=clusters)
        .values("cluster_id")
        .annotate(last=Max("created_at"))
        .values_list("cluster_id", "last")
    )
    members = (
        ClusterMember.objects.filter(cluster__in=clusters)
        .select_related("seller__platform")
        .order_by("seller__platform__name", "seller__seller_ref")
    )
    by_cluster: defaultdict[int, list[SellerData]] = defaultdict(list)
    for member in members:
        seller = member.seller
        by_cluster[member.cluster_id].append(
            SellerData(
                seller.seller_ref,
                seller.platform.name,
                seller.status,
                seller.reported_at,
                seller.platform.slug,
            )
        )
    result = []
    for cluster in clusters:
        sellers = by_cluster[cluster.pk]
        accounts: dict[str, int] = {}
        for data in sellers:
            accounts[data.platform] = accounts.get(data.platform, 0) + 1
        result.append(
            _cluster_data(
                cluster.summary(),
                cluster,
                sellers=sellers,
                counts=[PlatformCount(name, n) for name, n in accounts.items()],
                status=cluster.status,
                last_event_at=last_events.get(cluster.pk),
            )
        )
    return result
