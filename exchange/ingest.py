"""Accepting a partner's submission: validate the whole batch, then store it in one transaction.

Validation is hand-written rather than a per-item DRF serializer: a batch holds up to 1,000 sellers and
5,000+ indicators, and per-field serializer overhead dominated ingest time. The OpenAPI schema still
documents the payload (see `exchange.serializers`). Every error names its item and field; nothing of a
batch with any error is stored.

Writes on PostgreSQL use set-based `INSERT ... SELECT FROM unnest(...) ON CONFLICT` statements (one per
table per batch, rows sorted so concurrent batches take locks in the same order); SQLite, the embedded
default, uses the ORM.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiKey, Platform
from exchange import hooks, metrics
from exchange.contract import SELLER_REF_RE, SELLER_REF_RULE
from exchange.hashing import keyed_tokens
from exchange.matching import MATCHERS, Item
from exchange.models import Indicator, KeyState, Seller, Sighting, Submission
from exchange.normalization import KINDS, LINK_KINDS, REASONS, STATUSES, is_transport_hash
from exchange.similarity import store_items
from exchange.timestamps import PartnerTimestampError, parse_partner_timestamp

logger = logging.getLogger("exchange.ingest")

SELLER_FIELDS = {"seller_ref", "status", "reasons", "reported_at", "indicators"}
MAX_ERRORS = 50


class BatchInvalid(Exception):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid batch")
        self.errors = errors


class IdempotencyConflict(Exception):
    pass


@dataclass
class SellerReport:
    seller_ref: str
    status: str
    reasons: list[str]
    reported_at: datetime
    indicators: list[tuple[str, str]] = field(default_factory=list)  # (kind, transport hash)
    items: list[Item] = field(default_factory=list)  # similarity kinds (`image`): exchange.similarity


def hash_problem(value: Any) -> str | None:
    """Why `value` is not a transport hash, without echoing it (it may be a raw identifier)."""
    if is_transport_hash(value):
        return None
    if not isinstance(value, str):
        return "must be a string of 64 lowercase hex characters (a SHA-256 transport hash)"
    if "@" in value:
        return "looks like a raw email address; send the SHA-256 transport hash of the normalised value"
    if any(ch.isspace() for ch in value):
        return "contains whitespace; a transport hash is 64 lowercase hex characters"
    if len(value) != 64:
        return f"must be 64 hex characters (a SHA-256 transport hash), got {len(value)} characters"
    if is_transport_hash(value.lower()):
        return "must be lowercase hex"
    return "must be hexadecimal (0-9, a-f): not a transport hash"


def seller_indicator_problems(
    item: Any, path: str, errors: dict[str, list[str]]
) -> tuple[str, str] | Item | None:
    """A seller's (or a lookup's) indicator: (kind, transport hash), or an item of a similarity kind (a photo:
    exchange.matching)."""
    kind = item.get("kind") if isinstance(item, dict) else None
    if isinstance(kind, str) and kind in MATCHERS:
        return MATCHERS[kind].parse(item, path, errors)
    return indicator_problems(item, path, errors)


def indicator_problems(item: Any, path: str, errors: dict[str, list[str]]) -> tuple[str, str] | None:
    """(kind, transport hash) of an exact indicator, or None with `errors` naming each bad field."""
    if not isinstance(item, dict):
        errors[path] = ["must be an object with 'kind' and 'hash'"]
        return None
    unknown = sorted(set(item) - {"kind", "hash"})
    if unknown:
        errors[f"{path}.{unknown[0]}"] = ["unknown field; an indicator has only 'kind' and 'hash'"]
    kind, value = item.get("kind"), item.get("hash")
    ok = True
    if kind not in KINDS:
        errors[f"{path}.kind"] = [
            "is required" if kind is None else f"unknown kind; expected one of: {', '.join(LINK_KINDS)}"
        ]
        ok = False
    problem = "is required" if value is None else hash_problem(value)
    if problem:
        errors[f"{path}.hash"] = [problem]
        ok = False
    if not ok or unknown:
        return None
    return (str(kind), str(value))


def parse_submission(payload: Any, now: datetime) -> list[SellerReport]:
    """Validate a submission body; raise BatchInvalid naming every bad item and field."""
    errors: dict[str, list[str]] = {}
    if not isinstance(payload, dict):
        raise BatchInvalid({"body": ["must be a JSON object with a 'sellers' list"]})
    unknown = sorted(set(payload) - {"sellers"})
    if unknown:
        raise BatchInvalid({unknown[0]: ["unknown field; the body has only 'sellers'"]})
    sellers = payload.get("sellers")
    if not isinstance(sellers, list):
        raise BatchInvalid({"sellers": ["is required and must be a list"]})
    if not sellers:
        raise BatchInvalid({"sellers": ["must not be empty"]})
    limit = settings.EXCHANGE_MAX_BATCH_SELLERS
    if len(sellers) > limit:
        raise BatchInvalid({"sellers": [f"at most {limit} sellers per batch, got {len(sellers)}"]})
    max_indicators = settings.EXCHANGE_MAX_SELLER_INDICATORS
    reports: list[SellerReport] = []
    seen_refs: dict[str, int] = {}
    for i, item in enumerate(sellers):
        if len(errors) >= MAX_ERRORS:
            break
        p = f"sellers[{i}]"
        if not isinstance(item, dict):
            errors[p] = ["must be an object"]
            continue
        for name in sorted(set(item) - SELLER_FIELDS):
            errors[f"{p}.{name}"] = ["unknown or server-controlled field; not accepted"]
        ref = item.get("seller_ref")
        if not isinstance(ref, str) or not SELLER_REF_RE.fullmatch(ref):
            errors[f"{p}.seller_ref"] = [f"is required: {SELLER_REF_RULE}"]
        elif ref in seen_refs:
            errors[f"{p}.seller_ref"] = [f"duplicate of sellers[{seen_refs[ref]}] in this batch"]
        else:
            seen_refs[ref] = i
        status = item.get("status")
        if status not in STATUSES:
            errors[f"{p}.status"] = [f"must be one of: {', '.join(STATUSES)}"]
        reasons = item.get("reasons")
        if not isinstance(reasons, list) or not reasons:
            errors[f"{p}.reasons"] = [f"must be a non-empty list of: {', '.join(REASONS)}"]
        else:
            bad = [r for r in reasons if r not in REASONS]
            if bad:
                errors[f"{p}.reasons"] = [f"unknown reason {bad[0]!r}; expected: {', '.join(REASONS)}"]
        reported_at = _parse_time(item.get("reported_at"), f"{p}.reported_at", now, errors)
        indicators = item.get("indicators")
        pairs: list[tuple[str, str]] = []
        items: list[Item] = []
        if not isinstance(indicators, list) or not indicators:
            errors[f"{p}.indicators"] = ["must be a non-empty list of {kind, hash}"]
        elif len(indicators) > max_indicators:
            errors[f"{p}.indicators"] = [f"at most {max_indicators} indicators per seller"]
        else:
            seen: dict[tuple[str, str], int] = {}
            for j, ind in enumerate(indicators):
                parsed = seller_indicator_problems(ind, f"{p}.indicators[{j}]", errors)
                if parsed is None:
                    continue
                key = (parsed.kind, parsed.value) if isinstance(parsed, Item) else parsed
                if key in seen:
                    errors[f"{p}.indicators[{j}]"] = [f"duplicate of indicators[{seen[key]}] for this seller"]
                    continue
                seen[key] = j
                if isinstance(parsed, Item):
                    items.append(parsed)
                    if parsed.exact is not None and parsed.exact not in pairs:  # a document's file SHA-256
                        pairs.append(parsed.exact)
                else:
                    pairs.append(parsed)
        if not errors and reported_at is not None:
            reports.append(
                SellerReport(ref, status, sorted(set(reasons)), reported_at, pairs, items)  # type: ignore[arg-type]
            )
    if errors:
        raise BatchInvalid(errors)
    return reports


def _parse_time(value: Any, path: str, now: datetime, errors: dict[str, list[str]]) -> datetime | None:
    try:
        return parse_partner_timestamp(value, now)
    except PartnerTimestampError as exc:
        errors[path] = [str(exc)]
        return None


@dataclass
class SubmitResult:
    submission: Submission
    replayed: bool


def do_submit(
    platform: Platform, api_key: ApiKey | None, idempotency_key: str, body: bytes, payload: Any
) -> SubmitResult:
    """Store a validated batch exactly once per (platform, idempotency key)."""
    now = timezone.now()
    reports = parse_submission(payload, now)
    # The newest pepper keys new digests; older rows keep theirs (each row names its version).
    digest_version = max(settings.EXCHANGE_PEPPERS)
    digest = Submission.digest_body(body, digest_version)
    with transaction.atomic():
        try:
            with transaction.atomic():
                # Claim the idempotency key first: a concurrent identical request blocks on the unique
                # index until this transaction ends, then replays our response instead of writing again.
                submission = Submission.objects.create(
                    platform=platform,
                    api_key=api_key,
                    idempotency_key=idempotency_key,
                    body_digest=digest,
                    digest_version=digest_version,
                )
        except IntegrityError:
            existing = Submission.objects.get(platform=platform, idempotency_key=idempotency_key)
            if not existing.matches_body(body):
                raise IdempotencyConflict from None
            return SubmitResult(existing, replayed=True)
        version = current_key_version()
        counts, seller_ids = _store(platform, reports, version, now)
        similar = _similar_items(platform, reports)
        if similar:
            stored = store_items(similar, version, now)
            counts["indicators"] += stored.groups
            counts["sightings_created"] += stored.sightings_created
            seller_ids = sorted(set(seller_ids) | stored.touched_sellers)
        submission.sellers = counts["sellers"]
        submission.indicators = counts["indicators"]
        submission.sightings_created = counts["sightings_created"]
        submission.response = {
            "submission": submission.ref,
            "sellers": counts["sellers"],
            "sellers_created": counts["sellers_created"],
            "indicators": counts["indicators"],
            "sightings_created": counts["sightings_created"],
        }
        submission.save(update_fields=["sellers", "indicators", "sightings_created", "response"])
        hooks.announce_change(sellers=seller_ids)
    logger.info(
        "event=submission_accepted platform=%s submission=%s sellers=%s indicators=%s sightings_created=%s",
        platform.slug,
        submission.ref,
        counts["sellers"],
        counts["indicators"],
        counts["sightings_created"],
    )
    metrics.submission_accepted(counts["sellers"], counts["indicators"])
    return SubmitResult(submission, replayed=False)


def _similar_items(platform: Platform, reports: list[SellerReport]) -> list[tuple[int, datetime, Item]]:
    """(seller id, reported at, item) for the batch's similarity items (its sellers are stored by now)."""
    with_items = [r for r in reports if r.items]
    if not with_items:
        return []
    refs = [r.seller_ref for r in with_items]
    ids = dict(Seller.objects.filter(platform=platform, seller_ref__in=refs).values_list("seller_ref", "pk"))
    return [(ids[r.seller_ref], r.reported_at, item) for r in with_items for item in r.items]


