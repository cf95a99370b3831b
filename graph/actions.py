"""State changes an exchange analyst makes to held merges, a cluster's workflow, its publication as an
advisory, an indicator's linking override and a false-positive review, and a partner's opinion on a cluster:
one `do_*` function each, audited in the same durable transaction (changes that move links or risk schedule
their recomputation inside it, see graph.scheduling).

Four-eyes review: the decisions that change what partners see (a cluster confirmed as one actor or dismissed,
an over-common indicator forced back into linking) are not made by one analyst. `do_update_cluster` and
`do_set_indicator_linking` refuse them (ApprovalRequired); the first analyst asks with
`do_request_cluster_status` / `do_request_indicator_linking`, which change nothing but write a pending
`Approval`, and the change is made when a *different* exchange analyst approves it (`do_approve`), or dropped
(`do_reject`: a rejection, or the first analyst withdrawing). Both steps are audited. No worker or system path
confirms, dismisses or forces in today; one that must would call the private `_apply_*` helpers and say why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from accounts.roles import is_exchange_analyst
from exchange.models import Indicator, Linking, Seller
from exchange.timestamps import CLOCK_SKEW
from graph import opinions, webhooks
from graph.models import (
    ActorCluster,
    Approval,
    ApprovalKind,
    ApprovalState,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
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


# The cluster statuses that partners' view of a cluster turns on: reaching one takes two exchange analysts.
FOUR_EYES_STATUSES = (ClusterStatus.CONFIRMED, ClusterStatus.DISMISSED)


class ApprovalRequired(Exception):
    """The change needs a second exchange analyst's approval: ask for it (`do_request_*`) instead."""


class ApprovalRefused(Exception):
    """An approval cannot be asked for, approved or rejected (the message says why, for the analyst)."""


def do_update_cluster(cluster: ActorCluster, actor: str, changes: dict[str, Any]) -> list[str]:
    """Apply an analyst's status, assignee and notes changes; returns the fields that changed.

    A status change writes its ClusterEvent and a `cluster_status_changed` audit entry, the other fields a
    `cluster_updated` entry (field names only: notes may name sellers). A published cluster that stops being
    a confirmed actor is withdrawn from the advisories with it (`advisory_withdrawn`). Raises WorkflowError,
    writing nothing, if the workflow does not allow the new status from the cluster's current (locked) one,
    and ApprovalRequired, writing nothing, for a status in FOUR_EYES_STATUSES (`do_request_cluster_status`).
    """
    unknown = sorted(set(changes) - set(CLUSTER_WORK_FIELDS))
    if unknown:
        raise ValueError(f"not a cluster work field: {', '.join(unknown)}")
    with transaction.atomic(durable=True):
        locked = ActorCluster.objects.select_for_update().get(pk=cluster.pk)
        changed = _apply_cluster_changes(locked, actor, changes, approved_by="")
    for name in (*changed, "published_at"):
        setattr(cluster, name, getattr(locked, name))
    if changed:
        logger.info("event=cluster_updated cluster=%s fields=%s", cluster.pk, ",".join(changed))
    return changed


def _apply_cluster_changes(
    locked: ActorCluster, actor: str, changes: dict[str, Any], approved_by: str
) -> list[str]:
    """The changes to a cluster locked in the caller's transaction, with their event and audit entries. A
    four-eyes status only with the second analyst's name (`approved_by`)."""
    changed = [name for name in CLUSTER_WORK_FIELDS if name in changes and _differs(locked, name, changes)]
    if not changed:
        return []
    before = locked.status
    if "status" in changed:
        error = locked.transition_error(changes["status"])
        if error:
            raise WorkflowError(error)
        if changes["status"] in FOUR_EYES_STATUSES and not approved_by:
            raise ApprovalRequired(
                f"Making a cluster {changes['status']} needs a second exchange analyst's approval."
            )
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
    approval = {"approved_by": approved_by} if approved_by else {}
    if "status" in changed:
        ClusterEvent.objects.create(
            cluster=locked,
            kind=EventKind.STATUS,
            members_before=locked.size,
            members_after=locked.size,
            actor=actor,
            details={"from": before, "to": locked.status, **approval},
        )
        webhooks.queue_status_change(locked, before)  # confirmed or dismissed: its platforms hear of it
        AuditEntry.objects.record(
            "cluster_status_changed",
            actor,
            None,
            "cluster",
            str(locked.pk),
            **{"from": before, "to": locked.status},
            **approval,
        )
    others = [name for name in changed if name != "status"]
    if others:
        AuditEntry.objects.record("cluster_updated", actor, None, "cluster", str(locked.pk), fields=others)
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


