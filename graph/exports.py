"""Clusters read for exports, as plain data: STIX bundles, MISP feeds and referral packages (graph/stix.py,
graph/misp.py and graph/referral.py build them from it).

A partner's STIX view is the partner API's: `ActorCluster.summary()` and `ActorCluster.partner_view()`, so the
one rule about what a partner may learn of other platforms (counts, neutral labels unless the consortium
reveals names, never their seller references or tokens) is written once, on the model. The exchange analysts'
full export names every member and platform.

A referral package holds what its maker's cluster page shows them, read from the page's own `Explanation`
(`graph.explain`, where other platforms' members become counts, aliases and months for a partner analyst)
and timeline (`graph.timeline`); indicator values and tokens never leave the exchange in one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db.models import Max
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Platform
from accounts.scoping import Scope
from graph import referral, risk
from graph.explain import Explanation, IndicatorRow, Member, explain
from graph.models import ActorCluster, ClusterEvent, ClusterMember
from graph.stix import ClusterData, PlatformCount, SellerData
from graph.timeline import timeline_lanes

REFERRAL_TEMPLATE = "referral/referral.html"


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


# --------------------------------------------------------------------------------------- referral packages


def referral_package(cluster: ActorCluster, scope: Scope, created_by: str) -> referral.Package:
    """The referral package of `cluster` as `created_by` (in `scope`) may see it, made now."""
    created_at = timezone.now()
    data = referral_data(explain(cluster, scope))
    html = render_to_string(
        REFERRAL_TEMPLATE,
        {
            "data": data,
            "tables": referral.pdf_tables(data),
            "full": data.view == referral.FULL,
            "created_by": created_by,
            "created_at": referral.utc(created_at),
            "files": referral.FILES,
        },
    )
    return referral.assemble(data, html, created_by, created_at)


def referral_data(explanation: Explanation) -> referral.ReferralData:
    """What goes into a referral package: the cluster page of the explanation's viewer, as plain data."""
    cluster, scope = explanation.cluster, explanation.scope
    full = scope.everything
    names = explanation.platform_names  # the page's: a partner analyst reads others as "Platform A"...
    facts = referral.ClusterFacts(
        ref=cluster.ref,
        status=cluster.status,
        risk=cluster.risk,
        size=cluster.size,
        platforms=cluster.platform_count,
        cross_platform=cluster.cross_platform,
        kinds=tuple(cluster.kinds),
        created_at=referral.utc(cluster.created_at),
        changed_at=referral.utc(cluster.changed_at),
        dissolved_at=referral.utc(cluster.dissolved_at) if cluster.dissolved_at else None,
        earliest_report=_date(explanation.earliest_report, explanation.earliest_report_format),
        cluster_id=cluster.pk if full else None,
        assignee=cluster.assignee.get_username() if full and cluster.assignee else None,
    )
    viewer = None
    if scope.platform_id is not None:
        viewer = Platform.objects.filter(pk=scope.platform_id).values_list("name", flat=True).first()
    data = referral.ReferralData(
        view=referral.FULL if full else referral.PARTNER,
        viewer_platform=viewer,
        cluster=facts,
        risk=tuple(
            referral.RiskPart(name, int(cluster.risk_parts.get(name, 0)), maximum, how)
            for name, maximum, how in risk.PARTS
        ),
        platforms=tuple(
            referral.PlatformMembers(group.label, group.count, group.own, bool(group.members))
            for group in explanation.groups
        ),
        members=tuple(
            _member_row(member, names[member.platform_id])
            for group in explanation.groups
            for member in group.members
        ),
        indicators=tuple(_indicator_facts(row) for row in explanation.indicators),
        evidence=tuple(
            referral.EvidenceStep(
                n,
                step.a.alias,
                names[step.a.platform_id],
                step.b.alias,
                names[step.b.platform_id],
                tuple(_indicator_facts(row) for row in step.indicators),
            )
            for n, step in enumerate(explanation.evidence_tree(), start=1)
        ),
        timeline=_timeline(explanation),
        notes=cluster.notes if full else None,
    )
    return referral.in_order(data)


def _date(moment: datetime | None, date_format: str) -> str | None:
    """A date as the page shows it: the month only ("Y-m") or the day ("Y-m-d"), in UTC."""
    if moment is None:
        return None
    return f"{moment.astimezone(UTC):{'%Y-%m' if date_format == 'Y-m' else '%Y-%m-%d'}}"


def _member_row(member: Member, platform: str) -> referral.MemberRow:
    seller = member.seller
    assert seller is not None  # listed members are the visible ones
    if seller.retracted_at is not None:
        state = f"retracted {seller.retracted_at.astimezone(UTC):%Y-%m-%d}"
    else:
        state = "active" if member.linkable else "expired"
    return referral.MemberRow(
        platform=platform,
        seller_ref=seller.seller_ref,
        status=seller.status,
        reasons=tuple(seller.reason_labels),
        first_reported=f"{seller.first_reported_at.astimezone(UTC):%Y-%m-%d}",
        last_reported=f"{seller.reported_at.astimezone(UTC):%Y-%m-%d}",
        expires=f"{seller.expires_at.astimezone(UTC):%Y-%m-%d}",
        state=state,
    )


LINKING_LABELS = {"common": "suppressed: marked common", "threshold": "suppressed: over the limit"}


def _indicator_facts(row: IndicatorRow) -> referral.IndicatorFacts:
    linking = LINKING_LABELS.get(row.suppressed) or (
        "links (forced in)" if row.linking == "include" else "links"
    )
    return referral.IndicatorFacts(
        kind=row.kind,
        strength=row.strength,
        sellers=row.sellers,
        platforms=row.platforms,
        first_seen=_date(row.first_seen, row.first_seen_format),
        linking=linking,
        links=row.links,
        bridge=row.bridge,
        holders=row.holders,
    )


def _timeline(explanation: Explanation) -> tuple[referral.TimelineEntry, ...]:
    """The timeline's spans and marks as rows, dated as precisely as the viewer may read each lane."""
    entries: list[referral.TimelineEntry] = []
    for lane in timeline_lanes(explanation):
        fmt = lane.date_format
        for span in lane.spans:
            entries.append(
                referral.TimelineEntry(
                    _at(span.start, fmt), _at(span.end, fmt), lane.label, "reports", span.title
                )
            )
        for mark in lane.marks:
            entries.append(referral.TimelineEntry(_at(mark.at, fmt), "", lane.label, mark.kind, mark.title))
    return tuple(entries)


def _at(moment: datetime, date_format: str) -> str:
    return f"{moment.astimezone(UTC):{date_format}}"
