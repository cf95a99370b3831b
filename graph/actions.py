"""State changes an exchange analyst makes to held merges, a cluster's workflow, an indicator's linking
override and a false-positive review, and a partner's opinion on a cluster: one `do_*` function each, audited
in the same durable transaction (changes that move links or risk schedule their recomputation inside it, see
graph.scheduling)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange.models import Indicator, Seller
from exchange.timestamps import CLOCK_SKEW
from graph import opinions
from graph.models import (
    ActorCluster,
    ClusterEvent,
    ClusterMember,
    EventKind,
    MergeState,
    Opinion,
    OpinionKind,
    PendingMerge,
    Review,
)
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
    `cluster_updated` entry (field names only: notes may name sellers). Raises WorkflowError, writing
    nothing, if the workflow does not allow the new status from the cluster's current (locked) one.
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
        # Only the analyst's fields: a recomputation may have updated size and risk meanwhile.
        locked.save(update_fields=changed)
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
    for name in changed:
        setattr(cluster, name, getattr(locked, name))
    logger.info("event=cluster_updated cluster=%s fields=%s", cluster.pk, ",".join(changed))
    return changed


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


class OpinionNotFound(LookupError):
    """The cluster (or the named seller) does not exist for the calling platform: a 404, whichever it is."""


class OpinionRefused(ValueError):
    """An opinion the exchange does not accept: `field` and a message naming the problem (a 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RecordedOpinion:
    opinion: Opinion
    created: bool  # False: a false positive that already stood for this seller and cluster (nothing stored)


def do_record_opinion(
    api_key: ApiKey,
    ref: str,
    kind: str,
    *,
    seller_ref: str | None = None,
    note: str = "",
    acted_at: datetime | None = None,
) -> RecordedOpinion:
    """Record the key's platform's opinion on the live cluster `ref` (the request's shape is already valid).

    The platform must see the cluster (one of its sellers is in it) or have been shown it by one of its
    lookups (the audit log says so, `graph.opinions.first_lookup_at`); anything else is OpinionNotFound, as is
    a `seller_ref` the platform never reported. The seller must be in the cluster as the platform sees it
    (OpinionRefused). A `false_positive` detaches its seller for the platform at once and waits for review; a
    second one while the first stands returns the first. An `actioned` keeps the first signal the platform had
    about the actor; `acted_at` may not be before it (by more than the allowed clock skew). Audited with ids
    and the kind, never the note; corroborations and false positives recompute the cluster's risk.
    """
    platform_id = api_key.platform_id
    with transaction.atomic(durable=True):
        cluster = ActorCluster.objects.live().filter(ref=ref).first()
        if cluster is None:
            raise OpinionNotFound(ref)
        member = ActorCluster.objects.filter(pk=cluster.pk).seen_by(platform_id).exists()
        looked_up = opinions.first_lookup_at(platform_id, ref)
        if not member and looked_up is None:
            raise OpinionNotFound(ref)
        seller = None
        if seller_ref is not None:
            # Locked: two false positives on one seller at once must not both stand.
            seller = (
                Seller.objects.select_for_update()
                .filter(platform_id=platform_id, seller_ref=seller_ref)
                .first()
            )
            if seller is None:
                raise OpinionNotFound(seller_ref)
            if kind == OpinionKind.FALSE_POSITIVE:
                standing = (
                    Opinion.objects.standing_false_positives().filter(cluster=cluster, seller=seller).first()
                )
                if standing is not None:
                    return RecordedOpinion(standing, created=False)
            if seller.pk not in opinions.own_members(cluster, platform_id):
                if ClusterMember.objects.filter(cluster=cluster, seller=seller).exists():
                    problem = "is detached from this cluster by your false_positive opinion"
                else:
                    problem = "is not in this cluster"
                raise OpinionRefused("seller_ref", f"your seller {seller_ref!r} {problem}")
        first_signal = None
        if kind == OpinionKind.ACTIONED:
            assert acted_at is not None  # the request's shape (exchange.serializers.OpinionSerializer)
            first_signal = opinions.first_signal_at(platform_id, cluster, seller, looked_up)
            if first_signal is not None and acted_at < first_signal - CLOCK_SKEW:
                raise OpinionRefused(
                    "acted_at",
                    "is before the first signal you had about this actor "
                    f"({first_signal:%Y-%m-%dT%H:%M:%SZ}: your lookup that showed the cluster or your report)",
                )
        opinion = Opinion.objects.create(
            cluster=cluster,
            platform_id=platform_id,
            kind=kind,
            seller=seller,
            note=note,
            acted_at=acted_at,
            first_signal_at=first_signal,
            via="member" if member else "lookup",
            actor=api_key.prefix,
            review=Review.PENDING if kind == OpinionKind.FALSE_POSITIVE else "",
        )
        AuditEntry.objects.record(
            "opinion_recorded",
            api_key.prefix,
            platform_id,
            "cluster",
            str(cluster.pk),
            opinion=opinion.pk,
            kind=kind,
            seller=seller.pk if seller else None,
            via=opinion.via,
        )
        if kind != OpinionKind.DISPUTED:  # the others move the risk (graph.risk, "opinions")
            schedule_recompute(sellers=cluster.members.values_list("seller_id", flat=True))
        opinions.on_opinion_recorded(opinion)
    return RecordedOpinion(opinion, created=True)


def do_review_false_positive(opinion: Opinion, user: AbstractBaseUser, accept: bool) -> bool:
    """An exchange analyst's decision on a pending false positive: accepted, its seller stays out of the
    cluster for its platform (and the opinion keeps lowering the risk); rejected, the seller is shown to its
    platform again and the risk recomputed without it. False if it was no longer pending."""
    state = Review.ACCEPTED if accept else Review.REJECTED
    with transaction.atomic(durable=True):
        locked = Opinion.objects.select_for_update().get(pk=opinion.pk)
        if locked.kind != OpinionKind.FALSE_POSITIVE or locked.review != Review.PENDING:
            return False
        locked.review, locked.reviewed_by_id, locked.reviewed_at = state, user.pk, timezone.now()
        locked.save(update_fields=["review", "reviewed_by", "reviewed_at"])
        AuditEntry.objects.record(
            f"false_positive_{state}",
            user.get_username(),
            locked.platform_id,
            "opinion",
            str(locked.pk),
            cluster=locked.cluster_id,
            seller=locked.seller_id,
        )
        if not accept:
            schedule_recompute(sellers=locked.cluster.members.values_list("seller_id", flat=True))
    for name in ("review", "reviewed_by_id", "reviewed_at"):
        setattr(opinion, name, getattr(locked, name))
    logger.info("event=false_positive_%s opinion=%s cluster=%s", state, locked.pk, locked.cluster_id)
    return True
