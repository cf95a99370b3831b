"""Screening: does this (hashed) indicator belong to sellers reported on other platforms?

What a partner learns about others is limited by the privacy model: whether a match exists, how many other
platforms, which kinds matched, the cluster's risk and its opaque reference. Never another platform's seller
references, tokens or names.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange import hooks, metrics, routers, similarity
from exchange.contract import DOCUMENT_KIND
from exchange.hashing import default_key_version, keyed_tokens
from exchange.ingest import current_key_version
from exchange.matching import Item
from exchange.models import (
    LINKABLE_SQL,
    AnalystLookupUsage,
    LookupMatch,
    LookupUsage,
    Seller,
    Sighting,
    linkable_q,
)


class QuotaExceeded(Exception):
    def __init__(self, quota: int, resets_at: datetime) -> None:
        super().__init__("daily lookup quota exceeded")
        self.quota = quota
        self.resets_at = resets_at


def _resets_at(now: datetime) -> datetime:
    """When a daily quota counted at `now` starts again: the next UTC midnight."""
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time.min, tzinfo=UTC)


def _charge_daily(
    model: type[LookupUsage] | type[AnalystLookupUsage],
    owner_column: str,
    owner_id: int,
    amount: int,
    quota: int,
    now: datetime | None,
) -> int:
    """Count `amount` against one owner's counter for the UTC day; raise QuotaExceeded beyond `quota`."""
    now = now or timezone.now()
    today: date = now.astimezone(UTC).date()
    resets_at = _resets_at(now)
    if amount > quota:
        raise QuotaExceeded(quota, resets_at)
    if connection.vendor == "postgresql":
        # One conditional upsert: concurrent requests cannot both slip under the limit.
        table = model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} AS u ({owner_column}, day, count) VALUES (%s, %s, %s)
                ON CONFLICT ({owner_column}, day) DO UPDATE SET count = u.count + EXCLUDED.count
                 WHERE u.count + EXCLUDED.count <= %s
                RETURNING count
                """,  # noqa: S608 - table and column names are the models' own
                [owner_id, today, amount, quota],
            )
            charged = cursor.fetchone() is not None
    else:
        owner: dict[str, Any] = {owner_column: owner_id, "day": today}
        with transaction.atomic():
            model.objects.get_or_create(**owner)
            charged = bool(
                model.objects.filter(**owner, count__lte=quota - amount).update(count=F("count") + amount)
            )
    if not charged:
        raise QuotaExceeded(quota, resets_at)
    return quota


def charge_quota(api_key: ApiKey, amount: int, now: datetime | None = None) -> int:
    """Count `amount` lookups against the key's daily quota (UTC day); raise QuotaExceeded beyond it."""
    return _charge_daily(
        LookupUsage, "api_key_id", api_key.pk, amount, settings.EXCHANGE_LOOKUP_DAILY_QUOTA, now
    )


def charge_platform_quota(platform_id: int, amount: int, now: datetime | None = None) -> int:
    """Count `amount` analyst lookups (admin hash searches, cluster pages) against the platform's daily analyst
    quota (UTC day, all its partner analysts together); raise QuotaExceeded beyond it."""
    return _charge_daily(
        AnalystLookupUsage, "platform_id", platform_id, amount, settings.EXCHANGE_ANALYST_DAILY_QUOTA, now
    )


# The columns ActorCluster.summary() reads.
SUMMARY_FIELDS = ("ref", "size", "platform_count", "cross_platform", "risk", "kinds")


def do_read_clusters(
    api_key: ApiKey,
    endpoint: str,
    summaries: Iterable[dict[str, Any]],
    object_type: str = "",
    object_id: str = "",
    unlinked: int = 0,
) -> None:
    """Charge and audit a read that shows the partner clusters (their partner-safe summaries), or shows that
    `unlinked` of its linkable sellers are in none.

    A cluster's summary tells whether and how much other platforms hold of its sellers' indicators, and a
    partner chooses what its own sellers hold: submitting a probe seller with someone's hash and reading its
    cluster is a lookup. So each distinct cluster revealed costs one unit of the key's daily lookup quota
    (QuotaExceeded beyond it, before anything is shown). "No cluster" is an answer too (a lookup without a
    match costs one as well): each linkable seller shown without a cluster costs one unit; a retracted or
    expired seller links nobody, so its missing cluster says nothing about others and costs nothing. Every
    read leaves an audit entry with counts and the opaque cluster refs it revealed (never another platform's
    seller refs, tokens or hashes)."""
    revealed = {summary["id"]: summary for summary in summaries}
    if revealed or unlinked:
        charge_quota(api_key, len(revealed) + unlinked)
    AuditEntry.objects.record(
        "cluster_read",
        api_key.prefix,
        api_key.platform_id,
        object_type,
        object_id,
        endpoint=endpoint,
        clusters=len(revealed),
        unlinked=unlinked,
        cross_platform=sum(1 for summary in revealed.values() if summary["cross_platform"]),
        refs=sorted(revealed),
    )


