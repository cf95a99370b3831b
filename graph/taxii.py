"""TAXII 2.1 (read-only): actor clusters as STIX 2.1, for threat-intelligence tools.

`/taxii2/` (discovery), one API root `/taxii2/api1/`, and two kinds of collection:

- per partner one collection, "clusters" (the live clusters that contain its sellers, as the partner API shows
  them), read with the partner's API key (`read` scope); its id is derived from the platform, and another
  platform's collection id is a 404, like any other platform's object in the partner API. Reading objects (or
  their manifest) shows clusters, so it is charged to the key's daily lookup quota and audited by the same
  function as the cluster endpoints (`lookups.do_read_clusters`);
- one exchange-wide collection, "advisories" (the confirmed cross-platform clusters an exchange analyst
  published, `ActorClusterQuerySet.advisories`), in full (every member by reference, every platform by name,
  `graph.exports.full_cluster_data`), for exchange analysts only: read with an exchange analyst's key
  (`accounts.models.AnalystKey`), never a partner's (a partner's key gets a 404 on its id, and the collections
  list shows each caller its own collection only). Reads are audited (`advisory_read`), not metered.

A collection is a stream ordered by date added: first the exchange's fixed objects (its identity, the extension
definition of its properties, the TLP marking definitions), then each cluster's objects, added when its
membership last changed (`changed_at`; an advisory also when it was published, if later): a cluster that
changes is added again, as new versions. `next` is an encrypted cursor into that stream (like the API's), so
paging by `limit` objects is exact.

Filters (TAXII 2.1, 3.4): `match[id]`, `match[type]`, `match[spec_version]` and `match[version]` on objects and
the manifest, each a comma-separated list; an object matches when it matches every filter given. Each object
has one version in the collection (its current one), so `first`, `last` and `all` select it and a timestamp
selects it when it is that version. An object by id takes `match[version]` and `match[spec_version]`, its
versions (`objects/<id>/versions/`) `match[spec_version]`; any other `match[...]` is a 400. Anything else under
/taxii2/ is a TAXII 404, not Django's HTML page.
"""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.http import Http404, HttpRequest
from django.urls import path, re_path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import (
    AnalystKeyAuthentication,
    ApiKeyAuthentication,
    ExchangeReader,
    Partner,
    TaxiiReaderPermission,
)
from accounts.models import AuditEntry, Platform
from exchange import lookups, routers
from exchange.errors import api_exception_handler
from exchange.views import cursor_cipher
from graph import stix
from graph.api import LIVE_CLUSTERS
from graph.exports import full_cluster_data, partner_cluster_data
from graph.models import ActorCluster, ActorClusterQuerySet, ClusterMember

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ALL_TLPS = tuple(stix.TLP_MARKING_IDS)


class TaxiiRenderer(JSONRenderer):
    media_type = TAXII_MEDIA_TYPE
    format = "taxii"


class TaxiiNegotiation(DefaultContentNegotiation):
    """TAXII 2.1, or anything that admits it: `application/taxii+json` without a version means the latest
    (TAXII 2.1, 1.6.8.1), and so do wildcards. DRF's own matching would refuse both, as it requires every
    parameter of the renderer's media type (`version`) to be in Accept."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        for accepted in self.get_accept_list(request):
            kind, *raw_params = (part.strip() for part in accepted.split(";"))
            params = dict(p.replace(" ", "").lower().split("=", 1) for p in raw_params if "=" in p)
            version_ok = params.get("version", "2.1") == "2.1"
            if kind.lower() in {"*/*", "application/*"} or (
                kind.lower() == "application/taxii+json" and version_ok
            ):
                return next(iter(renderers)), TAXII_MEDIA_TYPE
        raise exceptions.NotAcceptable(f"This server answers {TAXII_MEDIA_TYPE} only.")


def taxii_error(status_code: int, title: str, description: str = "") -> dict[str, Any]:
    """A TAXII 2.1 error message (section 3.6.1)."""
    body: dict[str, Any] = {"title": title, "http_status": str(status_code)}
    if description:
        body["description"] = description
    return body


def taxii_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The partner API's statuses and headers (401 with WWW-Authenticate, 503 with Retry-After on a database
    outage, 429 with Retry-After beyond the quota), with TAXII error bodies."""
    if isinstance(exc, lookups.QuotaExceeded):
        quota = Response(
            taxii_error(
                429,
                "Daily lookup quota reached",
                f"Each cluster shown counts against the key's daily quota of {exc.quota}; it resets at "
                f"{exc.resets_at.isoformat()}.",
            ),
            status=429,
        )
        quota["Retry-After"] = str(max(1, int((exc.resets_at - timezone.now()).total_seconds())))
        return quota
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    error = response.data["error"]
    title = str(error["code"]).replace("_", " ").capitalize()  # "Not acceptable", "Service unavailable"
    response.data = taxii_error(response.status_code, title, str(error["message"]))
    return response


