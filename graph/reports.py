"""Periodic cluster-report emails: what each platform and the exchange analysts are told, and its delivery.

Two steps, each safe to run any number of times and from several processes at once:

1. `queue_due_reports()` writes the outbox. For each platform whose report is due it moves
   `Platform.last_report_at` on with a compare-and-set UPDATE (only one run can take a period), computes the
   report for the period since the previous one and writes one `ReportDelivery` row per recipient, all in one
   transaction. Exchange analysts' digests are written the same way, one row per analyst, made unique per
   period start by constraints. Subject, bodies and Message-ID are fixed in the row.
2. `send_due_reports()` empties it through `graph.outbox` (which webhook events share): claims one due row at
   a time with a conditional UPDATE (pending and due, or claimed by a sender that did not finish within the
   claim timeout), sends it, marks it sent. A failed send is retried with exponential backoff and finally
   marked failed (visible in the admin).

Crash safety: a crash while queueing rolls the whole period back (it is taken again by the next run). A crash
after claiming leaves the row claimed; it is reclaimed after `EXCHANGE_REPORT_CLAIM_TIMEOUT` seconds. The one
honest at-least-once edge: if a sender dies after the SMTP server accepted a message but before the row is
marked sent, the retry sends it again, with the *same* Message-ID, so MTAs and mail clients can drop the
duplicate. Nothing is ever lost, and nothing reaches a mailbox twice under different identities.

Retraction propagation: a platform's report also lists the reports of other platforms it had been told about
(a cluster of its, a lookup match) that were retracted in the period (`RetractionNotice`, written by
`graph.webhooks.propagate_retraction`, which sends the webhook event of the same fact).

Privacy: a platform's report lists only its own sellers' references; other platforms appear as counts (names
only with `EXCHANGE_REVEAL_PLATFORM_NAMES`). Reports never carry tokens, hashes or cluster notes (analysts'
internal text), and link clusters by their opaque ref, never their sequential id. The digest carries no
seller references at all; it names the platforms whose quick retractions look like probes (counts only).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid, parseaddr
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import AuditEntry, Cadence, Platform
from accounts.roles import EXCHANGE_ANALYST
from exchange.models import Seller
from graph import outbox
from graph.models import (
    ActorCluster,
    ActorClusterQuerySet,
    ClusterEvent,
    ClusterMember,
    EventKind,
    MergeState,
    Opinion,
    PendingMerge,
    ReportDelivery,
    ReportKind,
    RetractionNotice,
    platform_labels,
)

logger = logging.getLogger("exchange.reports")

MAX_ITEMS = 200  # per section; the counts stay exact, the list says how many more there are
MAX_REFS = 20  # own seller references listed per cluster
MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(minutes=5)
LONGEST_RETRY = timedelta(hours=6)
RETRIES = outbox.RetryPolicy(FIRST_RETRY, LONGEST_RETRY, MAX_ATTEMPTS)


# ------------------------------------------------------------------------------------------------ schedule


def period_boundary(cadence: str, now: datetime) -> datetime:
    """Start of the current day (daily) or ISO week (weekly), UTC.

    A report is due once a boundary has passed since the last one, so reports go out at the first run after
    midnight (or Monday midnight) however often the job runs, and the send time never drifts.
    """
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if cadence == Cadence.WEEKLY:
        return midnight - timedelta(days=midnight.weekday())
    return midnight


def report_due(cadence: str, last_report_at: datetime | None, now: datetime) -> bool:
    """Off never; the first report at the first run after reports are switched on; then once per period."""
    if cadence not in (Cadence.DAILY, Cadence.WEEKLY):
        return False
    return last_report_at is None or last_report_at < period_boundary(cadence, now)


def claim_timeout() -> timedelta:
    return timedelta(seconds=settings.EXCHANGE_REPORT_CLAIM_TIMEOUT)


def retry_delay(attempts: int) -> timedelta:
    """5 min, 10 min, 20 min, ... at most 6 h."""
    return RETRIES.delay(attempts)


# ------------------------------------------------------------------------------------------------ content


@dataclass
class ClusterItem:
    """One line of a report. `own_refs` is only ever the receiving platform's own sellers."""

    id: int
    ref: str
    url: str
    risk: int
    size: int
    platform_count: int
    kinds: list[str]
    status: str = ""
    size_before: int | None = None
    merged: bool = False
    change: str = ""  # for clusters that lost accounts: shrank / split / dissolved
    own_refs: list[str] = field(default_factory=list)
    own_count: int = 0
    own_new: int = 0
    other_accounts: int = 0
    other_platforms: int = 0
    other_names: list[str] = field(default_factory=list)

    @property
    def more_refs(self) -> int:
        return self.own_count - len(self.own_refs)


