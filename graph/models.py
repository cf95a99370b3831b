"""Actor clusters as stored: the result of linking, plus what analysts add (status, assignee, notes)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Platform
from accounts.scoping import ScopedQuerySet
from exchange.contract import OPINION_NOTE_MAX_LENGTH
from exchange.models import Indicator, Seller


def new_ref() -> str:
    """Opaque, unguessable cluster reference shown to partners (ids would leak volume and invite probing)."""
    return "ac_" + secrets.token_hex(8)


def new_refs(count: int) -> list[str]:
    """`count` of `new_ref`, from one draw of the system's randomness (a first build makes tens of thousands)."""
    digits = secrets.token_hex(8 * count)
    return ["ac_" + digits[start : start + 16] for start in range(0, 16 * count, 16)]


class ClusterStatus(models.TextChoices):
    NEW = "new", "New"
    INVESTIGATING = "investigating", "Investigating"
    CONFIRMED = "confirmed", "Confirmed actor"
    DISMISSED = "dismissed", "Dismissed"


RANK_ORDER = ("-cross_platform", "-risk", "-size", "id")  # the one ranking of clusters: API, admin, reports

# The workflow: where a cluster may go from each status. Reopening a closed case goes back to investigating.
# The admin's form offers these and the action (graph.actions.do_update_cluster) enforces them.
NEXT_STATUS: dict[str, tuple[str, ...]] = {
    ClusterStatus.NEW: (ClusterStatus.INVESTIGATING, ClusterStatus.DISMISSED),
    ClusterStatus.INVESTIGATING: (ClusterStatus.CONFIRMED, ClusterStatus.DISMISSED, ClusterStatus.NEW),
    ClusterStatus.CONFIRMED: (ClusterStatus.INVESTIGATING,),
    ClusterStatus.DISMISSED: (ClusterStatus.INVESTIGATING,),
}


class ActorClusterQuerySet(ScopedQuerySet["ActorCluster"]):
    def live(self) -> ActorClusterQuerySet:
        return self.filter(dissolved_at__isnull=True)

    def cross_platform(self) -> ActorClusterQuerySet:
        return self.filter(platform_count__gte=2)

    def containing_platform(self, platform: Platform | int) -> ActorClusterQuerySet:
        """Clusters with at least one member reported by `platform` (what its partners may see)."""
        return self.filter(
            Exists(ClusterMember.objects.filter(cluster=OuterRef("pk"), seller__platform=platform))
        )

    def seen_by(self, platform: Platform | int) -> ActorClusterQuerySet:
        """The clusters `platform` sees (its partner API and its partner analysts): those holding at least one
        of its sellers that it has not detached with a false-positive opinion (`ClusterMemberQuerySet.attached`).
        """
        return self.filter(
            Exists(ClusterMember.objects.filter(cluster=OuterRef("pk"), seller__platform=platform).attached())
        )

    def of_partner(self, platform_id: int) -> ActorClusterQuerySet:
        """A partner analyst sees the clusters containing at least one of their sellers (dissolved ones
        included: history), less those their platform detached all its sellers from (`seen_by`)."""
        return self.seen_by(platform_id)

    def ranked(self) -> ActorClusterQuerySet:
        """Cross-platform clusters first, then highest risk, then largest."""
        return self.order_by(*RANK_ORDER)

    def publishable(self) -> ActorClusterQuerySet:
        """Clusters an exchange analyst may publish as advisories: live, cross-platform, confirmed actors
        (`ActorCluster.publication_error` says why another one may not be)."""
        return self.live().cross_platform().filter(status=ClusterStatus.CONFIRMED)

    def advisories(self) -> ActorClusterQuerySet:
        """The exchange-wide advisories: published clusters that are still publishable. A published cluster
        that dissolves (merges away) or stops spanning platforms leaves them while it is so."""
        return self.publishable().filter(published_at__isnull=False)