class TaxiiView(APIView):
    """Read-only TAXII endpoint: GET only (anything else is a 405), TAXII media type only (anything else in
    Accept is a 406), TAXII error bodies. A partner's key with the `read` scope, or an exchange analyst's key."""

    authentication_classes = [AnalystKeyAuthentication, ApiKeyAuthentication]
    permission_classes = [TaxiiReaderPermission]
    required_scope = "read"  # of a partner's key
    schema = None  # not part of the partner API's OpenAPI document: TAXII is its own specification
    renderer_classes = [TaxiiRenderer]
    content_negotiation_class = TaxiiNegotiation
    parser_classes: list[Any] = []  # nothing is written: collections are read-only (can_write false)

    def get_exception_handler(self) -> Any:
        return taxii_exception_handler


def collection_id(platform: Platform) -> str:
    """The platform's collection id: stable across restarts and servers (derived from the slug)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bad-actor-exchange:taxii:{platform.slug}:clusters"))


ADVISORIES_COLLECTION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "bad-actor-exchange:taxii:advisories"))


class Collection(ABC):
    """One TAXII collection as one caller reads it: which clusters it holds (with when each was added), the
    STIX objects of each, and how a read of them is recorded."""

    id: str
    viewer: str  # whose view the objects are (part of the sightings' ids)

    @abstractmethod
    def resource(self) -> dict[str, Any]:
        """The collection resource (TAXII 2.1, 5.2)."""

    @abstractmethod
    def clusters(self) -> ActorClusterQuerySet:
        """The clusters whose objects the collection holds."""

    @abstractmethod
    def date_added(self) -> Any:
        """The expression of when a cluster's current objects were added (a cluster's `added_at`)."""

    @abstractmethod
    def objects_of(self, cluster: ActorCluster) -> list[dict[str, Any]]:
        """The cluster's STIX objects as this collection shows them."""

    @abstractmethod
    def sellers_shown(self, clusters: ActorClusterQuerySet) -> dict[int, list[tuple[str, str]]]:
        """{cluster id: (platform slug, seller_ref) of each member shown by reference} for these clusters."""

    @abstractmethod
    def sighting_counts(
        self, clusters: ActorClusterQuerySet, shown: dict[int, list[tuple[str, str]]]
    ) -> Iterable[tuple[int, str, int]]:
        """(id, ref, number of platform counts, i.e. sightings) of each of these clusters, whose members shown
        by reference are `shown`."""

    @abstractmethod
    def record_read(self, endpoint: str, summaries: list[dict[str, Any]]) -> None:
        """Charge and audit (or audit) a read that showed these clusters (their summaries); raise before
        anything is shown when the read is refused (QuotaExceeded)."""

    def rows(self) -> ActorClusterQuerySet:
        """The clusters with their `added_at`, in the stream's order."""
        return self.clusters().annotate(added_at=self.date_added()).order_by("added_at", "id")

    def clusters_holding(self, object_ids: Iterable[str]) -> list[int]:
        """The ids of the collection's clusters that hold any of these object ids. Object ids are derived, not
        stored: the candidates are computed from the cluster refs and the members shown (two queries), without
        building any cluster's objects."""
        wanted = set(object_ids)
        clusters = self.clusters()
        shown = self.sellers_shown(clusters)
        return [
            pk
            for pk, ref, counts in self.sighting_counts(clusters, shown)
            if wanted & stix.cluster_object_ids(ref, self.viewer, shown.get(pk, []), counts)
        ]


