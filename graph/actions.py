"""State changes an exchange analyst makes to held merges, a cluster's workflow, its publication as an
advisory and an indicator's linking override: one `do_*` function each, audited in the same durable transaction (changes that move links
schedule their recomputation inside it, see graph.scheduling)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEntry
from exchange.models import Indicator
from graph.models import ActorCluster, ClusterEvent, ClusterStatus, EventKind, MergeState, PendingMerge
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


CLUSTER_WORK_FIELDS = ("status", "assignee", "notes")


class WorkflowError(ValueError):
    """A status change the cluster workflow (ActorCluster.transition_error) does not allow."""


def do_update_cluster(cluster: ActorCluster, actor: str, changes: dict[str, Any]) -> list[str]:
    """Apply an analyst's status, assignee and notes changes; returns the fields that changed.

    A status change writes its ClusterEvent and a `cluster_status_changed` audit entry, the other fields a
    `cluster_updated` entry (field names only: notes may name sellers). A published cluster that stops being
    a confirmed actor is withdrawn from the advisories with it (`advisory_withdrawn`). Raises WorkflowError,
    writing nothing, if the workflow does not allow the new status from the cluster's current (locked) one.
    """
    unknown = sorted(set(changes) - set(CLUSTER_WORK_FIELDS))
    if unknown:
        raise ValueError(f"not a cluster work field: {', '.join(unknown)}")
    with transaction.atomic(durable=True):
        locked = ActorCluster.objects.select_for_update().get(pk=cluster.pk)
        changed = [
            name for name in CLUSTER_WORK_FIELDS if name in changes and _differs(locked, name, changes)
        ]
        if not changed:
            return []
        before = locked.status
        if "status" in changed:
            error = locked.transition_error(changes["status"])
            if error:
                raise WorkflowError(error)
        for name in changed:
            setattr(locked, name, changes[name])
        withdrawn = locked.published_at is not None and locked.status != ClusterStatus.CONFIRMED
        if withdrawn:
            locked.published_at = None
        # Only the analyst's fields: a recomputation may have updated size and risk meanwhile.
        locked.save(update_fields=[*changed, *(["published_at"] if withdrawn else [])])
        if withdrawn:
            AuditEntry.objects.record(
                "advisory_withdrawn",
                actor,
                None,
                "cluster",
                str(locked.pk),
                ref=locked.ref,
                reason="status_changed",
            )
        if "status" in changed:
            ClusterEvent.objects.create(
                cluster=locked,
                kind=EventKind.STATUS,
                members_before=locked.size,
                members_after=locked.size,
                actor=actor,
                details={"from": before, "to": locked.status},
            )
            AuditEntry.objects.record(
                "cluster_status_changed",
                actor,
                None,
                "cluster",
                str(locked.pk),
                **{"from": before, "to": locked.status},
            )
        others = [name for name in changed if name != "status"]
        if others:
            AuditEntry.objects.record(
                "cluster_updated", actor, None, "cluster", str(locked.pk), fields=others
            )
    for name in (*changed, "published_at"):
        setattr(cluster, name, getattr(locked, name))
    logger.info("event=cluster_updated cluster=%s fields=%s", cluster.pk, ",".join(changed))
    return changed


class AdvisoryError(ValueError):
    """A cluster that may not be published as an advisory (ActorCluster.publication_error)."""


def do_publish_advisory(cluster: ActorCluster, actor: str) -> bool:
    """Publish a confirmed cross-platform cluster as an exchange-wide advisory (the TAXII advisories
    collection, graph/taxii.py), with its `advisory_published` audit entry. False if it was published
    already; AdvisoryError, writing nothing, if the (locked) cluster may not be published."""
    with transaction.atomic(durable=True):
        locked = ActorCluster.objects.select_for_update().get(pk=cluster.pk)
        error = locked.publication_error()
        if error:
            raise AdvisoryError(error)
        if locked.published_at is not None:
            cluster.published_at = locked.published_at
            return False
        locked.published_at = timezone.now()
        locked.save(update_fields=["published_at"])
        AuditEntry.objects.record(
            "advisory_published", actor, None, "cluster", str(locked.pk), ref=locked.ref
        )
    cluster.published_at = locked.published_at
    logger.info("event=advisory_published cluster=%s", locked.pk)
    return True


def do_withdraw_advisory(cluster: ActorCluster, actor: str) -> bool:
    """Take a cluster out of the advisories, with its `advisory_withdrawn` audit entry. False if it was not
    published."""
    with transaction.atomic(durable=True):
        locked = ActorCluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.published_at is None:
            cluster.published_at = None
            return False
        locked.published_at = None
        locked.save(update_fields=["published_at"])
        AuditEntry.objects.record(
            "advisory_withdrawn", actor, None, "cluster", str(locked.pk), ref=locked.ref, reason="withdrawn"
        )
    cluster.published_at = None
    logger.info("event=advisory_withdrawn cluster=%s", locked.pk)
    return True


def _differs(cluster: ActorCluster, name: str, changes: dict[str, Any]) -> bool:
    if name == "assignee":
        new = changes[name]
        return cluster.assignee_id != (new.pk if new is not None else None)
    return bool(getattr(cluster, name) != changes[name])


def do_set_indicator_linking(indicator: Indicator, actor: str, linking: str, reason: str) -> bool:
    """Override how an indicator links (auto, common or include) and why; False if nothing changed.

    Audited with the states only (the reason is free text, the token an identifier); a changed state
    schedules the recomputation of what the indicator links.
    """
    with transaction.atomic(durable=True):
        locked = Indicator.objects.select_for_update().get(pk=indicator.pk)
        before = locked.linking
        if (before, locked.linking_reason) == (linking, reason):
            return False
        locked.linking, locked.linking_reason = linking, reason
        locked.linking_changed_by, locked.linking_changed_at = actor, timezone.now()
        locked.save(update_fields=["linking", "linking_reason", "linking_changed_by", "linking_changed_at"])
        AuditEntry.objects.record(
            "indicator_linking_changed",
            actor,
            None,
            "indicator",
            str(locked.pk),
            **{"from": before, "to": linking},
        )
        if linking != before:
            schedule_recompute(indicators=[locked.pk])
    for name in ("linking", "linking_reason", "linking_changed_by", "linking_changed_at"):
        setattr(indicator, name, getattr(locked, name))
    logger.info("event=indicator_linking_changed indicator=%s from=%s to=%s", locked.pk, before, linking)
    return True