def current_key_version(lock: bool = True) -> int:
    """The pepper version stored tokens use (writers lock it by default): see
    `KeyState.objects.current_version`, the one rule this delegates to."""
    return KeyState.objects.current_version(lock=lock)


def _store(
    platform: Platform, reports: list[SellerReport], version: int, now: datetime
) -> tuple[dict[str, int], list[int]]:
    reports.sort(key=lambda r: r.seller_ref)
    pairs = sorted({pair for r in reports for pair in r.indicators})
    tokens = dict(zip(pairs, keyed_tokens(pairs, settings.EXCHANGE_PEPPERS, version), strict=True))
    retention = timedelta(days=settings.EXCHANGE_RETENTION_DAYS)
    batch = _Batch(platform, reports, tokens, version, retention, now)
    return _store_postgres(batch) if connection.vendor == "postgresql" else _store_orm(batch)


@dataclass(frozen=True, slots=True)
class _Batch:
    """A submission's sellers ready to store (both store paths take this): reports sorted by seller_ref,
    each (kind, transport hash)'s keyed token under pepper `version`."""

    platform: Platform
    reports: list[SellerReport]
    tokens: dict[tuple[str, str], str]
    version: int
    retention: timedelta
    now: datetime

    def sighting_rows(
        self, seller_id: dict[str, int], indicator_id: dict[tuple[str, str], int]
    ) -> Iterator[tuple[int, int, datetime]]:
        """(seller id, indicator id, reported at) for every indicator of every report in the batch."""
        for r in self.reports:
            for kind, h in r.indicators:
                yield seller_id[r.seller_ref], indicator_id[(kind, self.tokens[(kind, h)])], r.reported_at

    def first_seen(self) -> dict[tuple[str, str], datetime]:
        """{(kind, token): the earliest `reported_at` of the reports in the batch that hold it}: an
        indicator's first seen comes from its own sightings, not from the batch's earliest report."""
        earliest: dict[tuple[str, str], datetime] = {}
        for r in self.reports:
            for kind, h in r.indicators:
                key = (kind, self.tokens[(kind, h)])
                if key not in earliest or r.reported_at < earliest[key]:
                    earliest[key] = r.reported_at
        return earliest

    def stored(
        self, seller_id: dict[str, int], sellers_created: int, indicators: int, sightings_created: int
    ) -> tuple[dict[str, int], list[int]]:
        """What `_store` returns: the submission's counts and the stored sellers' ids."""
        counts = {
            "sellers": len(self.reports),
            "sellers_created": sellers_created,
            "indicators": indicators,
            "sightings_created": sightings_created,
        }
        return counts, sorted(seller_id.values())