class PartnerCollection(Collection):
    """A partner's clusters: the live clusters that contain its sellers, as the partner API shows them."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner
        self.platform = partner.platform
        self.id = collection_id(self.platform)
        self.viewer = self.platform.slug

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": f"{self.platform.name}: actor clusters",
            "description": (
                "The live actor clusters that contain your sellers: your sellers by reference, other platforms "
                "as counts. Reading objects counts against the key's daily lookup quota (one per cluster)."
            ),
            "can_read": True,
            "can_write": False,
            "media_types": [stix.STIX_MEDIA_TYPE],
        }

    def clusters(self) -> ActorClusterQuerySet:
        return cast(ActorClusterQuerySet, LIVE_CLUSTERS.rows(self.platform.pk))

    def date_added(self) -> Any:
        return F("changed_at")

    def objects_of(self, cluster: ActorCluster) -> list[dict[str, Any]]:
        return stix.cluster_objects(partner_cluster_data(cluster, self.platform), self.platform.stix_tlp)

    def sellers_shown(self, clusters: ActorClusterQuerySet) -> dict[int, list[tuple[str, str]]]:
        own: dict[int, list[tuple[str, str]]] = {}
        members = ClusterMember.objects.filter(cluster__in=clusters, seller__platform=self.platform)
        for cluster_id, seller_ref in members.values_list("cluster_id", "seller__seller_ref"):
            own.setdefault(cluster_id, []).append((self.platform.slug, seller_ref))
        return own

    def sighting_counts(
        self, clusters: ActorClusterQuerySet, shown: dict[int, list[tuple[str, str]]]
    ) -> Iterable[tuple[int, str, int]]:
        # A partner's view counts the other platforms: at most the cluster's platforms (a candidate too many
        # costs nothing, the objects are matched by id once built).
        return clusters.values_list("id", "ref", "platform_count")

    def record_read(self, endpoint: str, summaries: list[dict[str, Any]]) -> None:
        lookups.do_read_clusters(self.partner.api_key, endpoint, summaries)


class AdvisoriesCollection(Collection):
    """The exchange-wide advisories, in full, for exchange analysts: every member by reference and every
    platform by name, marked with the exchange's default TLP. Reads are audited, not metered."""

    id = ADVISORIES_COLLECTION_ID
    viewer = stix.FULL_VIEW
    tlp = stix.DEFAULT_TLP

    def __init__(self, reader: ExchangeReader) -> None:
        self.reader = reader

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": "Exchange advisories",
            "description": (
                "The confirmed cross-platform actor clusters that the exchange's analysts published, in full: "
                "every member by seller reference and platform name. For exchange analysts only."
            ),
            "can_read": True,
            "can_write": False,
            "media_types": [stix.STIX_MEDIA_TYPE],
        }

    def clusters(self) -> ActorClusterQuerySet:
        return ActorCluster.objects.advisories()

    def date_added(self) -> Any:
        # Added when published, and again whenever its membership changes afterwards.
        return Greatest("changed_at", "published_at")

    def objects_of(self, cluster: ActorCluster) -> list[dict[str, Any]]:
        (data,) = full_cluster_data([cluster])
        return stix.cluster_objects(data, self.tlp)

    def sellers_shown(self, clusters: ActorClusterQuerySet) -> dict[int, list[tuple[str, str]]]:
        every: dict[int, list[tuple[str, str]]] = {}
        members = ClusterMember.objects.filter(cluster__in=clusters)
        for cluster_id, slug, seller_ref in members.values_list(
            "cluster_id", "seller__platform__slug", "seller__seller_ref"
        ):
            every.setdefault(cluster_id, []).append((slug, seller_ref))
        return every

    def sighting_counts(
        self, clusters: ActorClusterQuerySet, shown: dict[int, list[tuple[str, str]]]
    ) -> Iterable[tuple[int, str, int]]:
        # The full view shows every member, and one count per platform with a member (full_cluster_data).
        platforms = {pk: len({slug for slug, _ in members}) for pk, members in shown.items()}
        return [(pk, ref, platforms.get(pk, 0)) for pk, ref in clusters.values_list("id", "ref")]

    def record_read(self, endpoint: str, summaries: list[dict[str, Any]]) -> None:
        # Who read which advisories (opaque cluster refs): the exchange's own staff, so nothing is charged.
        AuditEntry.objects.record(
            "advisory_read",
            self.reader.username,
            None,
            endpoint=endpoint,
            key=self.reader.analyst_key.prefix,
            clusters=len(summaries),
            refs=sorted(summary["id"] for summary in summaries),
        )