@dataclass
class RetractionItem:
    """A report the platform had been told about (its cluster, a lookup match) that was retracted."""

    retracted_at: datetime
    cluster_ref: str
    in_your_cluster: bool
    lookup_matched_at: datetime | None
    overturned: bool


@dataclass
class Section:
    items: list[Any]
    total: int

    @classmethod
    def of(cls, items: list[Any]) -> Section:
        return cls(items[:MAX_ITEMS], len(items))

    @property
    def more(self) -> int:
        return self.total - len(self.items)


@dataclass
class PlatformReport:
    platform: Platform
    period_start: datetime | None
    period_end: datetime
    new: Section
    grew: Section
    lost: Section
    own_retractions: list[str]
    cross_platform_clusters: int
    own_sellers_in_them: int
    retractions: Section = field(default_factory=lambda: Section([], 0))

    @property
    def is_empty(self) -> bool:
        return not (
            self.new.total
            or self.grew.total
            or self.lost.total
            or self.own_retractions
            or self.retractions.total
        )


@dataclass
class SuspectedProbes:
    """One platform's retractions soon after their first report (`probe_suspected` audit entries)."""

    platform: str
    retractions: int
    after_cluster_read: int


@dataclass
class HeldMerges:
    """One platform's bridges between other platforms' clusters that wait for an exchange analyst."""

    platform: str
    waiting: int
    new: int  # held for the first time in the period


@dataclass
class Digest:
    period_start: datetime | None
    period_end: datetime
    clusters: Section
    new_count: int
    grew_count: int
    live_cross_platform: int
    probes: list[SuspectedProbes] = field(default_factory=list)
    probe_window_hours: int = 0
    held_merges: list[HeldMerges] = field(default_factory=list)

    @property
    def probe_count(self) -> int:
        return sum(p.retractions for p in self.probes)

    @property
    def held_count(self) -> int:
        return sum(h.waiting for h in self.held_merges)

    @property
    def is_empty(self) -> bool:
        # Merges that were already waiting last period do not send a digest on their own; new ones do.
        return not (self.clusters.total or self.probes or any(h.new for h in self.held_merges))


def cluster_url(ref: str) -> str:
    """The admin page of a cluster by its opaque ref: numeric ids would tell recipients the exchange's volume."""
    return f"{getattr(settings, 'SITE_URL', '')}/admin/graph/actorcluster/{ref}/change/"


def _in_period(start: datetime | None, end: datetime, field_name: str = "created_at") -> Q:
    q = Q(**{f"{field_name}__lte": end})
    return q & Q(**{f"{field_name}__gt": start}) if start else q


def _item(cluster: ActorCluster) -> ClusterItem:
    return ClusterItem(
        id=cluster.pk,
        ref=cluster.ref,
        url=cluster_url(cluster.ref),
        risk=cluster.risk,
        size=cluster.size,
        platform_count=cluster.platform_count,
        kinds=list(cluster.kinds),
        status=cluster.get_status_display(),
    )


def _growth(cluster_ids: Iterable[int], start: datetime | None, end: datetime) -> dict[int, tuple[int, bool]]:
    """{cluster id: (size at the start of the period, merged?)} for clusters that grew or merged in it."""
    growth: dict[int, tuple[int, bool]] = {}
    for cluster_id, kind, before in (
        ClusterEvent.objects.filter(_in_period(start, end), cluster_id__in=list(cluster_ids))
        .filter(kind__in=[EventKind.GREW, EventKind.MERGED])
        .order_by("created_at", "id")
        .values_list("cluster_id", "kind", "members_before")
    ):
        first_before, merged = growth.get(cluster_id, (before, False))
        growth[cluster_id] = (first_before, merged or kind == EventKind.MERGED)
    return growth