def _store_postgres(batch: _Batch) -> tuple[dict[str, int], list[int]]:
    # A server-side-binding cursor on Django's own connection (same transaction): Django's default
    # client-side binding spent ~250 ms per batch rendering these arrays as SQL literals. The arrays go in
    # binary (%b): psycopg's text form escapes every element, 8 times the CPU for 25,000 tokens.
    with psycopg.Cursor(connection.connection) as cursor:
        seller_id, sellers_created = _upsert_sellers_pg(
            cursor, batch.platform, batch.reports, batch.retention, batch.now
        )
        indicator_id, inserted, earlier = _upsert_indicators_pg(cursor, batch)
        rows = sorted(batch.sighting_rows(seller_id, indicator_id))
        sightings_created = _upsert_sightings_pg(cursor, rows, inserted, earlier)
    return batch.stored(seller_id, sellers_created, len(rows), sightings_created)


def _upsert_sellers_pg(
    cursor: psycopg.Cursor[Any],
    platform: Platform,
    reports: list[SellerReport],
    retention: timedelta,
    now: datetime,
) -> tuple[dict[str, int], int]:
    """Insert or merge the batch's sellers: ({seller_ref: id}, how many are new)."""
    cursor.execute(
        """
        INSERT INTO exchange_seller AS s (platform_id, seller_ref, status, reason_codes, first_reported_at,
            reported_at, expires_at, retracted_at, retraction_reason, retracted_by, created_at, updated_at)
        SELECT %s, r, st, rc, ra, ra, ra + %s, NULL, '', '', %s, %s
          FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[]) AS t(r, st, rc, ra)
         ORDER BY r
        ON CONFLICT (platform_id, seller_ref) DO UPDATE SET
            status = CASE WHEN s.status = 'confirmed' OR EXCLUDED.status = 'confirmed'
                          THEN 'confirmed' ELSE 'suspected' END,
            reason_codes = (
                SELECT '|' || string_agg(DISTINCT x, '|' ORDER BY x) || '|'
                  FROM unnest(string_to_array(s.reason_codes || EXCLUDED.reason_codes, '|')) AS x
                 WHERE x <> ''),
            first_reported_at = LEAST(s.first_reported_at, EXCLUDED.first_reported_at),
            reported_at = GREATEST(s.reported_at, EXCLUDED.reported_at),
            expires_at = GREATEST(s.expires_at, EXCLUDED.expires_at),
            -- a report newer than a retraction reactivates the seller
            retracted_at = CASE WHEN s.retracted_at < EXCLUDED.reported_at THEN NULL ELSE s.retracted_at END,
            updated_at = EXCLUDED.updated_at
        RETURNING id, seller_ref, (xmax = 0)
        """,
        [
            platform.pk,
            retention,  # psycopg adapts timedelta to interval
            now,
            now,
            [r.seller_ref for r in reports],
            [r.status for r in reports],
            [Seller.encode_reasons(r.reasons) for r in reports],
            [r.reported_at for r in reports],
        ],
    )
    seller_rows = cursor.fetchall()
    return {ref: pk for pk, ref, _ in seller_rows}, sum(1 for *_, created in seller_rows if created)