def linking_needs_approval(before: str, linking: str) -> bool:
    """Forcing an indicator in (over its kind's threshold, or out of "common") takes two exchange analysts:
    it glues clusters together that partners then see joined. Marking one common, or back to automatic,
    only ever keeps links apart and is made by one."""
    return linking == Linking.INCLUDE and before != Linking.INCLUDE


def do_set_indicator_linking(indicator: Indicator, actor: str, linking: str, reason: str) -> bool:
    """Override how an indicator links (auto, common or include) and why; False if nothing changed.

    Audited with the states only (the reason is free text, the token an identifier); a changed state
    schedules the recomputation of what the indicator links. Raises ApprovalRequired, writing nothing, for
    a change that needs a second analyst (`linking_needs_approval`: `do_request_indicator_linking`).
    """
    with transaction.atomic(durable=True):
        locked = Indicator.objects.select_for_update().get(pk=indicator.pk)
        before = locked.linking
        if linking_needs_approval(before, linking):
            raise ApprovalRequired("Forcing an indicator in needs a second exchange analyst's approval.")
        changed = _apply_linking(locked, actor, linking, reason, approved_by="")
    for name in ("linking", "linking_reason", "linking_changed_by", "linking_changed_at"):
        setattr(indicator, name, getattr(locked, name))
    if changed:
        logger.info("event=indicator_linking_changed indicator=%s from=%s to=%s", locked.pk, before, linking)
    return changed


def _apply_linking(locked: Indicator, actor: str, linking: str, reason: str, approved_by: str) -> bool:
    """The override of an indicator locked in the caller's transaction, audited; False if nothing changed."""
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
        **({"approved_by": approved_by} if approved_by else {}),
    )
    if linking != before:
        schedule_recompute(indicators=[locked.pk])
    return True


# ------------------------------------------------------------------------------------------------ four eyes


def do_request_cluster_status(cluster: ActorCluster, user: AbstractBaseUser, status: str) -> Approval:
    """Ask for a four-eyes status (FOUR_EYES_STATUSES) of a cluster: a pending approval, nothing else changes.
    Raises WorkflowError if the workflow does not allow it now, ApprovalRefused if another change of the
    cluster already waits or the user is not an exchange analyst."""
    if status not in FOUR_EYES_STATUSES:
        raise ValueError(f"a {status} status needs no approval: use do_update_cluster")
    with transaction.atomic(durable=True):
        locked = ActorCluster.objects.select_for_update().get(pk=cluster.pk)
        error = locked.transition_error(status)
        if error or locked.status == status:
            raise WorkflowError(error or f"The cluster is {status} already.")
        return _request(user, ApprovalKind.CLUSTER_STATUS, locked.status, status, "", cluster=locked)


def do_request_indicator_linking(
    indicator: Indicator, user: AbstractBaseUser, linking: str, reason: str
) -> Approval:
    """Ask for an indicator linking override that needs approval (`linking_needs_approval`): a pending
    approval holding the reason, nothing else changes. Raises ApprovalRefused as do_request_cluster_status."""
    with transaction.atomic(durable=True):
        locked = Indicator.objects.select_for_update().get(pk=indicator.pk)
        if not linking_needs_approval(locked.linking, linking):
            raise ValueError(f"{locked.linking} -> {linking} needs no approval: use do_set_indicator_linking")
        return _request(
            user, ApprovalKind.INDICATOR_LINKING, locked.linking, linking, reason, indicator=locked
        )


