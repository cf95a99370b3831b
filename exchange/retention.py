"""Retraction (a successful appeal) and retention (expiry and purge) of seller reports."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from accounts.models import AuditEntry
from exchange import hooks, locks, lookups
from exchange.ingest import holder_count
from exchange.models import Indicator, Seller, Sighting

logger = logging.getLogger("exchange.retention")


def do_retract(seller: Seller, reason: str, actor: str, *, overturned: bool = False) -> bool:
    """Retract a seller's report: it stops linking at once, and the platforms that were told about it are
    told of the retraction (`overturned`: because the seller's appeal was upheld). Returns False if it was
    already retracted."""
    with transaction.atomic():
        locked = Seller.objects.select_for_update().get(pk=seller.pk)
        if locked.retracted_at is not None:
            seller.retracted_at, seller.retraction_reason = locked.retracted_at, locked.retraction_reason
            seller.retracted_by = locked.retracted_by
            return False
        seller.retracted_at = timezone.now()
        seller.retraction_reason = reason
        seller.retracted_by = actor
        seller.updated_at = seller.retracted_at
        seller.save(update_fields=["retracted_at", "retraction_reason", "retracted_by", "updated_at"])
        AuditEntry.objects.record(
            "seller_retracted", actor, seller.platform_id, "seller", str(seller.pk), reason=reason
        )
        flag_probe(locked, seller.retracted_at, actor)
        hooks.announce_retraction([seller.pk], overturned=overturned)  # before the seller leaves its cluster
        hooks.announce_change(sellers=[seller.pk])
    logger.info("event=seller_retracted platform_id=%s seller_id=%s", seller.platform_id, seller.pk)
    return True


def flag_probe(seller: Seller, retracted_at: datetime, actor: str) -> None:
    """Flag a retraction soon after the seller's first report as a suspected probe (for exchange analysts:
    the audit log and the digest). Submitting a seller with someone else's hash, reading its cluster and
    retracting it is how a partner would test what other platforms hold; an appeal usually takes longer.
    The first report is the exchange's own receipt time (`created_at`), not the partner's `reported_at`,
    which the partner chooses."""
    window_hours = settings.EXCHANGE_PROBE_WINDOW_HOURS
    since_report = retracted_at - seller.created_at
    if not window_hours or since_report >= timedelta(hours=window_hours):
        return
    AuditEntry.objects.record(
        "probe_suspected",
        actor,
        seller.platform_id,
        "seller",
        str(seller.pk),
        hours_after_report=round(since_report.total_seconds() / 3600, 1),
        window_hours=window_hours,
        cluster_read=lookups.cluster_was_read(seller, since=seller.created_at),
    )


@dataclass
class PurgeResult:
    sellers: int
    sightings: int
    indicators: int


def purge(now: datetime | None = None, dry_run: bool = False) -> PurgeResult:
    """Delete reports retracted or expired longer ago than the grace period, their sightings, and the
    indicators no remaining seller has; the messages sent before that time lose their contents (graph's
    outboxes, through `hooks.announce_purge`). Leaves one audit entry per platform with counts only.

    Sellers still recorded in a cluster wait for the next run: the hourly task first re-clusters around
    reports that expired (graph.clustering.refresh_expired), so clusters never point at purged sellers."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS)
    with transaction.atomic():
        # After any recomputation that is writing: memberships have no database foreign key (exchange.locks).
        locks.hold(locks.RECOMPUTATION)
        doomed = Seller.objects.purgeable(cutoff).filter(cluster_membership__isnull=True)
        per_platform = dict(doomed.values_list("platform_id").annotate(n=Count("id")).order_by())
        sightings = Sighting.objects.filter(seller__in=doomed)
        sighting_count = sightings.count()
        seller_ids = list(doomed.values_list("id", flat=True))
        if dry_run:
            orphan_count = Indicator.objects.filter(sightings__isnull=True).count()
            transaction.set_rollback(True)
            return PurgeResult(len(seller_ids), sighting_count, orphan_count)
        touched = set(
            Sighting.objects.filter(seller_id__in=seller_ids).values_list("indicator_id", flat=True)
        )
        Sighting.objects.filter(seller_id__in=seller_ids).delete()
        Seller.objects.filter(id__in=seller_ids).delete()
        Indicator.objects.filter(id__in=touched).update(holders=holder_count())
        orphans = Indicator.objects.filter(sightings__isnull=True)
        indicator_count = orphans.count()
        orphans.delete()
        # What graph keeps of reports this old (sent report emails, webhook events) goes too: it names sellers.
        hooks.announce_purge(cutoff)
        for platform_id, count in per_platform.items():
            AuditEntry.objects.record("purge", "system", platform_id, sellers=count)
        if seller_ids:
            AuditEntry.objects.record(
                "purge",
                "system",
                None,
                sellers=len(seller_ids),
                sightings=sighting_count,
                indicators=indicator_count,
            )
    logger.info(
        "event=purge sellers=%s sightings=%s indicators=%s", len(seller_ids), sighting_count, indicator_count
    )
    return PurgeResult(len(seller_ids), sighting_count, indicator_count)