def _upsert_indicators_pg(
    cursor: psycopg.Cursor[Any], batch: _Batch
) -> tuple[dict[tuple[str, str], int], set[int], dict[int, datetime]]:
    """Insert the batch's new indicators: ({(kind, token): id} for all of them, the ids inserted now,
    {id: first seen} for those that existed with a later first seen than this batch's sightings of them)."""
    kinds = [k for k, _ in batch.tokens]
    toks = list(batch.tokens.values())
    # A brand-new indicator's holders are exactly this batch's sellers that report it.
    batch_holders = Counter(pair for r in batch.reports for pair in r.indicators)
    first_seen = batch.first_seen()
    cursor.execute(
        """
        INSERT INTO exchange_indicator (kind, token, key_version, first_seen, linking, linking_reason,
                                        linking_changed_by, holders)
        SELECT k, t, %s, f, 'auto', '', '', n
          FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::int[]) AS u(k, t, f, n) ORDER BY k, t
        ON CONFLICT (kind, token) DO NOTHING
        RETURNING id, kind, token
        """,
        [
            batch.version,
            kinds,
            toks,
            [first_seen[pair] for pair in zip(kinds, toks, strict=True)],
            [batch_holders[pair] for pair in batch.tokens],
        ],
    )
    indicator_id = {(k, t): pk for pk, k, t in cursor.fetchall()}
    inserted = set(indicator_id.values())
    missing = [(k, t) for k, t in zip(kinds, toks, strict=True) if (k, t) not in indicator_id]
    earlier: dict[int, datetime] = {}
    if missing:
        # A separate statement sees rows that concurrent batches committed meanwhile.
        cursor.execute(
            """
            SELECT i.id, i.kind, i.token, i.first_seen FROM exchange_indicator i
              JOIN unnest(%b::text[], %b::text[]) AS u(k, t) ON i.kind = u.k AND i.token = u.t
            """,
            [[k for k, _ in missing], [t for _, t in missing]],
        )
        for pk, k, t, stored in cursor.fetchall():
            indicator_id[(k, t)] = pk
            if first_seen[(k, t)] < stored:  # a first seen only moves earlier
                earlier[pk] = first_seen[(k, t)]
    return indicator_id, inserted, earlier


