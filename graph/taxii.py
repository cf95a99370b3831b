"""TAXII 2.1 (read-only): a partner's actor clusters as STIX 2.1, for threat-intelligence tools.

`/taxii2/` (discovery), one API root `/taxii2/api1/`, and per partner one collection, "clusters", whose id
is derived from the platform: another platform's collection id is a 404, like any other platform's object in
the partner API. Authentication, the `read` scope and the per-key rate are the partner API's (DRF settings);
reading objects (or their manifest) shows clusters, so it is charged to the key's daily lookup quota and
audited by the same function as the cluster endpoints (`lookups.do_read_clusters`).

The collection is a stream ordered by date added: first the exchange's fixed objects (its identity, the
extension definition of its properties, the TLP marking definitions), then each live cluster's objects, added
when its membership last changed (`changed_at`): a cluster that changes is added again, as new versions.
`next` is an encrypted cursor into that stream (like the API's), so paging by `limit` objects is exact.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import InvalidToken
from django.conf import settings
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

from accounts.models import Platform
from exchange import lookups, routers
from exchange.errors import api_exception_handler
from exchange.views import cursor_cipher, partner_of
from graph import stix
from graph.api import LIVE_CLUSTERS
from graph.exports import partner_cluster_data
from graph.models import ActorCluster, ClusterMember

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
    Accept is a 406), TAXII error bodies."""

    required_scope = "read"
    schema = None  # not part of the partner API's OpenAPI document: TAXII is its own specification
    renderer_classes = [TaxiiRenderer]
    content_negotiation_class = TaxiiNegotiation
    parser_classes: list[Any] = []  # nothing is written: collections are read-only (can_write false)

    def get_exception_handler(self) -> Any:
        return taxii_exception_handler


def collection_id(platform: Platform) -> str:
    """The platform's collection id: stable across restarts and servers (derived from the slug)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bad-actor-exchange:taxii:{platform.slug}:clusters"))


def collection_of(request: Request, requested_id: str) -> Platform:
    """The caller's platform if `requested_id` is its collection; a 404 otherwise (no hint whose it is)."""
    platform = partner_of(request).platform
    if requested_id != collection_id(platform):
        raise Http404
    return platform


def api_root_url(request: Request) -> str:
    return request.build_absolute_uri("/taxii2/api1/")


