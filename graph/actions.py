"""State changes an exchange analyst makes to held merges: one `do_*` function each, audited in the same
durable transaction, with the recomputation scheduled inside it (graph.scheduling)."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from exchange.models import AuditEntry
from graph.models import MergeState, PendingMerge
from graph.scheduling import schedule_recompute

logger = logging.getLogger("exchange.graph")


def do_approve_merge(merge: PendingMerge, user: AbstractBaseUser) -> bool:
    """Release a held merge: its sellers link, the clusters join. False if it was no longer pending."""
    return _decide(merge, user, MergeState.APPROVED)


def do_reject_merge(merge: PendingMerge, user: AbstractBaseUser) -> bool:
    """Keep a held merge's sellers out of linking whatever their age. False if it was no longer pending."""
    return _decide(merge, user, MergeState.REJECTED)


def _decide(merge: PendingMerge, user: AbstractBaseUser, state: MergeState) -> bool:
    with transaction.atomic(durable=True):
        locked = PendingMerge.objects.select_for_update().get(pk=merge.pk)
        if locked.state != MergeState.PENDING or locked.closed_at is not None:
            return False
        now = timezone.now()
        held = locked.held_seller_ids()
        clusters = locked.clusters().count()
        locked.state, locked.decided_at, locked.decided_by_id, locked.updated_at = state, now, user.pk, now
        if state == MergeState.APPROVED:
            locked.closed_at = now  # its sellers are no longer held
        locked.save(update_fields=["state", "decided_at", "decided_by", "updated_at", "closed_at"])
        # Counts only: seller references and tokens stay out of the audit log.
        AuditEntry.objects.record(
            f"merge_{state}",
            user.get_username(),
            locked.platform_id,
            "pending_merge",
            str(locked.pk),
            held_sellers=len(held),
            clusters=clusters,
        )
        schedule_recompute(sellers=held)
    merge.refresh_from_db()
    logger.info("event=merge_%s merge=%s held_sellers=%s", state, merge.pk, len(held))
    return True