def _upsert_sightings_pg(
    cursor: psycopg.Cursor[Any],
    rows: list[tuple[int, int, datetime]],
    inserted: set[int],
    earlier: dict[int, datetime],
) -> int:
    """Insert or widen the sightings; grow the holder counts of indicators that existed before and move
    their first seen back to `earlier` where given (one update, so the rows are locked once, in id order).
    Returns how many sightings are new."""
    cursor.execute(
        """
        WITH ins AS (
            INSERT INTO exchange_sighting AS g (seller_id, indicator_id, first_seen, last_seen)
            SELECT s, i, ts, ts FROM unnest(%b::bigint[], %b::bigint[], %b::timestamptz[]) AS u(s, i, ts)
            ON CONFLICT (seller_id, indicator_id) DO UPDATE SET
                first_seen = LEAST(g.first_seen, EXCLUDED.first_seen),
                last_seen = GREATEST(g.last_seen, EXCLUDED.last_seen)
            RETURNING indicator_id, (xmax = 0) AS created
        )
        SELECT indicator_id, count(*) FILTER (WHERE created) FROM ins GROUP BY indicator_id
        """,
        [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]],
    )
    created_per_indicator = cursor.fetchall()
    sightings_created = sum(n for _, n in created_per_indicator)
    # Indicators that existed before gain holders; the counter lets a full recluster read only
    # indicators held by two or more sellers (an upper bound: purges may leave it high, never low).
    grown = {i: n for i, n in created_per_indicator if n and i not in inserted}
    changed = sorted(grown.keys() | earlier.keys())
    if changed:
        # Lock the rows in id order first: an UPDATE ... FROM join locks them in whatever order its plan
        # visits them, so two batches growing overlapping indicators could each hold one row the other
        # wants (a deadlock seen in the concurrent-batches test).
        cursor.execute(
            "SELECT id FROM exchange_indicator WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [changed]
        )
        # LEAST ignores the NULL of an indicator that only grows; it also keeps an earlier first seen that
        # a concurrent batch stored since it was read.
        cursor.execute(
            """
            UPDATE exchange_indicator AS i
               SET holders = i.holders + u.n, first_seen = LEAST(i.first_seen, u.f)
              FROM unnest(%b::bigint[], %b::int[], %b::timestamptz[]) AS u(id, n, f) WHERE i.id = u.id
            """,
            [changed, [grown.get(i, 0) for i in changed], [earlier.get(i) for i in changed]],
        )
    return sightings_created


