"""Sellers' appeals as their platforms record them, and the check of appeal documents against falsified ones.

A partner records that one of its sellers appealed (`do_record_appeal`, from `POST .../appeals/`), with the
outcome when known, and may attach the SHA-256 of each of the appeal's documents (the file's bytes: an exact
copy). Near-copies, edited letters with another name or date, are screened by a lookup of kind `document` (the
keyed MinHash, matched by similarity; its answer's `reported_falsified`). `upheld` lifts the ban: the seller's
report is retracted through the one retraction door (`exchange.retention.do_retract`).

"Reported as falsified" means, today: a platform flagged the document `falsified` on an appeal it *rejected*,
of a seller it still reports (neither retracted nor expired). A pending appeal's flag is a suspicion, and a
withdrawn report withdraws what it said. When a document attached to an appeal matches one that another
platform reported as falsified, the answer says so (per document: whether, and how many other platforms) and the
appeal is marked for the partner's attention; so is an appeal whose document another platform reports as
falsified later. Nothing else is revealed: never which platform, which seller or which appeal.

A document check tells a partner what other platforms hold, as a lookup does: each document sent costs one unit
of the key's daily lookup quota (429 beyond it, with nothing stored), and the audit entry counts the documents and
the matches. The SHA-256 is keyed like every identifier (HMAC with the pepper, `APPEAL_DOCUMENT_DOMAIN`) and
never stored or logged as sent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange.hashing import keyed_tokens
from exchange.ingest import current_key_version
from exchange.lookups import charge_quota
from exchange.models import (
    APPEAL_DOCUMENT_DOMAIN,
    Appeal,
    AppealDocument,
    AppealOutcome,
    Seller,
    linkable_q,
)
from exchange.retention import do_retract

logger = logging.getLogger("exchange.appeals")

UPHELD_REASON = "appeal upheld"
APPEAL_WRITTEN_FIELDS = ["outcome", "note", "needs_attention", "attention_since", "updated_at", "decided_at"]


class AppealConflict(Exception):
    """The recorded appeal cannot take this outcome (said in the message)."""


@dataclass(frozen=True)
class AppealRequest:
    """What a partner sent (validated): `documents` in request order as (SHA-256, falsified or None for
    "unchanged"); `note` None when not sent (the stored note stays)."""

    outcome: str
    documents: list[tuple[str, bool | None]] = field(default_factory=list)
    note: str | None = None

    @classmethod
    def from_validated(cls, data: dict[str, Any]) -> AppealRequest:
        documents = [(item["sha256"], item.get("falsified")) for item in data.get("documents", [])]
        return cls(data["outcome"], documents, data.get("note"))


@dataclass
class AppealResult:
    appeal: Appeal
    created: bool
    # Per document of the request, in its order: {index, falsified_elsewhere, other_platforms}.
    checks: list[dict[str, Any]]


def document_tokens(hashes: list[str], version: int) -> list[str]:
    """The keyed fingerprints of documents' SHA-256s at pepper `version`."""
    pairs = [(APPEAL_DOCUMENT_DOMAIN, h) for h in hashes]
    return keyed_tokens(pairs, settings.EXCHANGE_PEPPERS, version)


def reported_falsified(now: datetime) -> Any:
    """The documents reported as falsified (the one rule, see the module's docstring)."""
    return AppealDocument.objects.filter(
        linkable_q(now, "appeal__seller__"), falsified=True, appeal__outcome=AppealOutcome.REJECTED
    )