def collections_of(request: Request) -> list[Collection]:
    """The collections the caller may read: a partner's own, or, for an exchange analyst's key, the
    advisories. Nobody else gets past authentication."""
    caller = request.user
    if isinstance(caller, ExchangeReader):
        return [AdvisoriesCollection(caller)]
    if isinstance(caller, Partner):
        return [PartnerCollection(caller)]
    raise exceptions.NotAuthenticated()  # the permission class makes this unreachable


def collection_of(request: Request, requested_id: str) -> Collection:
    """The caller's collection with this id; a 404 otherwise (no hint whose it is, or whether it exists)."""
    for collection in collections_of(request):
        if collection.id == requested_id:
            return collection
    raise Http404


def api_root_url(request: Request) -> str:
    return request.build_absolute_uri("/taxii2/api1/")


class DiscoveryView(TaxiiView):
    def get(self, request: Request) -> Response:
        root = api_root_url(request)
        return Response(
            {
                "title": "Bad-actor intelligence exchange",
                "description": (
                    "Actor clusters as STIX 2.1 (read-only): each partner platform's own, and the "
                    "exchange-wide advisories for the exchange's analysts."
                ),
                "default": root,
                "api_roots": [root],
            }
        )


class ApiRootView(TaxiiView):
    def get(self, request: Request) -> Response:
        return Response(
            {
                "title": "Actor clusters",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0,
            }
        )


class CollectionsView(TaxiiView):
    def get(self, request: Request) -> Response:
        return Response({"collections": [collection.resource() for collection in collections_of(request)]})


class CollectionView(TaxiiView):
    def get(self, request: Request, collection: str) -> Response:
        return Response(collection_of(request, collection).resource())


@dataclass(frozen=True, slots=True)
class Added:
    """One object of the collection with when it was added."""

    date_added: datetime
    stix: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[Added]
    summaries: list[dict[str, Any]]  # of the clusters whose objects the page shows (what is charged)
    next: str | None


