"""Screening: does this (hashed) indicator belong to sellers reported on other platforms?

What a partner learns about others is limited by the privacy model: whether a match exists, how many other
platforms, which kinds matched, the cluster's risk and its opaque reference. Never another platform's seller
references, tokens or names.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import ApiKey, Platform
from exchange.hashing import keyed_tokens
from exchange.ingest import current_key_version
from exchange.models import AuditEntry, Indicator, LookupUsage, Sighting
from graph.models import ClusterMember


class QuotaExceeded(Exception):
    def __init__(self, quota: int, resets_at: datetime) -> None:
        super().__init__("daily lookup quota exceeded")
        self.quota = quota
        self.resets_at = resets_at


def charge_quota(api_key: ApiKey, amount: int, now: datetime | None = None) -> int:
    """Count `amount` lookups against the key's daily quota (UTC day); raise QuotaExceeded beyond it."""
    now = now or timezone.now()
    today: date = now.astimezone(UTC).date()
    quota = settings.EXCHANGE_LOOKUP_DAILY_QUOTA
    resets_at = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    if amount > quota:
        raise QuotaExceeded(quota, resets_at)
    if connection.vendor == "postgresql":
        # One conditional upsert: concurrent lookups cannot both slip under the limit.
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO exchange_lookupusage AS u (api_key_id, day, count) VALUES (%s, %s, %s)
                ON CONFLICT (api_key_id, day) DO UPDATE SET count = u.count + EXCLUDED.count
                 WHERE u.count + EXCLUDED.count <= %s
                RETURNING count
                """,
                [api_key.pk, today, amount, quota],
            )
            charged = cursor.fetchone() is not None
    else:
        with transaction.atomic():
            LookupUsage.objects.get_or_create(api_key=api_key, day=today)
            charged = bool(
                LookupUsage.objects.filter(api_key=api_key, day=today, count__lte=quota - amount).update(
                    count=F("count") + amount
                )
            )
    if not charged:
        raise QuotaExceeded(quota, resets_at)
    return quota


def do_lookup(api_key: ApiKey, indicators: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Answer one lookup request (already validated) and audit it."""
    platform: Platform = api_key.platform
    charge_quota(api_key, len(indicators))
    peppers = settings.EXCHANGE_PEPPERS
    tokens = keyed_tokens(indicators, peppers, current_key_version(lock=False))
    found = {
        (kind, token): pk
        for pk, kind, token in Indicator.objects.filter(token__in=tokens).values_list("id", "kind", "token")
    }
    ids = [found.get((kind, token)) for (kind, _), token in zip(indicators, tokens, strict=True)]
    now = timezone.now()
    sellers_by_indicator: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for sighted_id, seller_id, platform_id in (
        # Filter through the join (not a `seller__in` subquery, which planned as a scan of all sellers).
        Sighting.objects.filter(
            indicator_id__in=[i for i in ids if i is not None],
            seller__retracted_at__isnull=True,
            seller__expires_at__gt=now,
        )
        .exclude(seller__platform_id=platform.pk)
        .values_list("indicator_id", "seller_id", "seller__platform_id")
    ):
        sellers_by_indicator[sighted_id].append((seller_id, platform_id))
    all_sellers = sorted({s for pairs in sellers_by_indicator.values() for s, _ in pairs})
    summaries = ClusterMember.objects.summaries(all_sellers) if all_sellers else {}
    results = []
    for index, ((kind, _), indicator_id) in enumerate(zip(indicators, ids, strict=True)):
        pairs = sellers_by_indicator.get(indicator_id, []) if indicator_id is not None else []
        clusters = {summaries[s]["id"]: summaries[s] for s, _ in pairs if s in summaries}
        best = max(clusters.values(), key=lambda c: c["risk"], default=None)
        results.append(
            {
                "index": index,
                "kind": kind,
                "match": bool(pairs),
                "other_platforms": len({p for _, p in pairs}),
                "reported_sellers": len(pairs),
                "cluster": best["id"] if best else None,
                "risk": best["risk"] if best else None,
                "matched_kinds": best["kinds"] if best else ([kind] if pairs else []),
            }
        )
    AuditEntry.objects.record(
        "lookup",
        api_key.prefix,
        platform,
        indicators=len(indicators),
        matches=sum(1 for r in results if r["match"]),
    )
    return results


def charge_platform_quota(platform_id: int, amount: int, now: datetime | None = None) -> int:
    """Count `amount` analyst lookups (admin hash searches, cluster pages) against the platform's daily analyst
    quota (UTC day, all its partner analysts together); raise QuotaExceeded beyond it. As `charge_quota`."""
    from exchange.models import AnalystLookupUsage  # appended function: its import stays with it

    now = now or timezone.now()
    today: date = now.astimezone(UTC).date()
    quota = settings.EXCHANGE_ANALYST_DAILY_QUOTA
    resets_at = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    if amount > quota:
        raise QuotaExceeded(quota, resets_at)
    if connection.vendor == "postgresql":
        # One conditional upsert: two analysts' concurrent searches cannot both slip under the limit.
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO exchange_analystlookupusage AS u (platform_id, day, count) VALUES (%s, %s, %s)
                ON CONFLICT (platform_id, day) DO UPDATE SET count = u.count + EXCLUDED.count
                 WHERE u.count + EXCLUDED.count <= %s
                RETURNING count
                """,
                [platform_id, today, amount, quota],
            )
            charged = cursor.fetchone() is not None
    else:
        with transaction.atomic():
            AnalystLookupUsage.objects.get_or_create(platform_id=platform_id, day=today)
            charged = bool(
                AnalystLookupUsage.objects.filter(
                    platform_id=platform_id, day=today, count__lte=quota - amount
                ).update(count=F("count") + amount)
            )
    if not charged:
        raise QuotaExceeded(quota, resets_at)
    return quota