def _new_or_grew(
    shared: ActorClusterQuerySet, start: datetime | None, end: datetime
) -> list[tuple[ActorCluster, ClusterItem, bool]]:
    """(cluster, its item, new?) for each cluster of `shared` that is new or grew in (start, end], ranked.

    The one rule of both reports: a cluster is new when created in the period (every cluster is new in a
    first report), grown when a GREW or MERGED event falls in it; a grown item says its size at the start."""
    # Only clusters changed since the start can have news; the events and creation time place it in the period.
    changed = shared.filter(changed_at__gt=start) if start else shared
    clusters = list(changed.filter(created_at__lte=end).defer("notes", "risk_parts").ranked())
    growth = _growth([c.pk for c in clusters], start, end)
    found = []
    for cluster in clusters:
        is_new = start is None or cluster.created_at > start
        if not is_new and cluster.pk not in growth:
            continue
        item = _item(cluster)
        if not is_new:
            item.size_before, item.merged = growth[cluster.pk]
        found.append((cluster, item, is_new))
    return found


def platform_report(platform: Platform, start: datetime | None, end: datetime) -> PlatformReport:
    """What changed for `platform` in (start, end]. Everything about other platforms is reduced to counts."""
    # The platform's view: its sellers it detached with a false positive are not in those clusters for it.
    shared = ActorCluster.objects.live().cross_platform().seen_by(platform)
    found = _new_or_grew(shared, start, end)
    detached = set(
        Opinion.objects.standing_false_positives()
        .filter(platform=platform, cluster__in=[cluster.pk for cluster, _, _ in found])
        .values_list("cluster_id", "seller_id")
    )

    members: dict[int, list[tuple[int, str, datetime]]] = defaultdict(list)
    for cluster_id, seller_id, platform_id, seller_ref, joined_at in ClusterMember.objects.filter(
        cluster_id__in=[cluster.pk for cluster, _, _ in found]
    ).values_list("cluster_id", "seller_id", "seller__platform_id", "seller__seller_ref", "joined_at"):
        if (cluster_id, seller_id) not in detached:
            members[cluster_id].append((platform_id, seller_ref, joined_at))
    others = {p for rows in members.values() for p, _, _ in rows if p != platform.pk}
    reveal = settings.EXCHANGE_REVEAL_PLATFORM_NAMES
    names = platform_labels(sorted(others), True) if reveal else {}

    new: list[ClusterItem] = []
    grew: list[ClusterItem] = []
    for cluster, item, is_new in found:
        rows = members[cluster.pk]
        own = sorted(ref for p, ref, _ in rows if p == platform.pk)
        item.own_refs, item.own_count = own[:MAX_REFS], len(own)
        if not is_new:  # in a new cluster every member is new; in a grown one, say who joined it
            item.own_new = sum(1 for p, _, joined in rows if p == platform.pk and start and joined > start)
        other_ids = {p for p, _, _ in rows if p != platform.pk}
        item.other_accounts = sum(1 for p, _, _ in rows if p != platform.pk)
        item.other_platforms = len(other_ids)
        item.other_names = sorted(names[p] for p in other_ids if p in names)
        (new if is_new else grew).append(item)

    # Clusters that lost accounts: retracted or expired reports leave their clusters, and an indicator that
    # became a hub (or was marked common) can unlink members. Events name the
    # platforms involved; only clusters that spanned platforms and involved this one are reported.
    lost: dict[int, ClusterItem] = {}
    for event in (
        ClusterEvent.objects.filter(_in_period(start, end))
        .filter(kind__in=[EventKind.SHRANK, EventKind.SPLIT, EventKind.DISSOLVED])
        .select_related("cluster")
        .defer("cluster__notes", "cluster__risk_parts")
        .order_by("created_at", "id")
    ):
        if platform.pk not in event.platforms or len(event.platforms) < 2:
            continue
        if event.cluster_id not in lost:
            lost[event.cluster_id] = _item(event.cluster)
            lost[event.cluster_id].size_before = event.members_before
        lost[event.cluster_id].size = event.members_after
        lost[event.cluster_id].change = event.kind
    own_retractions = sorted(
        Seller.objects.filter(_in_period(start, end, "retracted_at"), platform=platform).values_list(
            "seller_ref", flat=True
        )
    )
    # Other platforms' retracted reports this platform had been told about (graph.webhooks.propagate_retraction).
    retractions = [
        RetractionItem(
            retracted_at=notice.retracted_at,
            cluster_ref=notice.cluster_ref,
            in_your_cluster="cluster" in notice.signals,
            lookup_matched_at=notice.first_lookup_match_at,
            overturned=notice.overturned,
        )
        for notice in RetractionNotice.objects.filter(
            _in_period(start, end, "retracted_at"), platform=platform
        ).order_by("retracted_at", "id")
    ]
    return PlatformReport(
        platform=platform,
        period_start=start,
        period_end=end,
        new=Section.of(new),
        grew=Section.of(grew),
        lost=Section.of(sorted(lost.values(), key=lambda i: (-i.risk, i.id))),
        retractions=Section.of(retractions),
        own_retractions=own_retractions,
        cross_platform_clusters=shared.count(),
        own_sellers_in_them=ClusterMember.objects.attached()
        .filter(seller__platform=platform, cluster__in=ActorCluster.objects.live().cross_platform())
        .count(),
    )