def cluster_was_read(seller: Seller, since: datetime) -> bool:
    """Whether the seller's platform read the seller's current cluster (through any endpoint) or the seller's
    own page since `since`, according to the `cluster_read` audit entries."""
    reads = AuditEntry.objects.filter(
        action="cluster_read", platform_id=seller.platform_id, created_at__gte=since
    )
    read = Q(object_type="seller", object_id=str(seller.pk))
    ref = hooks.cluster_reads().ref_of(seller.pk)
    if ref:
        # A substring test on the JSON list is portable (SQLite has no JSON containment); refs are
        # fixed-length and unique, so one cannot be part of another.
        read |= Q(details__refs__icontains=ref)
    return reads.filter(read).exists()


# Every step is a LATERAL subquery fenced with OFFSET 0, so the plan is a chain of index probes that starts
# from the tokens whatever the statistics say. Left to itself, right after a bulk load (no statistics yet)
# the planner started from every live seller and scanned them all on each lookup (46 ms at 5,000 sellers,
# growing with the table). And the chain descends the same three indexes for a token nobody holds as for one
# that only retracted or the caller's own sellers hold: a missing row probes on with id 0, which no row has
# (ids start at 1), so what is stored changes only a few heap reads, not the number of index probes.
# `{requested}` is the (pos, token) rows of the request; parameters `now` and `platform` are named.
_CHAIN_SQL = """
    SELECT t.pos, i.kind, sel.platform_id, sel.id AS seller_id,
           c.ref, c.size, c.platform_count, c.cross_platform, c.risk, c.kinds
      FROM {requested}
      LEFT JOIN LATERAL (SELECT id, kind, token FROM exchange_indicator
                          WHERE token = t.token OFFSET 0) AS i ON TRUE
      LEFT JOIN LATERAL (SELECT seller_id FROM exchange_sighting
                          WHERE indicator_id = COALESCE(i.id, 0) OFFSET 0) AS s ON TRUE
      LEFT JOIN LATERAL (SELECT id, platform_id FROM exchange_seller
                          WHERE id = COALESCE(s.seller_id, 0) AND {linkable}
                            AND platform_id <> %(platform)s OFFSET 0) AS sel ON TRUE
      LEFT JOIN LATERAL (SELECT ac.ref, ac.size, ac.platform_count, ac.cross_platform, ac.risk, ac.kinds
                           FROM graph_clustermember cm JOIN graph_actorcluster ac ON ac.id = cm.cluster_id
                          WHERE cm.seller_id = sel.id OFFSET 0) AS c ON TRUE
     WHERE sel.id IS NOT NULL
"""
_LINKABLE = LINKABLE_SQL.format(alias="exchange_seller").replace("%s", "%(now)s")

# The read alone (parameters tokens, now, platform): what a replica runs, and what the plan test explains.
LIVE_HOLDERS_SQL = _CHAIN_SQL.format(
    requested="unnest(%(tokens)s::text[]) WITH ORDINALITY AS t(token, pos)", linkable=_LINKABLE
)