class DiscoveryView(TaxiiView):
    def get(self, request: Request) -> Response:
        root = api_root_url(request)
        return Response(
            {
                "title": "Bad-actor intelligence exchange",
                "description": "Actor clusters as STIX 2.1, per partner platform (read-only).",
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


def collection_resource(platform: Platform) -> dict[str, Any]:
    return {
        "id": collection_id(platform),
        "title": f"{platform.name}: actor clusters",
        "description": (
            "The live actor clusters that contain your sellers: your sellers by reference, other platforms as "
            "counts. Reading objects counts against the key's daily lookup quota (one per cluster)."
        ),
        "can_read": True,
        "can_write": False,
        "media_types": [stix.STIX_MEDIA_TYPE],
    }


class CollectionsView(TaxiiView):
    def get(self, request: Request) -> Response:
        return Response({"collections": [collection_resource(partner_of(request).platform)]})


class CollectionView(TaxiiView):
    def get(self, request: Request, collection: str) -> Response:
        return Response(collection_resource(collection_of(request, collection)))


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
    `changed_at` with `cluster_id`; `skip` objects of it were shown already."""

    changed_at: datetime | None
    cluster_id: int
    skip: int

    def encode(self) -> str:
        raw = {
            "t": self.changed_at.isoformat() if self.changed_at else None,
            "i": self.cluster_id,
            "s": self.skip,
        }
        return cursor_cipher().encrypt(json.dumps(raw).encode()).decode()

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = json.loads(cursor_cipher().decrypt(token.encode()))
            changed_at = datetime.fromisoformat(raw["t"]) if raw["t"] else None
            return cls(changed_at, int(raw["i"]), int(raw["s"]))
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
    platform: Platform,
    added_after: datetime | None,
    cursor: Cursor | None,
    limit: int,
    match: Match = Match(),
) -> Page:
    """Up to `limit` objects of the platform's collection that `match` accepts, from `cursor` (or the start),
    added after `added_after`; `next` points at the next such object, if there is one."""
    page: list[Added] = []
    summaries: dict[str, dict[str, Any]] = {}
    for position, added, cluster in _stream(platform, added_after, cursor, match):
        if len(page) == limit:
            return Page(page, list(summaries.values()), position.encode())
        page.append(added)
        if cluster is not None and cluster.ref not in summaries:
            summaries[cluster.ref] = cluster.summary()
    return Page(page, list(summaries.values()), None)


def _stream(
    platform: Platform, added_after: datetime | None, cursor: Cursor | None, match: Match
) -> Iterator[tuple[Cursor, Added, ActorCluster | None]]:
    """The collection from `cursor` on, lazily: each matching object with where it is in the stream and its
    cluster (None for the fixed objects). Clusters are read in batches and built one at a time, so a page
    reads only the clusters it shows (and the next one that has a matching object, for `next`)."""
    fixed_added = stix.FIXED_OBJECTS_ADDED
    in_clusters = cursor is not None and cursor.changed_at is not None
    if not in_clusters and (added_after is None or fixed_added > added_after):
        skip = cursor.skip if cursor else 0
        for index, obj in enumerate(stix.fixed_objects(ALL_TLPS)[skip:], start=skip):
            if match.accepts(obj):
                yield Cursor(None, 0, index), Added(fixed_added, obj), None
    if not match.may_select_cluster_objects():
        return
    clusters = LIVE_CLUSTERS.rows(platform.pk).order_by("changed_at", "id")
    if added_after is not None:
        clusters = clusters.filter(changed_at__gt=added_after)
    if in_clusters:
        assert cursor is not None and cursor.changed_at is not None
        clusters = clusters.filter(changed_at__gte=cursor.changed_at).exclude(
            changed_at=cursor.changed_at, id__lt=cursor.cluster_id
        )
    if match.ids is not None:
        clusters = clusters.filter(pk__in=_clusters_holding(platform, match.ids))
    start = 0
    while batch := list(clusters[start : start + CLUSTER_BATCH]):
        for cluster in batch:
            skip = 0
            if cursor and cluster.pk == cursor.cluster_id and cluster.changed_at == cursor.changed_at:
                skip = cursor.skip
            objects = _objects_of(cluster, platform)
            for index, obj in enumerate(objects[skip:], start=skip):
                if match.accepts(obj):
                    yield (
                        Cursor(cluster.changed_at, cluster.pk, index),
                        Added(cluster.changed_at, obj),
                        cluster,
                    )
        start += CLUSTER_BATCH


def _objects_of(cluster: ActorCluster, platform: Platform) -> list[dict[str, Any]]:
    return stix.cluster_objects(partner_cluster_data(cluster, platform), platform.stix_tlp)


def _first_last_headers(response: Response, objects: list[Added]) -> Response:
    if objects:
        response["X-TAXII-Date-Added-First"] = date_added(objects[0].date_added)
        response["X-TAXII-Date-Added-Last"] = date_added(objects[-1].date_added)
    return response


class PagedView(TaxiiView):
    """Objects and manifest: the same stream, the same filters, the same paging, the same charge."""

    endpoint = ""

    def read(self, request: Request, collection: str) -> Page:
        platform = collection_of(request, collection)
        added_after = query_added_after(request)
        limit = query_limit(request)
        match = query_match(request, OBJECTS_FILTERS)
        token = request.query_params.get("next")
        cursor = Cursor.decode(token) if token else None
        page = routers.on_replica(lambda: read_page(platform, added_after, cursor, limit, match))
        # Charged and audited on the primary before anything is shown (QuotaExceeded: a 429).
        lookups.do_read_clusters(partner_of(request).api_key, self.endpoint, page.summaries)
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


def _clusters_holding(platform: Platform, object_ids: Iterable[str]) -> list[int]:
    """The ids of the platform's live clusters that hold any of these object ids. Object ids are derived,
    not stored: the candidates are computed from the partner's live cluster refs and own members (two
    queries), without building any cluster's objects."""
    wanted = set(object_ids)
    live = LIVE_CLUSTERS.rows(platform.pk)
    own: dict[int, list[tuple[str, str]]] = {}
    members = ClusterMember.objects.filter(cluster__in=live, seller__platform=platform)
    for cluster_id, seller_ref in members.values_list("cluster_id", "seller__seller_ref"):
        own.setdefault(cluster_id, []).append((platform.slug, seller_ref))
    return [
        pk
        for pk, ref, platforms in live.values_list("id", "ref", "platform_count")
        if wanted & stix.cluster_object_ids(ref, platform.slug, own.get(pk, []), platforms)
    ]


def find_object(platform: Platform, object_id: str) -> tuple[datetime, dict[str, Any], ActorCluster | None]:
    """The collection's object with this id (and its cluster), or Http404; only the cluster that holds the
    id is built."""
    for obj in stix.fixed_objects(ALL_TLPS):
        if obj["id"] == object_id:
            return stix.FIXED_OBJECTS_ADDED, obj, None
    for cluster in ActorCluster.objects.filter(pk__in=_clusters_holding(platform, [object_id])):
        for obj in _objects_of(cluster, platform):
            if obj["id"] == object_id:
                return cluster.changed_at, obj, cluster
    raise Http404


class SingleObjectView(TaxiiView):
    """An object by id and its versions: a 404 when the collection has no such object. Showing that it has
    one is a read of its cluster: charged and audited like the objects page."""

    endpoint = ""
    filters: tuple[str, ...] = ()

    def read(self, request: Request, collection: str, object_id: str) -> list[Added]:
        """The object, or nothing when the filters exclude it (its one version, added when its cluster last
        changed)."""
        platform = collection_of(request, collection)
        added_after = query_added_after(request)
        query_limit(request)  # one object has one version: any valid limit holds it
        match = query_match(request, self.filters)
        added, obj, cluster = routers.on_replica(lambda: find_object(platform, object_id))
        summaries = [cluster.summary()] if cluster else []
        lookups.do_read_clusters(partner_of(request).api_key, self.endpoint, summaries)
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