def _request(
    user: AbstractBaseUser, kind: str, current: str, proposed: str, reason: str, **subject: Any
) -> Approval:
    if not is_exchange_analyst(user):
        raise ApprovalRefused("Only exchange analysts make this decision.")
    try:
        with transaction.atomic():
            approval = Approval.objects.create(
                kind=kind,
                current=current,
                proposed=proposed,
                reason=reason,
                requested_by_id=user.pk,
                requested_by_name=user.get_username(),
                **subject,
            )
    except IntegrityError:  # approval_pending_cluster / approval_pending_indicator
        raise ApprovalRefused(
            "Another change of this waits for a second analyst already: approve or reject it first."
        ) from None
    _audit(approval, "approval_requested", user.get_username())
    logger.info("event=approval_requested approval=%s kind=%s to=%s", approval.pk, kind, proposed)
    return approval


def do_approve(approval: Approval, user: AbstractBaseUser) -> None:
    """The second analyst's approval: the change is made, attributed to the first analyst and approved by
    this one. Refused (ApprovalRefused, nothing written) to the analyst who asked for it, to anyone but an
    exchange analyst and once it is no longer pending; WorkflowError if the cluster's status moved so that the
    workflow no longer allows the change (reject it then)."""
    username = user.get_username()
    with transaction.atomic(durable=True):
        locked = _decidable(approval, user)
        if locked.requested_by_id is not None and locked.requested_by_id == user.pk:
            raise ApprovalRefused(
                f"You asked for this change: another exchange analyst must approve it (approval {locked.pk})."
            )
        first = locked.requested_by_name
        if locked.kind == ApprovalKind.CLUSTER_STATUS:
            cluster = ActorCluster.objects.select_for_update().get(pk=cast(int, locked.cluster_id))
            _apply_cluster_changes(cluster, first, {"status": locked.proposed}, approved_by=username)
        else:
            indicator = Indicator.objects.select_for_update().get(pk=cast(int, locked.indicator_id))
            _apply_linking(indicator, first, locked.proposed, locked.reason, approved_by=username)
        _decide_approval(locked, user, ApprovalState.APPROVED)
    approval.refresh_from_db()
    logger.info("event=approval_approved approval=%s", approval.pk)


def do_reject(approval: Approval, user: AbstractBaseUser) -> str:
    """Drop a pending change: rejected by another exchange analyst, or withdrawn by the one who asked (a
    change not made needs no second pair of eyes). Returns the new state; ApprovalRefused as do_approve."""
    with transaction.atomic(durable=True):
        locked = _decidable(approval, user)
        own = locked.requested_by_id is not None and locked.requested_by_id == user.pk
        state = ApprovalState.WITHDRAWN if own else ApprovalState.REJECTED
        _decide_approval(locked, user, state)
    approval.refresh_from_db()
    logger.info("event=approval_%s approval=%s", state, approval.pk)
    return str(state)


def _decidable(approval: Approval, user: AbstractBaseUser) -> Approval:
    if not is_exchange_analyst(user):
        raise ApprovalRefused("Only exchange analysts approve or reject these decisions.")
    locked = Approval.objects.select_for_update().get(pk=approval.pk)
    if locked.state != ApprovalState.PENDING:
        raise ApprovalRefused(f"Approval {locked.pk} was {locked.state} already.")
    return locked


def _decide_approval(locked: Approval, user: AbstractBaseUser, state: str) -> None:
    locked.state, locked.decided_by_id, locked.decided_at = state, user.pk, timezone.now()
    locked.decided_by_name = user.get_username()
    locked.save(update_fields=["state", "decided_by", "decided_by_name", "decided_at"])
    _audit(locked, f"approval_{state}", user.get_username(), first_analyst=locked.requested_by_name)


def _audit(approval: Approval, action: str, actor: str, **extra: Any) -> None:
    """An approval's audit entry: what it is about and the change, never the reason (free text)."""
    subject = "cluster" if approval.kind == ApprovalKind.CLUSTER_STATUS else "indicator"
    AuditEntry.objects.record(
        action,
        actor,
        None,
        "approval",
        str(approval.pk),
        kind=approval.kind,
        **{
            subject: approval.cluster_id or approval.indicator_id,
            "from": approval.current,
            "to": approval.proposed,
        },
        **extra,
    )


# ------------------------------------------------------------------------------------------------ opinions


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