def do_record_appeal(seller: Seller, api_key: ApiKey, request: AppealRequest) -> AppealResult:
    """Record the seller's appeal or update it, store and check its documents, retract the report when the
    appeal is upheld; audited. Raises QuotaExceeded (the documents' check) or AppealConflict, storing nothing."""
    now = timezone.now()
    # A document sent twice counts once; a flag given on any copy wins over an omitted one.
    flags: dict[str, bool | None] = {}
    for sha256, falsified in request.documents:
        flags[sha256] = falsified if flags.get(sha256) is None else flags[sha256] or bool(falsified)
    hashes = list(flags)
    with transaction.atomic(durable=True):
        locked = Seller.objects.select_for_update().get(
            pk=seller.pk
        )  # one appeal per seller, written in turn
        appeal = Appeal.objects.filter(seller=locked).first()
        previous = appeal.outcome if appeal is not None else ""
        if (
            previous == AppealOutcome.UPHELD
            and request.outcome != previous
            and locked.retracted_at is not None
        ):
            raise AppealConflict(
                "This appeal was upheld and the seller's report retracted; an upheld appeal stays upheld "
                "(report the seller again to reinstate the report)."
            )
        if hashes:
            charge_quota(api_key, len(hashes), now)  # before anything is read; rolled back with a refusal
        version = current_key_version()  # FOR SHARE on PostgreSQL: a pepper rotation waits for this
        tokens = dict(zip(hashes, document_tokens(hashes, version), strict=True))
        holders = _falsified_elsewhere(list(tokens.values()), locked.platform_id, now)
        matched = [h for h in hashes if holders.get(tokens[h])]
        created = appeal is None
        if appeal is None:
            appeal = Appeal(seller=locked, created_at=now)
        if request.outcome != previous and request.outcome != AppealOutcome.PENDING:
            appeal.decided_at = now
        appeal.outcome = request.outcome
        if request.note is not None:
            appeal.note = request.note
        if matched and not appeal.needs_attention:
            appeal.needs_attention, appeal.attention_since = True, now
        appeal.updated_at = now
        if created:
            appeal.save()
        else:
            appeal.save(update_fields=APPEAL_WRITTEN_FIELDS)
        added = _store_documents(appeal, {tokens[h]: flags[h] for h in hashes}, version, now)
        alerted = _alert_others(appeal, locked.platform_id, now)
        AuditEntry.objects.record(
            "appeal_recorded" if created else "appeal_updated",
            api_key.prefix,
            locked.platform_id,
            "appeal",
            str(appeal.pk),
            **{"from": previous, "to": appeal.outcome},
            documents=len(hashes),
            new_documents=added,
            flagged_falsified=sum(1 for h in hashes if flags[h]),
            matches=len(matched),
            other_appeals_alerted=alerted,
        )
        if appeal.outcome == AppealOutcome.UPHELD:
            do_retract(locked, UPHELD_REASON, api_key.prefix, overturned=True)
    logger.info(
        "event=appeal_recorded platform_id=%s appeal=%s outcome=%s documents=%s matches=%s",
        locked.platform_id,
        appeal.pk,
        appeal.outcome,
        len(hashes),
        len(matched),
    )
    checks = []
    for position, (sha256, _) in enumerate(request.documents):
        platforms = holders.get(tokens[sha256], set())
        checks.append(
            {"index": position, "falsified_elsewhere": bool(platforms), "other_platforms": len(platforms)}
        )
    appeal.seller = locked
    return AppealResult(appeal, created, checks)


def _falsified_elsewhere(tokens: list[str], platform_id: int, now: datetime) -> dict[str, set[int]]:
    """{token: the other platforms that reported it falsified} for the given tokens."""
    if not tokens:
        return {}
    rows = (
        reported_falsified(now)
        .filter(token__in=tokens)
        .exclude(appeal__seller__platform_id=platform_id)
        .values_list("token", "appeal__seller__platform_id")
        .distinct()
    )
    holders: defaultdict[str, set[int]] = defaultdict(set)
    for token, holder in rows:
        holders[token].add(holder)
    return holders


def _store_documents(appeal: Appeal, flags: dict[str, bool | None], version: int, now: datetime) -> int:
    """Add the documents the appeal does not hold yet and set the flags given; returns how many were added."""
    if not flags:
        return 0
    existing = {d.token: d for d in AppealDocument.objects.filter(appeal=appeal, token__in=list(flags))}
    new = [
        AppealDocument(appeal=appeal, token=token, key_version=version, falsified=bool(flag), created_at=now)
        for token, flag in flags.items()
        if token not in existing
    ]
    changed = []
    for token, document in existing.items():
        flag = flags[token]
        if flag is not None and document.falsified != flag:
            document.falsified = flag
            changed.append(document)
    AppealDocument.objects.bulk_create(new)
    AppealDocument.objects.bulk_update(changed, ["falsified"])
    return len(new)


def _mark_for_attention(appeals: Any, now: datetime) -> int:
    return int(appeals.filter(needs_attention=False).update(needs_attention=True, attention_since=now))


def _alert_others(appeal: Appeal, platform_id: int, now: datetime) -> int:
    """When this appeal now reports documents as falsified, mark other platforms' appeals holding any of them
    for their partners' attention (an audit entry per platform, with the count). Returns how many were marked."""
    flagged = reported_falsified(now).filter(appeal=appeal).values("token")
    others = Appeal.objects.filter(documents__token__in=flagged, needs_attention=False).exclude(
        seller__platform_id=platform_id
    )
    per_platform = dict(
        others.values_list("seller__platform_id").annotate(n=Count("id", distinct=True)).order_by()
    )
    if not per_platform:
        return 0
    marked = _mark_for_attention(Appeal.objects.filter(pk__in=list(others.values_list("pk", flat=True))), now)
    for other, count in sorted(per_platform.items()):
        AuditEntry.objects.record("appeal_attention", "system", other, appeals=count)
    return marked