# The whole lookup as one statement, so one round trip and one transaction (autocommit): the quota charge,
# the read and the audit entry commit together or not at all. The entry records the cluster refs the answer
# reveals (each position's riskiest cluster, the smallest ref among equals: `_answer`'s rule), as `cluster_read`
# entries do: a partner may give its opinion on a cluster a lookup showed it (graph.opinions). A lookup is
# answered only if its audit entry committed (no crash between answer and audit can lose it), and a charge
# the quota refuses reads and audits nothing. It also records the other platforms' sellers the lookup matched, the first time (LookupMatch: the
# platform is told when such a report is retracted), in seller order so that concurrent lookups take the
# rows' locks in one order. The request's tokens come under every configured pepper version (`versions`,
# `tokens` and `positions` are parallel arrays) and the statement keeps those of the stored key version, so
# reading KeyState costs no round trip of its own.
LOOKUP_SQL = """
WITH version AS (
    SELECT COALESCE((SELECT current_version FROM exchange_keystate ORDER BY id LIMIT 1),
                    %(default_version)s) AS v
), charge AS (
    INSERT INTO exchange_lookupusage AS u (api_key_id, day, count) VALUES (%(key)s, %(day)s, %(amount)s)
    ON CONFLICT (api_key_id, day) DO UPDATE SET count = u.count + EXCLUDED.count
     WHERE u.count + EXCLUDED.count <= %(quota)s
    RETURNING 1
), requested AS (
    SELECT r.pos, r.token
      FROM unnest(%(positions)s::int[], %(versions)s::int[], %(tokens)s::text[]) AS r(pos, version, token)
     WHERE r.version = (SELECT v FROM version) AND EXISTS (SELECT 1 FROM charge)
), holders AS ({chain}
), matched AS (
    INSERT INTO exchange_lookupmatch (platform_id, seller_id, first_matched_at)
    SELECT %(platform)s::bigint, s.seller_id, %(now)s FROM (SELECT DISTINCT seller_id FROM holders) AS s
     ORDER BY 2
    ON CONFLICT (platform_id, seller_id) DO NOTHING
), audit AS (
    INSERT INTO accounts_auditentry (created_at, action, actor, platform_id, object_type, object_id, details)
    SELECT %(now)s, 'lookup', %(actor)s, %(platform)s, '', '',
           jsonb_build_object('indicators', %(amount)s, 'matches', (SELECT count(DISTINCT pos) FROM holders),
                              'refs', (SELECT COALESCE(jsonb_agg(DISTINCT b.ref ORDER BY b.ref), '[]'::jsonb)
                                         FROM (SELECT DISTINCT ON (pos) ref FROM holders WHERE ref IS NOT NULL
                                                ORDER BY pos, risk DESC, ref) AS b))
      FROM charge
    RETURNING 1
)
SELECT (SELECT count(*) FROM audit), h.*
  FROM (SELECT 1) AS one LEFT JOIN holders AS h ON TRUE
""".format(chain=_CHAIN_SQL.format(requested="requested AS t", linkable=_LINKABLE))  # noqa: S608 - constants only

# Per request position: [(holding platform, holding seller, its cluster's summary or None)] of other
# platforms' live sellers.
Hits = list[list[tuple[int, int, dict[str, Any] | None]]]


def _summary(ref: str | None, size: int, platform_count: int, cross: bool, risk: float, kinds: Any) -> Any:
    if ref is None:
        return None
    return {
        "id": ref,
        "size": size,
        "platforms": platform_count,
        "cross_platform": cross,
        "risk": risk,
        # Django reads jsonb as text (its ORM decodes it); a plain psycopg cursor decodes it itself.
        "kinds": json.loads(kinds) if isinstance(kinds, str) else list(kinds),
    }


def _live_holders(tokens: list[str], platform_id: int, now: datetime) -> Hits:
    """Per token: the other platforms' live sellers holding it, with their clusters.

    One query whatever is stored: never a list of indicator ids that could be empty (skipping the query for
    unknown tokens made them measurably faster than tokens only retracted or own sellers hold). Reads where
    the scope reads (the replica inside `routers.on_replica`)."""
    hits: Hits = [[] for _ in tokens]
    reading = connections[routers.read_alias()]
    if reading.vendor == "postgresql":
        with reading.cursor() as cursor:
            cursor.execute(LIVE_HOLDERS_SQL, {"tokens": tokens, "now": now, "platform": platform_id})
            for pos, _kind, holder, seller_id, *cluster in cursor.fetchall():
                hits[pos - 1].append((holder, seller_id, _summary(*cluster)))
        return hits
    # SQLite (the embedded default): the same join through the ORM.
    positions: defaultdict[str, list[int]] = defaultdict(list)
    for pos, token in enumerate(tokens):
        positions[token].append(pos)
    for sighting in (
        Sighting.objects.filter(linkable_q(now, "seller__"), indicator__token__in=tokens)
        .exclude(seller__platform_id=platform_id)
        .select_related("indicator", "seller__cluster_membership__cluster")
        .only(
            "indicator__token",
            "seller__platform_id",
            "seller__id",
            *(f"seller__cluster_membership__cluster__{name}" for name in SUMMARY_FIELDS),
        )
    ):
        membership = getattr(sighting.seller, "cluster_membership", None)
        summary = membership.cluster.summary() if membership else None
        for pos in positions[sighting.indicator.token]:
            hits[pos].append((sighting.seller.platform_id, sighting.seller.pk, summary))
    return hits