class ActorCluster(models.Model):
    """A set of linked sellers believed to be one actor. Its id survives recomputation (largest overlap)."""

    # Unique through Meta's constraint, not `unique=True`: that also builds a `varchar_pattern_ops` index for
    # LIKE, which nothing runs (refs are looked up whole) and which a first build paid for on every cluster.
    ref = models.CharField(max_length=24, default=new_ref, editable=False)
    size = models.PositiveIntegerField(default=0)
    platform_count = models.PositiveSmallIntegerField(default=0)
    # Searched and filtered through `cluster_rank`, whose first two columns they are (no index of their own).
    cross_platform = models.BooleanField(default=False)
    risk = models.PositiveSmallIntegerField(default=0)
    risk_parts = models.JSONField(default=dict, blank=True)
    kinds = models.JSONField(default=list, blank=True, help_text="Indicator kinds that link the members.")
    status = models.CharField(max_length=20, choices=ClusterStatus.choices, default=ClusterStatus.NEW)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # `cluster_assignee` indexes the assigned ones only: new clusters have no assignee
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    changed_at = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="Last membership change."
    )
    dissolved_at = models.DateTimeField(null=True, blank=True)
    # Set by an exchange analyst (graph.actions.do_publish_advisory), cleared when withdrawn or when the
    # cluster stops being a confirmed actor. Not carried to a merge's survivor or a split's pieces: an
    # analyst publishes those anew.
    published_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When it was published as an exchange-wide advisory."
    )

    objects = ActorClusterQuerySet.as_manager()

    class Meta:
        verbose_name = "actor cluster"
        # Each index costs every new cluster of a first build its insert (tens of thousands): no index that
        # another covers (`cross_platform`, `risk` alone are `cluster_rank`'s columns), none on NULLs.
        indexes = [
            models.Index(fields=["-cross_platform", "-risk"], name="cluster_rank"),
            models.Index(
                fields=["assignee"], condition=models.Q(assignee__isnull=False), name="cluster_assignee"
            ),
        ]
        constraints = [models.UniqueConstraint(fields=["ref"], name="cluster_ref_unique")]

    def __str__(self) -> str:
        return f"Cluster {self.pk} ({self.size} sellers, {self.platform_count} platforms)"

    def next_statuses(self) -> tuple[str, ...]:
        """The statuses this cluster may move to from its current one (the workflow, NEXT_STATUS)."""
        return NEXT_STATUS.get(self.status, ())

    def transition_error(self, status: str) -> str | None:
        """Why this cluster may not become `status`, or None if it may (staying put is always allowed)."""
        if status == self.status or status in self.next_statuses():
            return None
        return f"A {self.status} cluster cannot become {status}."

    def publication_error(self) -> str | None:
        """Why this cluster may not be published as an advisory, or None if it may (the rule of
        `ActorClusterQuerySet.publishable`, with the reason)."""
        if self.dissolved_at is not None:
            return "A dissolved cluster cannot be published as an advisory."
        if self.platform_count < 2:
            return "Only a cross-platform cluster can be published as an advisory."
        if self.status != ClusterStatus.CONFIRMED:
            return f"Only a confirmed actor can be published as an advisory (this cluster is {self.status})."
        return None

    def summary(self) -> dict[str, Any]:
        """What a partner may learn about the cluster: counts, kinds and risk, never other members."""
        return {
            "id": self.ref,
            "size": self.size,
            "platforms": self.platform_count,
            "cross_platform": self.cross_platform,
            "risk": self.risk,
            "kinds": list(self.kinds),
        }

    def partner_view(self, platform_id: int) -> dict[str, Any]:
        """The rest of what a partner sees: its own members by ref (less those it detached with a false-positive
        opinion), other platforms as counts, the history."""
        members = list(
            self.members.select_related("seller")
            .order_by("seller__seller_ref")
            .only("seller__platform_id", "seller__seller_ref", "seller__status", "seller__reported_at")
        )
        detached = set(
            Opinion.objects.standing_false_positives()
            .filter(cluster=self, seller__platform_id=platform_id)
            .values_list("seller_id", flat=True)
        )
        own = [
            m.seller for m in members if m.seller.platform_id == platform_id and m.seller_id not in detached
        ]
        counts: dict[int, int] = {}
        for member in members:
            if member.seller.platform_id != platform_id:
                counts[member.seller.platform_id] = counts.get(member.seller.platform_id, 0) + 1
        labels = platform_labels(list(counts), settings.EXCHANGE_REVEAL_PLATFORM_NAMES)
        return {
            "your_sellers": [
                {"seller_ref": s.seller_ref, "status": s.status, "reported_at": s.reported_at} for s in own
            ],
            "other_platforms": [{"platform": labels[p], "accounts": n} for p, n in sorted(counts.items())],
            "events": [
                {
                    "kind": e.kind,
                    "at": e.created_at,
                    "members_before": e.members_before,
                    "members_after": e.members_after,
                }
                for e in self.events.order_by("created_at", "id")
            ],
            "first_seen": self.created_at,
            "changed_at": self.changed_at,
        }


