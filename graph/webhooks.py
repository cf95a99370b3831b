"""Webhooks: signed events to partner platforms, through the outbox that report emails use (graph/outbox.py).

Writing. Every event is a `WebhookDelivery` row written in the transaction of the change it reports, so it
exists exactly when the change committed, with its body fixed (the same event, with the same `id`, on every
attempt). Only active platforms with a webhook registered get rows. The producers:

- `queue_cluster_changes`: a recomputation's membership changes (joined, left, merged, split), derived by
  `graph.webhook_events` from the facts its cluster events are made of, in the same step
  (`graph.clustering._apply`);
- `queue_status_change`: an exchange analyst confirmed or dismissed a cluster (`graph.actions`);
- `propagate_retraction`: a seller's report was retracted (exchange/retention.py, through exchange/hooks.py);
- `emit`: the one door for any other kind (an opinion added, a report overturned on appeal): the caller gives
  the platforms and a function that builds each one's own view.

What a platform receives is its own view only: its sellers by reference, clusters by their opaque reference
with their partner-safe summary (`ActorCluster.summary()`: sizes, counts, kinds, risk), other platforms never
by seller reference, token or name. The rows are the record of what each platform was told, and each batch
leaves a `webhook_queued` audit entry per platform with counts.

Sending. `send_due_webhooks()` drains the outbox (claim, deliver, mark; retries with backoff, Retry-After
respected, failed after `RETRIES.max_attempts`): a POST of the body with `Exchange-Signature` (see
exchange/client/webhooks.py), to the addresses the URL's host resolves to, checked again at every attempt
(accounts/webhooks.py), over TLS verified against the system's CAs or `EXCHANGE_WEBHOOK_CA_FILE`, with
`EXCHANGE_WEBHOOK_TIMEOUT`, no redirect followed, and nothing of the response kept but its status. At least
once: receivers deduplicate by the event's `id`.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import json
import logging
import socket
import ssl
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import SplitResult

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts import webhooks as endpoints
from accounts.models import AuditEntry, Platform
from exchange.client import webhooks as contract
from exchange.models import LookupMatch, Seller
from graph import outbox
from graph.identity import ClusterChange
from graph.models import (
    ActorCluster,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    Opinion,
    RetractionNotice,
    WebhookDelivery,
)
from graph.webhook_events import Notice, membership_notices

logger = logging.getLogger("exchange.webhooks")

# 1, 2, 4, ... 256 minutes, then every 6 hours: the 12th and last attempt about 20 hours after the first.
RETRIES = outbox.RetryPolicy(first=timedelta(minutes=1), longest=timedelta(hours=6), max_attempts=12)
USER_AGENT = "bad-actor-exchange-webhooks/1"
CHUNK = 5000  # ids per IN (...) list


def claim_timeout() -> timedelta:
    return timedelta(seconds=settings.EXCHANGE_WEBHOOK_CLAIM_TIMEOUT)


# ------------------------------------------------------------------------------------------------ writing


def webhook_platforms(among: Iterable[int] | None = None) -> set[int]:
    """Active platforms with a webhook registered (of `among`, when given)."""
    query = Platform.objects.active().exclude(webhook_url="").exclude(webhook_secret_nonce="")
    if among is not None:
        query = query.filter(pk__in=sorted(set(among)))
    return set(query.values_list("pk", flat=True))


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cluster_view(cluster: ActorCluster) -> dict[str, Any]:
    """A cluster as any of its platforms may see it: the partner-safe summary, its status, whether dissolved."""
    return {**cluster.summary(), "status": cluster.status, "dissolved": cluster.dissolved_at is not None}


def _row(
    platform_id: int, event_type: str, data: dict[str, Any], now: datetime, cluster_id: int | None
) -> Any:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(
        {"id": event_id, "type": event_type, "created_at": timestamp(now), "data": data},
        separators=(",", ":"),
        default=lambda value: timestamp(value) if isinstance(value, datetime) else str(value),
    )
    return WebhookDelivery(
        platform_id=platform_id,
        event_id=event_id,
        event_type=event_type,
        cluster_id=cluster_id,
        body=body,
        next_attempt_at=now,
        created_at=now,
    )


def _store(rows: list[WebhookDelivery]) -> int:
    """Write the rows and, per platform, one `webhook_queued` audit entry with counts."""
    if not rows:
        return 0
    WebhookDelivery.objects.bulk_create(rows, batch_size=1000)
    by_platform: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_platform[row.platform_id][row.event_type] += 1
    for platform_id, types in sorted(by_platform.items()):
        AuditEntry.objects.record(
            "webhook_queued",
            "system",
            platform_id,
            events=sum(types.values()),
            types=dict(sorted(types.items())),
        )
    logger.info("event=webhooks_queued events=%s platforms=%s", len(rows), len(by_platform))
    return len(rows)


def emit(
    platform_ids: Iterable[int],
    event_type: str,
    build: Callable[[int], dict[str, Any] | None],
    *,
    cluster: ActorCluster | None = None,
    now: datetime | None = None,
) -> int:
    """Queue one `event_type` event for each of `platform_ids` that has a webhook; returns how many.

    `build(platform_id)` returns the event's `data` for that platform: only what it may see (its own
    sellers by reference, other platforms as counts; `cluster_view()` for a cluster), or None to send it
    nothing. Call it inside the transaction of the change it reports, so that the events commit with the
    change or not at all. `event_type` is one of `exchange.client.webhooks.EVENT_TYPES`.

    For example, an opinion added to a cluster (the opinion's platform excluded)::

        webhooks.emit(
            cluster_platforms(cluster) - {opinion.platform_id},
            contract.CLUSTER_OPINION_ADDED,
            lambda platform_id: {"cluster": cluster_view(cluster), "opinion": opinion.kind, "counts": counts},
            cluster=cluster,
        )
    """
    if event_type not in contract.EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    now = now or timezone.now()
    rows = []
    for platform_id in sorted(webhook_platforms(platform_ids)):
        data = build(platform_id)
        if data is not None:
            rows.append(_row(platform_id, event_type, data, now, cluster.pk if cluster else None))
    return _store(rows)


def cluster_platforms(cluster: ActorCluster | int) -> set[int]:
    """The platforms with sellers in the cluster now (detached ones included: see `own_sellers`)."""
    return set(ClusterMember.objects.filter(cluster=cluster).values_list("seller__platform_id", flat=True))


def own_sellers(cluster: ActorCluster | int, platform_ids: Iterable[int]) -> dict[int, list[str]]:
    """{platform: its sellers' references in the cluster, sorted} for those of `platform_ids` that see the
    cluster: a seller its platform detached with a false-positive opinion is not in it for that platform
    (`ClusterMemberQuerySet.attached`), and a platform that detached all its sellers there has no entry."""
    own: dict[int, list[str]] = defaultdict(list)
    for platform_id, ref in (
        ClusterMember.objects.attached()
        .filter(cluster=cluster, seller__platform_id__in=sorted(set(platform_ids)))
        .order_by("seller__seller_ref")
        .values_list("seller__platform_id", "seller__seller_ref")
    ):
        own[platform_id].append(ref)
    return own


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def queue_cluster_changes(
    previous: Mapping[int, frozenset[int]],
    assigned: Mapping[frozenset[int], int],
    real: Mapping[int, int],
    changes: Sequence[ClusterChange],
    platform_of: Mapping[int, int],
    now: datetime,
) -> int:
    """The membership events of one recomputation (`graph.clustering._apply`, in its transaction): the
    clusters `previous` were replaced by `assigned` ({members: id}, placeholder ids mapped by `real`)."""
    wanted = webhook_platforms()
    if not wanted:
        return 0
    current = {real.get(cid, cid): members for members, cid in assigned.items()}
    mapped = [
        ClusterChange(
            c.kind,
            real.get(c.cluster_id, c.cluster_id),
            c.members_before,
            c.members_after,
            tuple(real.get(r, r) for r in c.related),
        )
        for c in changes
    ]
    notices = _as_seen(membership_notices(previous, current, mapped, platform_of, wanted))
    if not notices:
        return 0
    cluster_ids = {n.cluster for n in notices} | {r for n in notices for r in n.related}
    cluster_ids |= {p for n in notices for p, _ in n.pieces if p is not None}
    clusters = ActorCluster.objects.defer("notes", "risk_parts").in_bulk(sorted(cluster_ids))
    refs: dict[int, str] = {}
    for chunk in _chunks(s for n in notices for s in n.sellers):
        refs.update(Seller.objects.filter(id__in=chunk).values_list("id", "seller_ref"))
    rows = [
        _row(n.platform, n.type, _membership_data(n, clusters, refs), now, n.cluster)
        for n in notices
        if n.cluster in clusters
    ]
    return _store(rows)


def _as_seen(notices: list[Notice]) -> list[Notice]:
    """The notices as each platform sees its clusters: without its sellers it detached from a cluster with a
    standing false-positive opinion (as its API, reports and analysts see them), and none left empty."""
    if not notices:
        return notices
    detached = set(
        Opinion.objects.standing_false_positives()
        .filter(platform_id__in={n.platform for n in notices})
        .values_list("cluster_id", "seller_id")
    )
    if not detached:
        return notices
    seen = []
    for notice in notices:
        sellers = tuple(s for s in notice.sellers if (notice.cluster, s) not in detached)
        pieces = tuple(
            (piece, tuple(s for s in members if (notice.cluster, s) not in detached))
            for piece, members in notice.pieces
        )
        if sellers:
            seen.append(replace(notice, sellers=sellers, pieces=tuple(p for p in pieces if p[1])))
    return seen


def _membership_data(
    notice: Notice, clusters: Mapping[int, ActorCluster], refs: Mapping[int, str]
) -> dict[str, Any]:
    def sellers(ids: Iterable[int]) -> list[str]:
        return sorted(refs[s] for s in ids if s in refs)

    data: dict[str, Any] = {
        "cluster": cluster_view(clusters[notice.cluster]),
        "your_sellers": sellers(notice.sellers),
    }
    if notice.type == contract.CLUSTER_MERGED:
        data["your_former_clusters"] = [clusters[c].ref for c in notice.related if c in clusters]
        data["clusters_merged"] = notice.count
    elif notice.type == contract.CLUSTER_SPLIT:
        data["pieces"] = [
            {
                "cluster": cluster_view(clusters[piece]) if piece is not None and piece in clusters else None,
                "your_sellers": sellers(members),
            }
            for piece, members in notice.pieces
        ]
        data["pieces_in_all"] = notice.count
    return data


STATUS_EVENTS: dict[str, str] = {
    ClusterStatus.CONFIRMED: contract.CLUSTER_CONFIRMED,
    ClusterStatus.DISMISSED: contract.CLUSTER_DISMISSED,
}


def queue_status_change(cluster: ActorCluster, before: str, now: datetime | None = None) -> int:
    """An exchange analyst confirmed or dismissed `cluster` (its status was `before`): every platform with
    sellers in it hears of it, in the transaction of the change (`graph.actions.do_update_cluster`)."""
    event_type = STATUS_EVENTS.get(cluster.status)
    if event_type is None or cluster.status == before:
        return 0
    own = own_sellers(cluster, webhook_platforms(cluster_platforms(cluster)))
    return emit(
        own,
        event_type,
        lambda platform_id: {
            "cluster": cluster_view(cluster),
            "previous_status": before,
            "your_sellers": own[platform_id],
        },
        cluster=cluster,
        now=now,
    )


# ------------------------------------------------------------------------------------------------ retractions


def signal_recipients(seller: Seller) -> tuple[ActorCluster | None, dict[int, dict[str, Any]]]:
    """Who was told about `seller` (other than its own platform), and how: the seller's cluster and
    {platform: {"signals": [...], "first_lookup_match_at": ...}}.

    - ``cluster``: the platforms with sellers in the seller's cluster now, or at any event of that cluster
      since the seller joined it (they were in it together: its cluster reports, the API and webhooks told
      them about it);
    - ``lookup``: the platforms whose lookup matched the seller (`LookupMatch`).

    Read before reclustering takes the retracted seller out of its cluster."""
    told: dict[int, dict[str, Any]] = defaultdict(lambda: {"signals": [], "first_lookup_match_at": None})
    membership = ClusterMember.objects.filter(seller=seller).select_related("cluster").first()
    cluster = membership.cluster if membership else None
    if membership is not None:
        platforms = cluster_platforms(membership.cluster_id)
        for involved in ClusterEvent.objects.filter(
            cluster_id=membership.cluster_id, created_at__gte=membership.joined_at
        ).values_list("platforms", flat=True):
            platforms.update(involved or [])
        for platform_id in sorted(platforms - {seller.platform_id}):
            told[platform_id]["signals"].append("cluster")
    for platform_id, first in LookupMatch.objects.filter(seller=seller).values_list(
        "platform_id", "first_matched_at"
    ):
        if platform_id != seller.platform_id:
            told[platform_id]["signals"].append("lookup")
            told[platform_id]["first_lookup_match_at"] = first
    return cluster, dict(told)


def propagate_retraction(seller: Seller, *, overturned: bool = False, now: datetime | None = None) -> int:
    """Tell every platform that was told about `seller` (`signal_recipients`) that its report was retracted
    (`overturned`: because the seller's appeal was upheld): a `RetractionNotice` for its next cluster report
    and a `report.retracted` (or `report.overturned`) webhook event. Returns the platforms told.

    Call it in the retraction's transaction, before the recomputation that takes the seller out of its
    cluster (exchange/retention.py does, through `exchange.hooks.announce_retraction`). Nothing about the
    seller is passed on: not its reference, its platform or the retraction's reason; only the opaque
    reference of the cluster it was in, and the recipient's own sellers there."""
    now = now or timezone.now()
    cluster, told = signal_recipients(seller)
    if not told:
        return 0
    retracted_at = seller.retracted_at or now
    ref = cluster.ref if cluster else ""
    RetractionNotice.objects.bulk_create(
        [
            RetractionNotice(
                platform_id=platform_id,
                cluster_ref=ref,
                signals=how["signals"],
                first_lookup_match_at=how["first_lookup_match_at"],
                overturned=overturned,
                retracted_at=retracted_at,
            )
            for platform_id, how in sorted(told.items())
        ]
    )
    own = own_sellers(cluster, told) if cluster else {}
    emit(
        told,
        contract.REPORT_OVERTURNED if overturned else contract.REPORT_RETRACTED,
        lambda platform_id: {
            "retracted_at": retracted_at,
            "cluster": ref or None,
            "signals": told[platform_id]["signals"],
            "first_lookup_match_at": told[platform_id]["first_lookup_match_at"],
            "your_sellers_in_cluster": own.get(platform_id, []),
        },
        cluster=cluster,
        now=now,
    )
    logger.info("event=retraction_propagated seller_id=%s platforms=%s", seller.pk, len(told))
    return len(told)


def propagate_retractions(seller_ids: Sequence[int], overturned: bool = False) -> int:
    """`propagate_retraction` for each of the (just retracted) sellers."""
    return sum(
        propagate_retraction(seller, overturned=overturned)
        for seller in Seller.objects.filter(id__in=list(seller_ids)).order_by("pk")
    )


# ------------------------------------------------------------------------------------------------ sending


@functools.lru_cache(maxsize=4)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    """Certificate and host name checked, TLS 1.2 or later; against `ca_file` alone when one is set."""
    return ssl.create_default_context(cafile=ca_file or None)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked (not to whatever the host name resolves to by now)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address, self.tls = address, context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """A Retry-After header (seconds, or an HTTP date) as a moment; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _connect(parts: SplitResult, address: str) -> http.client.HTTPConnection:
    """A connection to `address` (TLS handshake done, the certificate checked for the URL's host)."""
    host, port = parts.hostname or "", endpoints.default_port(parts)
    timeout = settings.EXCHANGE_WEBHOOK_TIMEOUT
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        context = _tls_context(settings.EXCHANGE_WEBHOOK_CA_FILE)
        connection = _PinnedHTTPSConnection(host, port, address, timeout, context)
    else:
        connection = _PinnedHTTPConnection(host, port, address, timeout)
    try:
        connection.connect()
    except BaseException:
        connection.close()
        raise
    return connection


def _failure(error: Exception) -> outbox.RetryLater:
    """A failed attempt, said without the URL (its path may carry the partner's own token)."""
    if isinstance(error, TimeoutError):
        message = f"timed out after {settings.EXCHANGE_WEBHOOK_TIMEOUT} s"
    elif isinstance(error, ssl.SSLCertVerificationError):
        message = f"TLS: certificate verify failed ({error.verify_message})"
    elif isinstance(error, ssl.SSLError):
        message = f"TLS: {error.reason or type(error).__name__}"
    elif isinstance(error, OSError) and error.strerror:
        message = f"connection failed: {error.strerror}"
    else:
        message = f"{type(error).__name__}: {error}"
    return outbox.RetryLater(message, response_status=None)


def _post(
    parts: SplitResult, addresses: list[endpoints.IPAddress], body: bytes, headers: dict[str, str]
) -> http.client.HTTPResponse:
    """POST to the first of the checked `addresses` that takes a connection; the response is closed
    unread (only its status and headers are looked at)."""
    connection = None
    for number, address in enumerate(addresses, 1):
        try:
            connection = _connect(parts, str(address))
            break
        except ssl.SSLError as error:
            raise _failure(error) from None
        except OSError as error:  # refused, unreachable, timed out: nothing was sent; try the next one
            if number == len(addresses):
                raise _failure(error) from None
    assert connection is not None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.close()
        return response
    except (OSError, http.client.HTTPException) as error:
        raise _failure(error) from None
    finally:
        connection.close()


def deliver(row: WebhookDelivery) -> dict[str, object]:
    """POST the row's event to its platform's webhook, signed now. Raises GiveUp (no webhook any more),
    RetryLater (refused address, connection or TLS failure, timeout, a non-2xx answer)."""
    platform = row.platform
    if not platform.active:
        raise outbox.GiveUp("the platform is inactive")
    if not platform.has_webhook:
        raise outbox.GiveUp("the platform has no webhook any more")
    try:
        parts = endpoints.split(platform.webhook_url)
        addresses = endpoints.resolve(parts.hostname or "", endpoints.default_port(parts))
    except endpoints.WebhookUrlError as refused:
        raise outbox.RetryLater(f"not sent: {refused}", response_status=None) from None
    body = row.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        contract.SIGNATURE_HEADER: contract.signature_header(
            [platform.webhook_secret()], int(time.time()), body
        ),
        contract.EVENT_ID_HEADER: row.event_id,
        contract.EVENT_TYPE_HEADER: row.event_type,
    }
    response = _post(parts, addresses, body, headers)
    status = response.status
    if 200 <= status < 300:
        return {"response_status": status}
    reason = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    not_before = retry_after(response.getheader("Retry-After"), timezone.now())
    raise outbox.RetryLater(reason, not_before, response_status=status)


def deliveries() -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.select_related("platform")


def send_due_webhooks(should_stop: Callable[[], bool] = lambda: False) -> outbox.DrainSummary:
    """Send every due webhook event, one claim at a time, until none is left (or `should_stop()`)."""
    return outbox.drain(
        deliveries(),
        deliver,
        policy=RETRIES,
        claim_timeout=claim_timeout(),
        should_stop=should_stop,
        logger=logger,
        event="webhook",
    )