# A looked-up indicator: (kind, transport hash), or an item of a similarity kind (a photo: exchange.matching).
LookupItem = tuple[str, str] | Item


def kind_of(item: LookupItem) -> str:
    return item.kind if isinstance(item, Item) else item[0]


def _similar_tokens(indicators: list[LookupItem]) -> list[tuple[int, str]]:
    """(position, token) of the near-duplicate groups each looked-up similarity item matches (none, one, or
    several when it falls between groups): a group's token is stored as is, under no pepper."""
    similar = [(pos, item) for pos, item in enumerate(indicators) if isinstance(item, Item)]
    if not similar:
        return []
    tokens = similarity.matching_group_tokens([item for _, item in similar])
    return [(pos, token) for (pos, _), found in zip(similar, tokens, strict=True) for token in found]


def _tokens_under(
    indicators: list[LookupItem], version: int, photos: list[tuple[int, str]]
) -> list[tuple[int, str]]:
    """(position, token) of the request under pepper `version`: exact indicators keyed, photos' groups."""
    exact: list[tuple[int, tuple[str, str]]] = []
    for pos, item in enumerate(indicators):
        pair = item.exact if isinstance(item, Item) else item  # a document's file SHA-256 is exact too
        if pair is not None:
            exact.append((pos, pair))
    keyed = keyed_tokens([pair for _, pair in exact], settings.EXCHANGE_PEPPERS, version) if exact else []
    return sorted([(pos, token) for (pos, _), token in zip(exact, keyed, strict=True)] + photos)


def _lookup_in_one_statement(api_key: ApiKey, indicators: list[LookupItem], now: datetime) -> Hits:
    """Charge, read and audit in one statement (LOOKUP_SQL), prepared on the connection: PostgreSQL without
    a replica. Raises QuotaExceeded, having read and audited nothing, when the charge is refused."""
    peppers = settings.EXCHANGE_PEPPERS
    positions: list[int] = []
    versions: list[int] = []
    tokens: list[str] = []
    photos = _similar_tokens(indicators)
    for version in peppers:  # every configured version; the statement keeps the stored one
        for pos, token in _tokens_under(indicators, version, photos):
            positions.append(pos + 1)
            versions.append(version)
            tokens.append(token)
    quota = settings.EXCHANGE_LOOKUP_DAILY_QUOTA
    params = {
        "default_version": default_key_version(peppers),
        "key": api_key.pk,
        "day": now.astimezone(UTC).date(),
        "amount": len(indicators),
        "quota": quota,
        "positions": positions,
        "versions": versions,
        "tokens": tokens,
        "now": now,
        "platform": api_key.platform_id,
        "actor": api_key.prefix,
    }
    connection.ensure_connection()
    # A server-side binding cursor (Django's own binds on the client), so psycopg can prepare the statement:
    # from the second execution on a connection it is parsed once, not per lookup (exchange/config.py lets psycopg
    # prepare: Django's default turns it off, and prepare=True did nothing until it did).
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(LOOKUP_SQL, params, prepare=True)
        rows = cursor.fetchall()
    if not rows[0][0]:
        raise QuotaExceeded(quota, _resets_at(now))
    hits: Hits = [[] for _ in indicators]
    for _, pos, _kind, holder, seller_id, *cluster in rows:
        if pos is not None:
            hits[pos - 1].append((holder, seller_id, _summary(*cluster)))
    return _distinct(hits)


def _distinct(hits: Hits) -> Hits:
    """Each position's holders once (a photo between two groups can reach one seller through both)."""
    return [list({seller_id: (p, seller_id, c) for p, seller_id, c in pairs}.values()) for pairs in hits]