def platform_labels(platform_ids: list[int], reveal: bool) -> dict[int, str]:
    """Names of other platforms, or neutral labels ("Platform A", ...) unless the consortium reveals them."""
    if reveal:
        return dict(Platform.objects.filter(id__in=platform_ids).values_list("id", "name"))
    return {
        pid: f"Platform {chr(ord('A') + n) if n < 26 else n + 1}"
        for n, pid in enumerate(sorted(platform_ids))
    }


class ClusterMemberQuerySet(models.QuerySet["ClusterMember"]):
    def attached(self) -> ClusterMemberQuerySet:
        """Memberships the seller's own platform has not detached: a standing false-positive opinion on the
        seller in that cluster (pending review, or accepted) takes the seller out of the cluster for its
        platform's views at once. Only the seller's own platform can detach it, and only its views (the
        partner API, its partner analysts) read through this; everyone else still counts the seller."""
        return self.exclude(
            Exists(
                Opinion.objects.standing_false_positives().filter(
                    cluster=OuterRef("cluster"), seller=OuterRef("seller")
                )
            )
        )

    def summaries(self, seller_ids: list[int]) -> dict[int, dict[str, Any]]:
        """{seller id: its cluster's partner-safe summary} for the sellers in a cluster their platform sees
        them in (`attached`): what the seller API and a partner analyst's seller pages show."""
        return {
            member.seller_id: member.cluster.summary()
            for member in self.attached().filter(seller_id__in=seller_ids).select_related("cluster")
        }

    def ref_of(self, seller_id: int) -> str | None:
        """The opaque reference of the seller's cluster, or None when it is in none."""
        return self.filter(seller_id=seller_id).values_list("cluster__ref", flat=True).first()


# Memberships and events are derived rows that only a recomputation writes (one at a time, under
# `exchange.locks.RECOMPUTATION`), so their references carry no database foreign key (`db_constraint=False`).
# PostgreSQL checks a foreign key row by row at commit: on a first build at 5M sightings (200,000 memberships,
# 72,000 events) those checks took 1.4 s of 6.8 s. What the keys guarded:
# - a seller deleted under a membership: only the retention purge deletes sellers; it deletes only sellers in
#   no cluster (which a recomputation never links: they are retracted or expired), and it waits for the lock;
# - a cluster deleted: clusters are never deleted (they dissolve);
# - deletes through the ORM still cascade (Django's collector, not the database, does on_delete); SQL's own
#   `DELETE` and `TRUNCATE ... CASCADE` of sellers or clusters do not reach these tables: name them too.
# tests/graph/test_membership_references.py holds these to it.
class ClusterMember(models.Model):
    cluster = models.ForeignKey(
        ActorCluster, on_delete=models.CASCADE, related_name="members", db_constraint=False
    )
    # The seller is the key (a seller is in at most one cluster): no id column, sequence or third index for the
    # hundreds of thousands of rows a first build inserts.
    seller = models.OneToOneField(
        Seller,
        on_delete=models.CASCADE,
        related_name="cluster_membership",
        db_constraint=False,
        primary_key=True,
    )
    joined_at = models.DateTimeField(default=timezone.now)

    objects = ClusterMemberQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.seller_id} in {self.cluster_id}"