def digest(start: datetime | None, end: datetime) -> Digest:
    """All cross-platform clusters that are new or grew in (start, end], highest risk first (no members)."""
    found = _new_or_grew(ActorCluster.objects.live().cross_platform(), start, end)
    items = [item for _, item, _ in found]
    new_count = sum(1 for _, _, is_new in found if is_new)
    return Digest(
        period_start=start,
        period_end=end,
        clusters=Section.of(items),
        new_count=new_count,
        grew_count=len(items) - new_count,
        live_cross_platform=ActorCluster.objects.live().cross_platform().count(),
        probes=suspected_probes(start, end),
        probe_window_hours=settings.EXCHANGE_PROBE_WINDOW_HOURS,
        held_merges=held_merges(start, end),
    )


def held_merges(start: datetime | None, end: datetime) -> list[HeldMerges]:
    """Per platform, the merges waiting for a decision at `end` and how many of them were held in the period."""
    rows = (
        PendingMerge.objects.live()
        .filter(state=MergeState.PENDING, created_at__lte=end)
        .values("platform__name")
        .annotate(n=Count("id"), new=Count("id", filter=_in_period(start, end)))
        .order_by("-n", "platform__name")
    )
    return [HeldMerges(row["platform__name"], row["n"], row["new"]) for row in rows]


def suspected_probes(start: datetime | None, end: datetime) -> list[SuspectedProbes]:
    """Per platform, retractions flagged as suspected probes in (start, end], most first."""
    rows = (
        AuditEntry.objects.filter(_in_period(start, end), action="probe_suspected")
        .values("platform__name")
        .annotate(n=Count("id"), read=Count("id", filter=Q(details__cluster_read=True)))
        .order_by("-n", "platform__name")
    )
    return [
        SuspectedProbes(row["platform__name"] or "(deleted platform)", row["n"], row["read"]) for row in rows
    ]


# ------------------------------------------------------------------------------------------------ emails