def holder_count() -> Coalesce:
    """The exact number of sellers holding an indicator, for `Indicator.objects.update(holders=...)`."""
    counts = Sighting.objects.filter(indicator=OuterRef("pk")).order_by().values("indicator")
    return Coalesce(Subquery(counts.annotate(n=Count("id")).values("n")), 0)


def _store_orm(batch: _Batch) -> tuple[dict[str, int], list[int]]:
    seller_id, sellers_created = _upsert_sellers_orm(
        batch.platform, batch.reports, batch.retention, batch.now
    )
    indicator_id = _upsert_indicators_orm(batch.tokens, batch.version, batch.first_seen())
    wanted = {(s, i): ts for s, i, ts in batch.sighting_rows(seller_id, indicator_id)}
    sightings_created = _upsert_sightings_orm(wanted, seller_id.values())
    Indicator.objects.filter(id__in=set(indicator_id.values())).update(holders=holder_count())
    return batch.stored(seller_id, sellers_created, len(wanted), sightings_created)


def _upsert_sellers_orm(
    platform: Platform, reports: list[SellerReport], retention: timedelta, now: datetime
) -> tuple[dict[str, int], int]:
    """Insert or merge the batch's sellers, as `_upsert_sellers_pg` does: ({seller_ref: id}, how many new)."""
    existing = {
        s.seller_ref: s
        for s in Seller.objects.filter(platform=platform, seller_ref__in=[r.seller_ref for r in reports])
    }
    new, changed = [], []
    for r in reports:
        seller = existing.get(r.seller_ref)
        if seller is None:
            new.append(
                Seller(
                    platform=platform,
                    seller_ref=r.seller_ref,
                    status=r.status,
                    reason_codes=Seller.encode_reasons(r.reasons),
                    first_reported_at=r.reported_at,
                    reported_at=r.reported_at,
                    expires_at=r.reported_at + retention,
                    created_at=now,
                    updated_at=now,
                )
            )
            continue
        seller.status = "confirmed" if "confirmed" in (seller.status, r.status) else "suspected"
        seller.reason_codes = Seller.encode_reasons(seller.reasons + r.reasons)
        seller.first_reported_at = min(seller.first_reported_at, r.reported_at)
        seller.reported_at = max(seller.reported_at, r.reported_at)
        seller.expires_at = max(seller.expires_at, r.reported_at + retention)
        if seller.retracted_at and seller.retracted_at < r.reported_at:
            seller.retracted_at = None
        seller.updated_at = now
        changed.append(seller)
    Seller.objects.bulk_create(new)
    Seller.objects.bulk_update(
        changed,
        [
            "status",
            "reason_codes",
            "first_reported_at",
            "reported_at",
            "expires_at",
            "retracted_at",
            "updated_at",
        ],
    )
    seller_id = dict(
        Seller.objects.filter(platform=platform, seller_ref__in=[r.seller_ref for r in reports]).values_list(
            "seller_ref", "id"
        )
    )
    return seller_id, len(new)