class FormerMember(models.Model):
    """A seller of a cluster's recorded former membership: its members when its id last stopped describing
    them (it merged away, dissolved or lost its id in a split) or, for a merge's survivor, just before the
    merge. A recomputation that produces exactly this membership again gives the cluster its id back
    (`graph.identity`, restoration); the record is replaced at the cluster's next merge or dissolution and
    deleted once restored."""

    cluster = models.ForeignKey(ActorCluster, on_delete=models.CASCADE, related_name="former_members")
    # Indexed by the foreign key: a recomputation finds the records by the sellers it relinks.
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["cluster", "seller"], name="former_member_unique")]

    def __str__(self) -> str:
        return f"{self.seller_id} formerly in {self.cluster_id}"


class EventKind(models.TextChoices):
    CREATED = "created", "created"
    RESTORED = "restored", "restored"
    GREW = "grew", "grew"
    SHRANK = "shrank", "shrank"
    MERGED = "merged", "merged"
    SPLIT = "split", "split"
    DISSOLVED = "dissolved", "dissolved"
    STATUS = "status_changed", "status changed"


class ClusterEvent(models.Model):
    # No database foreign key, as for ClusterMember above.
    cluster = models.ForeignKey(
        ActorCluster, on_delete=models.CASCADE, related_name="events", db_constraint=False
    )
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    members_before = models.PositiveIntegerField(default=0)
    members_after = models.PositiveIntegerField(default=0)
    related = models.JSONField(default=list, blank=True, help_text="Ids of the other clusters involved.")
    # Platforms whose sellers joined or left with this event (reports use it to find what touched whom).
    platforms = models.JSONField(default=list, blank=True)
    actor = models.CharField(max_length=150, default="system")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.cluster_id} {self.kind} {self.members_before}->{self.members_after}"


class MergeState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    # Closed by a recomputation without a decision:
    MERGED = "merged", "Merged (corroborated or past the hold period)"
    WITHDRAWN = "withdrawn", "Withdrawn (the bridge is gone)"


class PendingMergeQuerySet(models.QuerySet["PendingMerge"]):
    def live(self) -> PendingMergeQuerySet:
        """Merges whose sellers are held right now (pending, or rejected while the bridge still exists)."""
        return self.filter(closed_at__isnull=True)


class PendingMerge(models.Model):
    """Clusters that one platform's fresh sellers alone would join, held for an exchange analyst.

    Recomputation creates, updates and closes these (graph.clustering); analysts approve or reject them
    through `graph.actions`. Its sellers: the held ones (`held=True`) and the rest of the link component.
    """

    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        max_length=10, choices=MergeState.choices, default=MergeState.PENDING, db_index=True
    )
    sellers = models.ManyToManyField(Seller, through="PendingMergeSeller", related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When its sellers stopped being held.")

    objects = PendingMergeQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"Merge {self.pk} held from platform {self.platform_id} ({self.state})"

    def held_seller_ids(self) -> list[int]:
        return sorted(self.memberships.filter(held=True).values_list("seller_id", flat=True))

    def clusters(self) -> ActorClusterQuerySet:
        """The live clusters it would join."""
        others = self.memberships.filter(held=False).values("seller_id")
        return ActorCluster.objects.live().filter(members__seller__in=others).distinct().order_by("id")


class PendingMergeSeller(models.Model):
    merge = models.ForeignKey(PendingMerge, on_delete=models.CASCADE, related_name="memberships")
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="+")
    held = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merge", "seller"], name="pending_merge_seller_unique")
        ]

    def __str__(self) -> str:
        return f"{self.seller_id} in merge {self.merge_id}{' (held)' if self.held else ''}"


class ReportKind(models.TextChoices):
    PLATFORM = "platform", "platform report"
    DIGEST = "digest", "exchange analysts' digest"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENDING = "sending", "sending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class OutboxRow(models.Model):
    """What every outbox row has (report emails, webhook events): written before anything is sent, in the
    transaction of what it reports; claimed by one sender at a time, retried with backoff, finally failed.
    The sending is `graph.outbox`'s."""

    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The retention purge clears a finished row's message (`CONTENT_FIELDS`: it names the platform's sellers)
    # once it is older than the purge's grace period (`graph.outbox.clear_contents`); a cleared row is never
    # sent again.
    cleared_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the retention purge cleared the message; empty while it is kept.",
    )

    CONTENT_FIELDS: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True