def do_lookup(api_key: ApiKey, indicators: list[LookupItem]) -> list[dict[str, Any]]:
    """Answer one lookup request (already validated), charged to the key's daily quota and audited.

    On PostgreSQL without a replica that is one statement (LOOKUP_SQL). With a replica the read runs there
    (exchange/routers.py) and the quota charge before it and the audit entry after it on the primary; SQLite
    runs the same three steps through the ORM.

    The work does not depend on what the exchange stores when no other platform's live seller holds an
    indicator: an unknown indicator and one held only by retracted, expired or the caller's own sellers run
    the same query (the token join finds no row either way) and build the answer the same way. Skipping the
    query for tokens that are not stored made the two measurably different in time
    (tests/bench/bench_lookup_timing.py)."""
    now = timezone.now()
    if connection.vendor == "postgresql" and not routers.replica_configured():
        if len(indicators) > settings.EXCHANGE_LOOKUP_DAILY_QUOTA:
            raise QuotaExceeded(settings.EXCHANGE_LOOKUP_DAILY_QUOTA, _resets_at(now))
        hits = _lookup_in_one_statement(api_key, indicators, now)
        results = _answer(indicators, hits)
    else:
        charge_quota(api_key, len(indicators), now)  # on the primary, before anything is read

        def read() -> Hits:
            # The key version from the same database as the tokens it keys: a replica behind a pepper
            # rotation still matches its own (not yet re-keyed) tokens.
            requested = _tokens_under(
                indicators, current_key_version(lock=False), _similar_tokens(indicators)
            )
            found = _live_holders([token for _, token in requested], api_key.platform_id, timezone.now())
            hits: Hits = [[] for _ in indicators]
            for (pos, _), pairs in zip(requested, found, strict=True):
                hits[pos].extend(pairs)
            return _distinct(hits)

        hits = routers.on_replica(read)
        results = _answer(indicators, hits)
        with transaction.atomic():
            record_matches(api_key.platform_id, {seller for pairs in hits for _, seller, _ in pairs}, now)
            AuditEntry.objects.record(
                "lookup",
                api_key.prefix,
                api_key.platform_id,
                indicators=len(indicators),
                matches=sum(1 for r in results if r["match"]),
                refs=sorted({r["cluster"] for r in results if r["cluster"]}),
            )
    _count_falsified(indicators, hits, results)
    metrics.lookup_answered(len(indicators), sum(1 for r in results if r["match"]))
    return results


def _count_falsified(indicators: list[LookupItem], hits: Hits, results: list[dict[str, Any]]) -> None:
    """For a looked-up document: how many of its holders were reported for falsified documents."""
    documents = [pos for pos, item in enumerate(indicators) if kind_of(item) == DOCUMENT_KIND]
    if not documents:
        return
    holders = {seller_id for pos in documents for _, seller_id, _ in hits[pos]}
    falsified = set(
        Seller.objects.filter(Seller.reason_q("falsified_documents"), pk__in=sorted(holders)).values_list(
            "pk", flat=True
        )
    )
    for pos in documents:
        results[pos]["reported_falsified"] = sum(1 for _, seller_id, _ in hits[pos] if seller_id in falsified)


def record_matches(platform_id: int, seller_ids: Iterable[int], now: datetime) -> None:
    """Record that the platform's lookup matched these (other platforms') sellers, where not recorded yet.
    Sellers the replica still showed but the primary has purged meanwhile are left out."""
    wanted = sorted(set(seller_ids))
    if not wanted:
        return
    existing = Seller.objects.filter(id__in=wanted).values_list("id", flat=True)
    LookupMatch.objects.bulk_create(
        [LookupMatch(platform_id=platform_id, seller_id=s, first_matched_at=now) for s in sorted(existing)],
        ignore_conflicts=True,
    )


def _answer(indicators: list[LookupItem], hits: Hits) -> list[dict[str, Any]]:
    """The partner's answer per indicator: whether other platforms' live sellers hold it, how many, and the
    riskiest of their clusters (its opaque ref, risk and kinds; the request's kinds that hit it)."""
    # Which kinds of this request hit each cluster: a result's matched kinds are those of its cluster.
    kinds_hitting: dict[str, set[str]] = defaultdict(set)
    for item, pairs in zip(indicators, hits, strict=True):
        kind = kind_of(item)
        for _, _, cluster in pairs:
            if cluster is not None:
                kinds_hitting[cluster["id"]].add(kind)
    results = []
    for index, (item, pairs) in enumerate(zip(indicators, hits, strict=True)):
        kind = kind_of(item)
        clusters = {c["id"]: c for _, _, c in pairs if c is not None}
        # The riskiest; among equals the smallest ref (LOOKUP_SQL's audit names the same one).
        best = min(clusters.values(), key=lambda c: (-c["risk"], c["id"]), default=None)
        results.append(
            {
                "index": index,
                "kind": kind,
                "match": bool(pairs),
                "other_platforms": len({p for p, _, _ in pairs}),
                "reported_sellers": len(pairs),
                "cluster": best["id"] if best else None,
                "risk": best["risk"] if best else None,
                "matched_kinds": sorted(kinds_hitting[best["id"]]) if best else ([kind] if pairs else []),
                "cluster_kinds": list(best["kinds"]) if best else [],
                "reported_falsified": None,  # documents: counted by `_count_falsified`
            }
        )
    return results