def render_email(name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, plain text and HTML from `reports/<name>.subject.txt`, `.txt` and `.html`."""
    subject = " ".join(render_to_string(f"reports/{name}.subject.txt", context).split())
    return (
        subject,
        render_to_string(f"reports/{name}.txt", context),
        render_to_string(f"reports/{name}.html", context),
    )


def new_message_id() -> str:
    """Generated once, when the outbox row is written: every resend of the row carries the same id."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return make_msgid("report", domain=domain)


def _context(**values: Any) -> dict[str, Any]:
    return {"site_url": getattr(settings, "SITE_URL", ""), **values}


# ------------------------------------------------------------------------------------------------ queueing


@dataclass
class RunSummary(outbox.DrainSummary):
    queued: int = 0

    def __str__(self) -> str:
        return f"queued {self.queued}, {super().__str__()}"


def _recipients(addresses: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.strip().lower(), address.strip())
    return [a for a in seen.values() if a]


def queue_platform_report(platform: Platform, now: datetime) -> int:
    """Take the platform's period (compare-and-set) and write its outbox rows; returns the rows written."""
    start = platform.last_report_at
    with transaction.atomic():
        # First statement: takes the write lock, and only one concurrent run can move the period on.
        if not Platform.objects.filter(pk=platform.pk, last_report_at=start).update(last_report_at=now):
            return 0
        report = platform_report(platform, start, now)
        if report.is_empty:  # nothing to say: no email, the period still ends here
            return 0
        subject, text, html = render_email("platform_report", _context(report=report))
        rows = [
            ReportDelivery(
                kind=ReportKind.PLATFORM,
                platform=platform,
                recipient=recipient,
                period_start=start,
                period_end=now,
                subject=subject,
                body_text=text,
                body_html=html,
                message_id=new_message_id(),
                next_attempt_at=now,
                created_at=now,
            )
            for recipient in _recipients(platform.report_recipients)
        ]
        ReportDelivery.objects.bulk_create(rows)
    platform.last_report_at = now
    logger.info("event=report_queued platform_id=%s recipients=%s", platform.pk, len(rows))
    return len(rows)


def queue_digests(now: datetime) -> int:
    """One digest per exchange analyst with an email address, for the period since their last one."""
    cadence = settings.EXCHANGE_DIGEST_CADENCE
    if cadence == Cadence.OFF:
        return 0
    analysts = list(
        get_user_model()
        .objects.filter(is_active=True, groups__name=EXCHANGE_ANALYST)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    last_end = dict(
        ReportDelivery.objects.filter(kind=ReportKind.DIGEST, user__in=analysts)
        .values("user")
        .annotate(last=Max("period_end"))
        .values_list("user", "last")
    )
    rendered: dict[datetime | None, tuple[str, str, str] | None] = {}
    queued = 0
    for user in analysts:
        start = last_end.get(user.pk)
        if not report_due(cadence, start, now):
            continue
        if start not in rendered:  # analysts on the same schedule share one computation
            content = digest(start, now)
            rendered[start] = None if content.is_empty else render_email("digest", _context(digest=content))
        email = rendered[start]
        if email is None:
            continue  # nothing new: no email; the next digest still starts at the last one sent
        try:
            with transaction.atomic():
                ReportDelivery.objects.create(
                    kind=ReportKind.DIGEST,
                    user=user,
                    recipient=user.email,
                    period_start=start,
                    period_end=now,
                    subject=email[0],
                    body_text=email[1],
                    body_html=email[2],
                    message_id=new_message_id(),
                    next_attempt_at=now,
                    created_at=now,
                )
        except IntegrityError:  # a concurrent run wrote this analyst's digest for the same period
            continue
        queued += 1
    return queued


def queue_due_reports(now: datetime | None = None) -> int:
    now = now or timezone.now()
    queued = 0
    for platform in Platform.objects.active().exclude(report_cadence=Cadence.OFF).order_by("pk"):
        if platform.report_recipients and report_due(platform.report_cadence, platform.last_report_at, now):
            queued += queue_platform_report(platform, now)
    return queued + queue_digests(now)


# ------------------------------------------------------------------------------------------------ sending


def claim_next(worker: str, now: datetime | None = None) -> ReportDelivery | None:
    """Claim one due report email (`graph.outbox.claim_next`)."""
    return outbox.claim_next(ReportDelivery.objects.all(), worker, claim_timeout(), now)


def deliver(row: ReportDelivery) -> None:
    """Send the row's fixed message (same subject, bodies and Message-ID on every attempt)."""
    # A bounded SMTP timeout keeps a hung connection from outliving the claim (which would let a second
    # sender take the row over while the first might still deliver it).
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    message = EmailMultiAlternatives(
        subject=row.subject,
        body=row.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[row.recipient],
        headers={"Message-ID": row.message_id, "Auto-Submitted": "auto-generated"},
        connection=connection,
    )
    message.attach_alternative(row.body_html, "text/html")
    message.send()


def mark_sent(row: ReportDelivery, now: datetime | None = None) -> None:
    outbox.mark_sent(row, now)


def mark_attempt_failed(row: ReportDelivery, error: Exception, now: datetime | None = None) -> bool:
    """Back off, or give up after MAX_ATTEMPTS. Returns True when the row is now failed for good."""
    return outbox.mark_attempt_failed(row, error, RETRIES, now)


def send_due_reports(
    should_stop: Callable[[], bool] = lambda: False, summary: RunSummary | None = None
) -> RunSummary:
    """Send every due row, one claim at a time, until none is left (or `should_stop()`)."""
    summary = summary or RunSummary()
    drained = outbox.drain(
        ReportDelivery.objects.all(),
        deliver,
        policy=RETRIES,
        claim_timeout=claim_timeout(),
        mark_sent=mark_sent,
        should_stop=should_stop,
        logger=logger,
        event="report",
    )
    summary.add(drained)
    return summary


def run_reports(should_stop: Callable[[], bool] = lambda: False) -> RunSummary:
    """One pass: queue what is due, then send what is due (the periodic task and the command)."""
    summary = RunSummary(queued=queue_due_reports())
    return send_due_reports(should_stop, summary)


def write_demo_reports() -> list[str]:
    """`manage.py demo`'s last step: one pass, which with the embedded default writes to EMAIL_FILE_PATH."""
    lines = [f"reports: {run_reports()}"]
    if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend"):
        lines.append(f"emails written to {settings.EMAIL_FILE_PATH}")
    return lines