def due_rows[R: OutboxRow](
    rows: models.QuerySet[R], now: datetime, claim_timeout: timedelta
) -> models.QuerySet[R]:
    """Rows a sender may claim: pending and due, or claimed by a sender that has not finished in time (it
    crashed, or hangs): such a claim is taken over."""
    return rows.filter(
        models.Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        | models.Q(status=DeliveryStatus.SENDING, claimed_at__lt=now - claim_timeout)
    )


class ReportDeliveryQuerySet(models.QuerySet["ReportDelivery"]):
    def due(self, now: datetime, claim_timeout: timedelta) -> models.QuerySet[ReportDelivery]:
        return due_rows(self, now, claim_timeout)


class ReportDelivery(OutboxRow):
    """The report outbox: one report email for one recipient and one period, written before anything is sent.

    The subject, bodies and Message-ID are fixed when the row is written, so every (re)send of a row is the
    same message: if a sender dies after the SMTP server accepted it but before marking it sent, the retry
    carries the same Message-ID and receiving systems can drop the duplicate (at-least-once, deduplicable).
    """

    kind = models.CharField(max_length=10, choices=ReportKind.choices)
    platform = models.ForeignKey(
        Platform, on_delete=models.CASCADE, null=True, blank=True, related_name="report_deliveries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    recipient = models.EmailField()
    period_start = models.DateTimeField(null=True, blank=True, help_text="Empty: since the beginning.")
    period_end = models.DateTimeField()
    subject = models.CharField(max_length=250)
    body_text = models.TextField()
    body_html = models.TextField()
    message_id = models.CharField(max_length=250, unique=True)

    CONTENT_FIELDS = ("body_text", "body_html")  # they list the platform's own sellers and retracted reports

    objects = ReportDeliveryQuerySet.as_manager()

    class Meta(OutboxRow.Meta):
        verbose_name = "report delivery"
        verbose_name_plural = "report deliveries"
        ordering = ("-created_at", "-id")
        # Exactly one report per recipient and period, however often (or concurrently) the job runs.
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "recipient", "period_start"],
                condition=models.Q(kind="platform", period_start__isnull=False),
                name="report_once_per_period",
            ),
            models.UniqueConstraint(
                fields=["platform", "recipient"],
                condition=models.Q(kind="platform", period_start__isnull=True),
                name="report_first_once",
            ),
            models.UniqueConstraint(
                fields=["user", "period_start"],
                condition=models.Q(kind="digest", period_start__isnull=False),
                name="digest_once_per_period",
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(kind="digest", period_start__isnull=True),
                name="digest_first_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.recipient} until {self.period_end:%Y-%m-%d %H:%M}"


class ApprovalKind(models.TextChoices):
    CLUSTER_STATUS = "cluster_status", "cluster status"
    INDICATOR_LINKING = "indicator_linking", "indicator linking"


class ApprovalState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn (by the analyst who asked)"


class ApprovalQuerySet(ScopedQuerySet["Approval"]):
    def pending(self) -> ApprovalQuerySet:
        return self.filter(state=ApprovalState.PENDING)

    # of_partner: none (the default). Approvals are the exchange's own review of its analysts' decisions.


class Approval(models.Model):
    """An exchange analyst's decision that changes what partners see, waiting for a second exchange analyst
    (four-eyes review): a cluster confirmed as one actor or dismissed, an over-common indicator forced back
    into linking. Nothing changes until another analyst approves it (`graph.actions`)."""

    kind = models.CharField(max_length=20, choices=ApprovalKind.choices)
    cluster = models.ForeignKey(
        ActorCluster, on_delete=models.CASCADE, null=True, blank=True, related_name="approvals"
    )
    indicator = models.ForeignKey(
        Indicator, on_delete=models.CASCADE, null=True, blank=True, related_name="approvals"
    )
    current = models.CharField(max_length=20, help_text="The status or linking when it was asked for.")
    proposed = models.CharField(max_length=20, help_text="The status or linking asked for.")
    reason = models.TextField(blank=True, help_text="Why (an indicator override keeps it once approved).")
    state = models.CharField(
        max_length=10, choices=ApprovalState.choices, default=ApprovalState.PENDING, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    requested_by_name = models.CharField("first analyst", max_length=150)
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_by_name = models.CharField("second analyst", max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalQuerySet.as_manager()

    class Meta:
        ordering = ("-requested_at", "-id")
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind=ApprovalKind.CLUSTER_STATUS, cluster__isnull=False, indicator__isnull=True)
                    | models.Q(
                        kind=ApprovalKind.INDICATOR_LINKING, cluster__isnull=True, indicator__isnull=False
                    )
                ),
                name="approval_one_subject",
            ),
            # One decision waits per cluster or indicator at a time.
            models.UniqueConstraint(
                fields=["cluster"], condition=models.Q(state="pending"), name="approval_pending_cluster"
            ),
            models.UniqueConstraint(
                fields=["indicator"], condition=models.Q(state="pending"), name="approval_pending_indicator"
            ),
        ]

    def __str__(self) -> str:
        return f"Approval {self.pk}: {self.subject} {self.current} → {self.proposed} ({self.state})"

    @property
    def subject(self) -> str:
        if self.kind == ApprovalKind.CLUSTER_STATUS:
            return f"cluster #{self.cluster_id}"
        return f"indicator #{self.indicator_id}"