def date_added(moment: datetime) -> str:
    """Microsecond precision: a client passes the last one back as `added_after`, which must be exact."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def query_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise exceptions.ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def query_added_after(request: Request) -> datetime | None:
    raw = request.query_params.get("added_after")
    if raw is None:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise exceptions.ValidationError("added_after must be an RFC 3339 timestamp with a time zone.")
    return moment


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: in the fixed objects (`cluster_id` 0), or in the cluster added at
    `added_at` with `cluster_id`; `skip` objects of it were shown already."""

    added_at: datetime | None
    cluster_id: int
    skip: int

    def encode(self) -> str:
        raw = {
            "t": self.added_at.isoformat() if self.added_at else None,
            "i": self.cluster_id,
            "s": self.skip,
        }
        return cursor_cipher().encrypt(json.dumps(raw).encode()).decode()

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = json.loads(cursor_cipher().decrypt(token.encode()))
            added = datetime.fromisoformat(raw["t"]) if raw["t"] else None
            return cls(added, int(raw["i"]), int(raw["s"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            raise exceptions.ValidationError("next is not a cursor this server issued.") from None


# The types of a cluster's objects (graph/stix.py, cluster_objects); the fixed objects are the others.
CLUSTER_OBJECT_TYPES = frozenset({"threat-actor", "identity", "relationship", "sighting"})
VERSION_KEYWORDS = frozenset({"first", "last", "all"})
_MATCH_PARAMETER = re.compile(r"match\[([^\]]*)\]")
_MATCH_VALUES = {
    "id": re.compile(r"[a-z0-9][a-z0-9-]*--[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    "type": re.compile(r"[a-z0-9][a-z0-9-]*"),
    "spec_version": re.compile(r"[0-9]+\.[0-9]+"),
}
OBJECTS_FILTERS = ("id", "type", "version", "spec_version")
CLUSTER_BATCH = 200  # clusters read from the database at a time while filling a page


@dataclass(frozen=True, slots=True)
class Match:
    """The `match[...]` filters of a request; None: not filtered on that field."""

    ids: frozenset[str] | None = None
    types: frozenset[str] | None = None
    spec_versions: frozenset[str] | None = None
    versions: frozenset[datetime] | None = None  # None also when first, last or all is asked for

    def accepts(self, obj: dict[str, Any]) -> bool:
        return (
            (self.ids is None or obj["id"] in self.ids)
            and (self.types is None or obj["type"] in self.types)
            and (self.spec_versions is None or obj.get("spec_version", "2.0") in self.spec_versions)
            and (self.versions is None or _parse_timestamp(version_of(obj)) in self.versions)
        )

    def may_select_cluster_objects(self) -> bool:
        """False when no object of any cluster can match (the clusters need not be read)."""
        return (self.types is None or bool(self.types & CLUSTER_OBJECT_TYPES)) and (
            self.spec_versions is None or "2.1" in self.spec_versions
        )


def version_of(obj: dict[str, Any]) -> str:
    """An object's version: `modified`, or `created` for objects that are never modified (markings)."""
    return str(obj.get("modified", obj["created"]))


def _parse_timestamp(raw: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def query_match(request: Request, allowed: Iterable[str]) -> Match:
    """The request's `match[...]` filters; a 400 naming the filter for one this endpoint does not take or a
    value it cannot hold."""
    allowed = tuple(allowed)
    supported = ", ".join(f"match[{name}]" for name in allowed) or "no match[...] filter"
    found: dict[str, frozenset[str]] = {}
    for key in request.query_params:
        if not key.startswith("match["):
            continue
        parsed = _MATCH_PARAMETER.fullmatch(key)
        if parsed is None or parsed.group(1) not in allowed:
            raise exceptions.ValidationError(f"{key} is not a filter of this endpoint: it takes {supported}.")
        values = [v.strip() for raw in request.query_params.getlist(key) for v in raw.split(",")]
        values = [value for value in values if value]
        if not values:
            raise exceptions.ValidationError(f"{key} needs at least one value.")
        pattern = _MATCH_VALUES.get(parsed.group(1))
        if pattern is not None and (bad := [v for v in values if not pattern.fullmatch(v)]):
            raise exceptions.ValidationError(f"{key}: {bad[0]!r} is not a STIX {parsed.group(1)}.")
        found[parsed.group(1)] = frozenset(values)
    return Match(
        ids=found.get("id"),
        types=found.get("type"),
        spec_versions=found.get("spec_version"),
        versions=_versions(found["version"]) if "version" in found else None,
    )


def _versions(values: frozenset[str]) -> frozenset[datetime] | None:
    """The timestamps match[version] selects, or None when it names first, last or all: each object has one
    version here, which a keyword selects whatever the timestamps say."""
    moments = [_parse_timestamp(value) for value in values - VERSION_KEYWORDS]
    if None in moments:
        raise exceptions.ValidationError(
            "match[version] takes first, last, all or RFC 3339 timestamps with a time zone."
        )
    return None if values & VERSION_KEYWORDS else frozenset(m for m in moments if m is not None)


def read_page(
    collection: Collection,
    added_after: datetime | None,
    cursor: Cursor | None,
    limit: int,
    match: Match = Match(),
) -> Page:
    """Up to `limit` objects of the collection that `match` accepts, from `cursor` (or the start), added after
    `added_after`; `next` points at the next such object, if there is one."""
    page: list[Added] = []
    summaries: dict[str, dict[str, Any]] = {}
    for position, added, cluster in _stream(collection, added_after, cursor, match):
        if len(page) == limit:
            return Page(page, list(summaries.values()), position.encode())
        page.append(added)
        if cluster is not None and cluster.ref not in summaries:
            summaries[cluster.ref] = cluster.summary()
    return Page(page, list(summaries.values()), None)


def added_at(cluster: ActorCluster) -> datetime:
    """When the cluster's current objects were added to the collection it was read from (`Collection.rows`)."""
    moment: datetime = cluster.added_at  # type: ignore[attr-defined]
    return moment


def _stream(
    collection: Collection, added_after: datetime | None, cursor: Cursor | None, match: Match
) -> Iterator[tuple[Cursor, Added, ActorCluster | None]]:
    """The collection from `cursor` on, lazily: each matching object with where it is in the stream and its
    cluster (None for the fixed objects). Clusters are read in batches and built one at a time, so a page
    reads only the clusters it shows (and the next one that has a matching object, for `next`)."""
    fixed_added = stix.FIXED_OBJECTS_ADDED
    in_clusters = cursor is not None and cursor.added_at is not None
    if not in_clusters and (added_after is None or fixed_added > added_after):
        skip = cursor.skip if cursor else 0
        for index, obj in enumerate(stix.fixed_objects(ALL_TLPS)[skip:], start=skip):
            if match.accepts(obj):
                yield Cursor(None, 0, index), Added(fixed_added, obj), None
    if not match.may_select_cluster_objects():
        return
    clusters = collection.rows()
    # Q objects: the type checker knows the model's fields, not the rows' `added_at` annotation.
    if added_after is not None:
        clusters = clusters.filter(Q(added_at__gt=added_after))
    if in_clusters:
        assert cursor is not None and cursor.added_at is not None
        clusters = clusters.filter(Q(added_at__gte=cursor.added_at)).exclude(
            Q(added_at=cursor.added_at, id__lt=cursor.cluster_id)
        )
    if match.ids is not None:
        clusters = clusters.filter(pk__in=collection.clusters_holding(match.ids))
    start = 0
    while batch := list(clusters[start : start + CLUSTER_BATCH]):
        for cluster in batch:
            added = added_at(cluster)
            skip = 0
            if cursor and cluster.pk == cursor.cluster_id and added == cursor.added_at:
                skip = cursor.skip
            objects = collection.objects_of(cluster)
            for index, obj in enumerate(objects[skip:], start=skip):
                if match.accepts(obj):
                    yield Cursor(added, cluster.pk, index), Added(added, obj), cluster
        start += CLUSTER_BATCH


def _first_last_headers(response: Response, objects: list[Added]) -> Response:
    if objects:
        response["X-TAXII-Date-Added-First"] = date_added(objects[0].date_added)
        response["X-TAXII-Date-Added-Last"] = date_added(objects[-1].date_added)
    return response


class PagedView(TaxiiView):
    """Objects and manifest: the same stream, the same filters, the same paging, the same charge."""

    endpoint = ""

    def read(self, request: Request, collection_id: str) -> Page:
        collection = collection_of(request, collection_id)
        added_after = query_added_after(request)
        limit = query_limit(request)
        match = query_match(request, OBJECTS_FILTERS)
        token = request.query_params.get("next")
        cursor = Cursor.decode(token) if token else None
        page = routers.on_replica(lambda: read_page(collection, added_after, cursor, limit, match))
        # Charged and audited on the primary before anything is shown (QuotaExceeded: a 429).
        collection.record_read(self.endpoint, page.summaries)
        return page

    @staticmethod
    def envelope(page: Page, key: str, items: list[Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"more": page.next is not None}
        if page.next is not None:
            body["next"] = page.next
        if items:
            body[key] = items
        return body


class ObjectsView(PagedView):
    endpoint = "taxii_objects"

    def get(self, request: Request, collection: str) -> Response:
        page = self.read(request, collection)
        body = self.envelope(page, "objects", [added.stix for added in page.objects])
        return _first_last_headers(Response(body), page.objects)


class ManifestView(PagedView):
    endpoint = "taxii_manifest"

    def get(self, request: Request, collection: str) -> Response:
        page = self.read(request, collection)
        records = [
            {
                "id": added.stix["id"],
                "date_added": date_added(added.date_added),
                "version": version_of(added.stix),
                "media_type": stix.STIX_MEDIA_TYPE,
            }
            for added in page.objects
        ]
        return _first_last_headers(Response(self.envelope(page, "objects", records)), page.objects)


def find_object(
    collection: Collection, object_id: str
) -> tuple[datetime, dict[str, Any], ActorCluster | None]:
    """The collection's object with this id (and its cluster), or Http404; only the cluster that holds the
    id is built."""
    for obj in stix.fixed_objects(ALL_TLPS):
        if obj["id"] == object_id:
            return stix.FIXED_OBJECTS_ADDED, obj, None
    for cluster in collection.rows().filter(pk__in=collection.clusters_holding([object_id])):
        for obj in collection.objects_of(cluster):
            if obj["id"] == object_id:
                return added_at(cluster), obj, cluster
    raise Http404


class SingleObjectView(TaxiiView):
    """An object by id and its versions: a 404 when the collection has no such object. Showing that it has
    one is a read of its cluster: charged and audited like the objects page."""

    endpoint = ""
    filters: tuple[str, ...] = ()

    def read(self, request: Request, collection_id: str, object_id: str) -> list[Added]:
        """The object, or nothing when the filters exclude it (its one version, added when its cluster was
        last added)."""
        collection = collection_of(request, collection_id)
        added_after = query_added_after(request)
        query_limit(request)  # one object has one version: any valid limit holds it
        match = query_match(request, self.filters)
        added, obj, cluster = routers.on_replica(lambda: find_object(collection, object_id))
        summaries = [cluster.summary()] if cluster else []
        collection.record_read(self.endpoint, summaries)
        if not match.accepts(obj) or (added_after is not None and added <= added_after):
            return []
        return [Added(added, obj)]


class ObjectView(SingleObjectView):
    """One object by id (its only version), in the TAXII envelope."""

    endpoint = "taxii_object"
    filters = ("version", "spec_version")

    def get(self, request: Request, collection: str, object_id: str) -> Response:
        shown = self.read(request, collection, object_id)
        body: dict[str, Any] = {"more": False}
        if shown:
            body["objects"] = [added.stix for added in shown]
        return _first_last_headers(Response(body), shown)


class VersionsView(SingleObjectView):
    """The versions of an object (TAXII 2.1, 5.8): the one it has."""

    endpoint = "taxii_versions"
    filters = ("spec_version",)

    def get(self, request: Request, collection: str, object_id: str) -> Response:
        shown = self.read(request, collection, object_id)
        body: dict[str, Any] = {"more": False}
        if shown:
            body["versions"] = [version_of(added.stix) for added in shown]
        return _first_last_headers(Response(body), shown)


class UnknownView(TaxiiView):
    """Any other path under /taxii2/ (ending in a slash: Django's APPEND_SLASH still redirects one without to
    the route it names): a TAXII 404, whatever the method, for an authenticated caller."""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise Http404

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise Http404

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise Http404


urlpatterns = [
    path("", DiscoveryView.as_view(), name="taxii-discovery"),
    path("api1/", ApiRootView.as_view(), name="taxii-api-root"),
    path("api1/collections/", CollectionsView.as_view(), name="taxii-collections"),
    path("api1/collections/<str:collection>/", CollectionView.as_view(), name="taxii-collection"),
    path("api1/collections/<str:collection>/objects/", ObjectsView.as_view(), name="taxii-objects"),
    path("api1/collections/<str:collection>/manifest/", ManifestView.as_view(), name="taxii-manifest"),
    path(
        "api1/collections/<str:collection>/objects/<str:object_id>/",
        ObjectView.as_view(),
        name="taxii-object",
    ),
    path(
        "api1/collections/<str:collection>/objects/<str:object_id>/versions/",
        VersionsView.as_view(),
        name="taxii-object-versions",
    ),
    re_path(r"^.+/$", UnknownView.as_view(), name="taxii-unknown"),  # last: anything the routes above miss
]