def _upsert_indicators_orm(
    tokens: dict[tuple[str, str], str], version: int, first_seen: dict[tuple[str, str], datetime]
) -> dict[tuple[str, str], int]:
    """Insert the batch's new indicators, move the known ones' first seen back to this batch's sightings
    where those are earlier (as `_upsert_indicators_pg` and `_upsert_sightings_pg` do); {(kind, token): id}
    for all of them."""
    Indicator.objects.bulk_create(
        [
            Indicator(kind=k, token=t, key_version=version, first_seen=first_seen[(k, t)])
            for (k, _), t in tokens.items()
        ],
        ignore_conflicts=True,
    )
    indicator_id, earlier = {}, []
    for pk, k, t, stored in Indicator.objects.filter(token__in=list(tokens.values())).values_list(
        "id", "kind", "token", "first_seen"
    ):
        if (k, t) not in first_seen:  # the same token under another kind: not this batch's
            continue
        indicator_id[(k, t)] = pk
        if first_seen[(k, t)] < stored:
            earlier.append(Indicator(id=pk, first_seen=first_seen[(k, t)]))
    Indicator.objects.bulk_update(earlier, ["first_seen"])
    return indicator_id


def _upsert_sightings_orm(wanted: dict[tuple[int, int], datetime], seller_ids: Iterable[int]) -> int:
    """Insert the new sightings and widen the known ones' first/last seen; returns how many are new."""
    present = {
        (s, i): Sighting(id=pk, first_seen=first, last_seen=last)
        for pk, s, i, first, last in Sighting.objects.filter(seller_id__in=list(seller_ids)).values_list(
            "id", "seller_id", "indicator_id", "first_seen", "last_seen"
        )
    }
    Sighting.objects.bulk_create(
        [
            Sighting(seller_id=s, indicator_id=i, first_seen=ts, last_seen=ts)
            for (s, i), ts in wanted.items()
            if (s, i) not in present
        ]
    )
    widened = []
    for key, ts in wanted.items():
        sighting = present.get(key)
        if sighting is not None and not (sighting.first_seen <= ts <= sighting.last_seen):
            sighting.first_seen, sighting.last_seen = (
                min(sighting.first_seen, ts),
                max(sighting.last_seen, ts),
            )
            widened.append(sighting)
    Sighting.objects.bulk_update(widened, ["first_seen", "last_seen"])
    return sum(1 for key in wanted if key not in present)