class OpinionKind(models.TextChoices):
    """What a partner says about a cluster (the partner contract's `OPINION_KINDS`)."""

    SEEN_TOO = "seen_too", "seen too"
    FALSE_POSITIVE = "false_positive", "false positive"
    DISPUTED = "disputed", "disputed"
    ACTIONED = "actioned", "actioned"


# The opinions that corroborate a cluster (risk: up), one per platform however many it gives.
CORROBORATING = (OpinionKind.SEEN_TOO, OpinionKind.ACTIONED)


class Review(models.TextChoices):
    """An exchange analyst's review of a false-positive opinion (blank for the other kinds)."""

    PENDING = "pending", "pending review"
    ACCEPTED = "accepted", "accepted: the seller stays out"
    REJECTED = "rejected", "rejected: the seller is shown again"


# A false positive stands (detaches its seller, lowers the risk) until an exchange analyst rejects it.
STANDING = (Review.PENDING, Review.ACCEPTED)


class OpinionQuerySet(ScopedQuerySet["Opinion"]):
    def of_partner(self, platform_id: int) -> OpinionQuerySet:
        """A partner analyst sees their own platform's opinions; others' only as counts (on cluster pages)."""
        return self.filter(platform_id=platform_id)

    def standing_false_positives(self) -> OpinionQuerySet:
        return self.filter(kind=OpinionKind.FALSE_POSITIVE, review__in=STANDING)

    def pending_review(self) -> OpinionQuerySet:
        return self.filter(kind=OpinionKind.FALSE_POSITIVE, review=Review.PENDING)

    def platform_counts(self) -> dict[str, int]:
        """{kind: how many platforms gave it} for every kind (0 when none): the counts everyone may see,
        never who."""
        rows = self.values_list("kind").annotate(n=models.Count("platform", distinct=True)).order_by()
        counted = dict(rows)
        return {kind: counted.get(kind, 0) for kind in OpinionKind.values}


class Opinion(models.Model):
    """A partner's opinion on a cluster: one of its own sellers' clusters, or one a lookup showed it.

    `false_positive` names one of the platform's sellers in the cluster: that seller is detached from the
    cluster for the platform's views at once (`ClusterMemberQuerySet.attached`) and waits for an exchange
    analyst's review (`review`). `actioned` says when the platform acted (`acted_at`) and keeps when it had
    first heard of the actor from the exchange (`first_signal_at`): the time to action. Written only by
    `graph.actions.do_record_opinion` and reviewed only by `graph.actions.do_review_false_positive`.
    """

    cluster = models.ForeignKey(ActorCluster, on_delete=models.CASCADE, related_name="opinions")
    platform = models.ForeignKey(Platform, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=OpinionKind.choices)
    # The platform's own seller the opinion is about (a purged report leaves the opinion without it).
    seller = models.ForeignKey(Seller, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.TextField(
        blank=True,
        max_length=OPINION_NOTE_MAX_LENGTH,
        help_text="The partner's free text; never shown to another platform, and it must not hold identifiers.",
    )
    acted_at = models.DateTimeField(null=True, blank=True, help_text="When the platform took action.")
    first_signal_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The first signal the platform had received about the actor: its lookup that showed the "
        "cluster, or its report of the seller, whichever came first.",
    )
    via = models.CharField(
        max_length=10, help_text="How the platform knows the cluster: 'member' (its seller) or 'lookup'."
    )
    actor = models.CharField(max_length=150, help_text="The API key prefix that recorded it.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    review = models.CharField(max_length=10, choices=Review.choices, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = OpinionQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["cluster", "kind"], name="opinion_cluster_kind")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind=OpinionKind.ACTIONED, acted_at__isnull=False)
                | (~models.Q(kind=OpinionKind.ACTIONED) & models.Q(acted_at__isnull=True)),
                name="opinion_acted_at_iff_actioned",
            ),
            models.CheckConstraint(
                condition=models.Q(kind=OpinionKind.FALSE_POSITIVE, review__in=Review.values)
                | (~models.Q(kind=OpinionKind.FALSE_POSITIVE) & models.Q(review="")),
                name="opinion_review_iff_false_positive",
            ),
            # One standing false positive per seller and cluster: a second one answers with the first.
            models.UniqueConstraint(
                fields=["cluster", "seller"],
                condition=models.Q(kind=OpinionKind.FALSE_POSITIVE, review__in=STANDING),
                name="opinion_one_standing_false_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on cluster {self.cluster_id} by platform {self.platform_id}"

    @property
    def time_to_action(self) -> timedelta | None:
        if self.acted_at is None or self.first_signal_at is None:
            return None
        return self.acted_at - self.first_signal_at


class WebhookDeliveryQuerySet(ScopedQuerySet["WebhookDelivery"]):
    def due(self, now: datetime, claim_timeout: timedelta) -> models.QuerySet[WebhookDelivery]:
        return due_rows(self, now, claim_timeout)

    def of_partner(self, platform_id: int) -> WebhookDeliveryQuerySet:
        """A partner analyst sees their own platform's webhook events (each holds only its own view)."""
        return self.filter(platform_id=platform_id)


class WebhookDelivery(OutboxRow):
    """The webhook outbox: one event for one platform (`graph.webhooks`), written in the transaction of the
    change it reports. The body is fixed when the row is written, so every attempt sends the same event
    with the same id (receivers deduplicate by it); only the signature's timestamp is of the attempt."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40, db_index=True)
    cluster = models.ForeignKey(
        ActorCluster, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    body = models.TextField(help_text="The event's JSON, exactly as sent.")
    response_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="HTTP status of the last attempt (the response body is not kept)."
    )

    CONTENT_FIELDS = ("body",)  # it names the platform's own sellers

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta(OutboxRow.Meta):
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} to {self.platform_id}"


class RetractionNotice(models.Model):
    """A platform was told about a seller (a cluster of its, a lookup match) whose report was then retracted:
    the propagation of the retraction (`graph.webhooks.propagate_retraction`), listed in the platform's next
    cluster report. Holds nothing about the seller but the opaque reference of the cluster it was in."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    cluster_ref = models.CharField(max_length=24, blank=True)
    signals = models.JSONField(default=list, help_text="How the platform had heard: cluster, lookup.")
    first_lookup_match_at = models.DateTimeField(null=True, blank=True)
    overturned = models.BooleanField(default=False, help_text="Retracted because an appeal was upheld.")
    retracted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["platform", "retracted_at"], name="retraction_notice_period")]

    def __str__(self) -> str:
        return f"retraction told to {self.platform_id} at {self.retracted_at:%Y-%m-%d %H:%M}"
