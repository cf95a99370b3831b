"""The tenant-isolation matrix: every URL of the project x every role x objects of another platform.

The matrix is generated from the URL configuration (a `get_resolver()` walk), cross-checked against the
OpenAPI schema and the admin registry (`admin.site._registry`). A URL that the tables below do not cover
fails `test_every_url_is_covered_by_the_matrix`: whoever adds an endpoint or a custom admin view must say
here who may reach it.

API roles: the owner's key, the other platform's key (addressing the owner's objects: 404, and no write
lands), no key, a key without scopes, a revoked key and an admin session (the API accepts keys only). TAXII
adds the exchange-wide advisories collection: every partner key gets a 404 on it, and an exchange analyst's
key reads it (the positive control) and nothing of a partner's collection.
Admin roles: a partner analyst on the other platform's objects (changelist without them; their change pages
404; add/delete/history refused), the exchange analyst (the positive control: the same URLs answer 200) and
an anonymous visitor (login redirect). Run with ``-s`` to print the counts.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model, QuerySet
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.actions import do_set_webhook
from accounts.models import AnalystKey, AnalystProfile, ApiKey, AuditEntry, Platform
from exchange.models import Appeal, Indicator, LookupUsage, Seller, Sighting, Submission
from graph import stix
from graph.actions import do_publish_advisory, do_request_cluster_status, do_update_cluster
from graph.models import (
    ActorCluster,
    Approval,
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    Opinion,
    PendingMerge,
)
from graph.taxii import ADVISORIES_COLLECTION_ID, TAXII_MEDIA_TYPE, collection_id
from tests.admin_world import decided_by_two_analysts
from tests.builders import seller, th
from tests.conftest import KeyedPlatform
from tests.reliability.world import World, build_world, scopeless_key

pytestmark = pytest.mark.django_db

# --- the tables: every route of the project, with who may reach it -----------------------------------------

# route -> (method, required scope, path parameter kind)
API_ROUTES: dict[str, tuple[str, str, str | None]] = {
    "api/v1/me/": ("GET", "read", None),
    "api/v1/submissions/": ("POST", "submit", None),
    "api/v1/sellers/": ("GET", "read", None),
    "api/v1/sellers/<seller_ref:seller_ref>/": ("GET", "read", "seller"),
    "api/v1/sellers/<seller_ref:seller_ref>/retract/": ("POST", "submit", "seller"),
    "api/v1/sellers/<seller_ref:seller_ref>/appeals/": ("POST", "submit", "seller"),
    "api/v1/lookups/": ("POST", "lookup", None),
    "api/v1/clusters/": ("GET", "read", None),
    "api/v1/clusters/<cluster_ref:ref>/": ("GET", "read", "cluster"),
    "api/v1/clusters/<cluster_ref:ref>/opinions/": ("POST", "submit", "cluster"),
}
# TAXII 2.1 (graph/taxii.py): all GET with the `read` scope; "collection" routes name the caller's collection.
TAXII_ROUTES: dict[str, str | None] = {
    "taxii2/": None,
    "taxii2/api1/": None,
    "taxii2/api1/collections/": None,
    "taxii2/api1/collections/<str:collection>/": "collection",
    "taxii2/api1/collections/<str:collection>/objects/": "collection",
    "taxii2/api1/collections/<str:collection>/manifest/": "collection",
    # The owner's collection and an object of the owner's own cluster (stix ids are derived: see graph/stix.py).
    "taxii2/api1/collections/<str:collection>/objects/<str:object_id>/": "object",
    "taxii2/api1/collections/<str:collection>/objects/<str:object_id>/versions/": "object",
    # Any other path under /taxii2/ (a path below the owner's object here): a TAXII 404 for every key.
    "taxii2/^.+/$": "unknown",
}
# Public on purpose: they carry no tenant data.
# (/healthz, /readyz and /metrics are answered before the URLconf: exchange/probes.py.)
PUBLIC_ROUTES = {"api/v1/schema/", "api/v1/docs/", "api/v1/hashing-spec/"}
# The admin site's own views (besides the per-model ones generated for every registered ModelAdmin).
ADMIN_SITE_ROUTES = {
    "admin/",
    "admin/login/",
    "admin/second-factor/",  # the login's second step: only for the session's own user, past the password
    "admin/logout/",
    "admin/password_change/",
    "admin/password_change/done/",
    "admin/autocomplete/",
    "admin/jsi18n/",
    "admin/r/<path:content_type_id>/<path:object_id>/",
    "admin/(?P<url>.*)$",
}
ADMIN_MODEL_SUFFIXES = (
    "",
    "add/",
    "<path:object_id>/history/",
    "<path:object_id>/delete/",
    "<path:object_id>/change/",
    "<path:object_id>/",
)
# Extra per-model admin routes: route -> what a partner analyst must get on another platform's object.
ADMIN_EXTRA_ROUTES = {
    "admin/auth/user/<id>/password/": {403},
    # Hash search: POST only, results scoped like the changelist; indicators are the exchange's.
    "admin/graph/actorcluster/hash-search/": {405},
    # The referral package: POST only (a GET is a 405 for everyone), another platform's cluster a 404.
    "admin/graph/actorcluster/<path:object_id>/referral/": {404},
    # The transparency report: no object; a partner analyst gets the consortium's and their own platform's
    # figures only (checked below for canaries; tests/graph/test_transparency_report.py for the figures).
    "admin/graph/actorcluster/transparency/": {200},
    # Publishing an advisory: exchange analysts only; anyone else a 403 before any cluster is looked up.
    "admin/graph/actorcluster/<path:object_id>/advisory/": {403},
    "admin/exchange/indicator/hash-search/": {403},
    # Match thresholds of the similarity kinds (graph.tuning): exchange analysts only.
    "admin/exchange/indicator/match-thresholds/": {403},
    # Time to action: every platform for exchange analysts, the viewer's own only (graph/opinion_admin.py;
    # checked below for canaries, tests/graph/test_opinions_admin.py for the figures).
    "admin/graph/opinion/time-to-action/": {200},
}

# Registered admin models -> the objects that belong to the *other* platform (Bazaar) only. None: the model
# holds no platform data (global configuration); a partner analyst may reach it only with a permission.
OtherPlatformObjects = Callable[[World], QuerySet[Any]] | None
ADMIN_MODELS: dict[str, OtherPlatformObjects] = {
    "auth.user": lambda w: User.objects.filter(analyst__platform=w.bazaar.platform),
    "auth.group": None,
    "accounts.platform": lambda w: Platform.objects.filter(pk=w.bazaar.platform.pk),
    "accounts.apikey": lambda w: ApiKey.objects.filter(platform=w.bazaar.platform),
    "accounts.analystprofile": lambda w: AnalystProfile.objects.filter(platform=w.bazaar.platform),
    "graph.reportdelivery": lambda w: w.bazaar.platform.report_deliveries.all(),
    "graph.webhookdelivery": lambda w: w.bazaar.platform.webhook_deliveries.all(),
    "exchange.seller": lambda w: Seller.objects.filter(platform=w.bazaar.platform),
    "exchange.indicator": lambda w: Indicator.objects.exclude(sightings__seller__platform=w.acme.platform),
    "exchange.sighting": lambda w: Sighting.objects.filter(seller__platform=w.bazaar.platform),
    "exchange.submission": lambda w: Submission.objects.filter(platform=w.bazaar.platform),
    "accounts.auditentry": lambda w: AuditEntry.objects.filter(platform=w.bazaar.platform),
    "exchange.lookupusage": lambda w: LookupUsage.objects.filter(api_key__platform=w.bazaar.platform),
    "exchange.keystate": None,
    "graph.actorcluster": lambda w: ActorCluster.objects.exclude(members__seller__platform=w.acme.platform),
    "graph.clustermember": lambda w: ClusterMember.objects.filter(seller__platform=w.bazaar.platform),
    "graph.clusterevent": lambda w: ClusterEvent.objects.exclude(
        cluster__members__seller__platform=w.acme.platform
    ),
    "graph.indicatoroverride": lambda w: _overrides_of_bazaar_only_indicators(w),
    "graph.pendingmerge": lambda w: PendingMerge.objects.all(),  # exchange analysts only
    "graph.approval": lambda w: Approval.objects.all(),  # exchange analysts only (four-eyes review)
    "exchange.appeal": lambda w: Appeal.objects.filter(seller__platform=w.bazaar.platform),
    "graph.opinion": lambda w: Opinion.objects.filter(platform=w.bazaar.platform),
    "procrastinate.procrastinatejob": None,
    "procrastinate.procrastinateevent": None,
    "procrastinate.procrastinateperiodicdefer": None,
    "procrastinate.procrastinateworker": None,
}


OVERRIDE_MODEL = ("graph", "IndicatorOverride")  # looked up lazily: it may not exist yet in every checkout


def _overrides_of_bazaar_only_indicators(w: World) -> QuerySet[Any]:
    from django.apps import apps

    model = apps.get_model(*OVERRIDE_MODEL)
    return model.objects.exclude(indicator__sightings__seller__platform=w.acme.platform)


# --- walking the URL configuration --------------------------------------------------------------------------


def routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[str]:
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern)


def registered_models() -> dict[str, type[Model]]:
    return {model._meta.label_lower: model for model in admin.site._registry}


def test_every_url_is_covered_by_the_matrix():
    models = registered_models()
    admin_model_routes = {
        f"admin/{m._meta.app_label}/{m._meta.model_name}/{suffix}"
        for m in models.values()
        for suffix in ADMIN_MODEL_SUFFIXES
    }
    known = (
        set(API_ROUTES)
        | set(TAXII_ROUTES)
        | PUBLIC_ROUTES
        | ADMIN_SITE_ROUTES
        | admin_model_routes
        | set(ADMIN_EXTRA_ROUTES)
    )
    uncovered = [
        route for route in routes() if route not in known and not route.startswith("admin/^(?P<app_label>")
    ]
    assert not uncovered, f"new URL(s) not in the isolation matrix, add them to its tables: {uncovered}"
    unknown_models = sorted(set(models) - set(ADMIN_MODELS))
    assert not unknown_models, f"admin models without an ownership rule in ADMIN_MODELS: {unknown_models}"


def test_schema_paths_are_exactly_the_api_routes():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = {path.strip("/") + "/" for path in schema["paths"]}
    assert documented == {re.sub(r"<\w+:(\w+)>", r"{\1}", route) for route in API_ROUTES}


# --- the API matrix -----------------------------------------------------------------------------------------

COUNTS: Counter[str] = Counter()


@pytest.fixture
def world(acme, bazaar, alice, settings) -> World:
    # Both platforms have a webhook (never called): their events are in the outbox the admin shows.
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    for platform in (acme, bazaar):
        do_set_webhook(platform.platform, f"https://127.0.0.1:9/{platform.platform.slug}", "test")
    w = build_world(acme, bazaar)
    # Audit entries, lookup usage, an appeal and a report delivery for both platforms, so every admin model
    # has rows.
    for platform in (acme, bazaar):
        platform.client().post(
            "/api/v1/lookups/",
            {"indicators": [{"kind": "email", "hash": th("email", "x@y.z")}]},
            format="json",
        )
        platform.client().get(f"/api/v1/clusters/{w.shared_cluster}/")
        # An opinion of each on the shared cluster, with a note no other platform may ever read.
        opinion = {"opinion": "seen_too", "note": f"{platform.platform.slug}-private-note"}
        response = platform.client().post(
            f"/api/v1/clusters/{w.shared_cluster}/opinions/", opinion, format="json"
        )
        assert response.status_code == 201, response.content
        solo = "acme-solo" if platform is acme else "baz-solo"
        appeal = {
            "outcome": "rejected",
            "documents": [{"sha256": hashlib.sha256(solo.encode()).hexdigest(), "falsified": True}],
        }
        assert (
            platform.client().post(f"/api/v1/sellers/{solo}/appeals/", appeal, format="json").status_code
            == 201
        )
    # A pending four-eyes approval of the Bazaar-only cluster.
    bazaar_only = ActorCluster.objects.get(ref=w.bazaar_cluster)
    do_update_cluster(bazaar_only, "alice", {"status": "investigating"})
    do_request_cluster_status(bazaar_only, alice, "confirmed")
    # The shared cluster is an exchange-wide advisory: the advisories collection has something to keep apart.
    shared = ActorCluster.objects.get(ref=w.shared_cluster)
    do_update_cluster(shared, "matrix", {"status": ClusterStatus.INVESTIGATING})
    decided_by_two_analysts(shared, ClusterStatus.CONFIRMED)  # four-eyes review
    do_publish_advisory(shared, "matrix")
    return w


def snapshot(platform: Platform) -> list[tuple[Any, ...]]:
    """Everything of a platform's reports (and its sellers' appeals) that another platform must never change."""
    sellers = Seller.objects.filter(platform=platform).order_by("seller_ref")
    return [
        *sellers.values_list(
            "seller_ref",
            "status",
            "reason_codes",
            "reported_at",
            "expires_at",
            "retracted_at",
            "retracted_by",
        ),
        *Sighting.objects.filter(seller__platform=platform)
        .order_by("seller__seller_ref", "indicator_id")
        .values_list("seller__seller_ref", "indicator_id", "first_seen", "last_seen"),
        *ClusterMember.objects.filter(seller__platform=platform)
        .order_by("seller__seller_ref")
        .values_list("seller__seller_ref", "cluster__ref"),
        # Opinions on the platform's clusters: another platform's key gives none there.
        *Opinion.objects.filter(cluster__members__seller__platform=platform)
        .distinct()
        .order_by("pk")
        .values_list("pk", "platform_id", "kind", "cluster__ref"),
        *Appeal.objects.filter(seller__platform=platform)
        .order_by("seller__seller_ref")
        .values_list("seller__seller_ref", "outcome", "note", "needs_attention", "updated_at"),
    ]


def url_for(route: str, value: str | None) -> str:
    return "/" + re.sub(r"<\w+:\w+>", value or "", route)


def request(client: APIClient, method: str, url: str, body: Any = None) -> Any:
    COUNTS["api requests"] += 1
    if method == "GET":
        return client.get(url)
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"matrix-{COUNTS['api requests']}")


def body_for(route: str, refs: list[str]) -> Any:
    if route.endswith("submissions/"):
        # The other platform reports sellers under the owner's references: its own, separate sellers.
        return {"sellers": [seller(ref, ("email", "ring@example.com"), status="suspected") for ref in refs]}
    if route.endswith("retract/"):
        return {"reason": "matrix"}
    if route.endswith("appeals/"):
        return {"outcome": "pending", "note": "matrix"}
    if route.endswith("opinions/"):
        return {"opinion": "seen_too", "note": "matrix"}
    if route.endswith("lookups/"):
        values = [("email", "ring@example.com"), ("tax_id", "DE123456789"), ("email", "solo@acme.example")]
        return {"indicators": [{"kind": k, "hash": th(k, v)} for k, v in values]}
    return None


def addressable(world: World, owner: KeyedPlatform, kind: str | None) -> list[str | None]:
    if kind == "seller":
        return list(world.refs(owner))
    if kind == "cluster":
        own = world.acme_cluster if owner is world.acme else world.bazaar_cluster
        return [own]
    return [None]


def canaries(world: World, owner: KeyedPlatform) -> list[str]:
    """Strings of the owner's that no other platform may ever read."""
    own_cluster = world.acme_cluster if owner is world.acme else world.bazaar_cluster
    note = f"{owner.platform.slug}-private-note"  # its opinion's note (the `world` fixture)
    return [*world.refs(owner), own_cluster, owner.secret, owner.key.prefix, note]


@pytest.mark.parametrize("route", sorted(API_ROUTES))
def test_api_route_keeps_tenants_apart(route, world, bob, client):
    method, _scope, kind = API_ROUTES[route]
    for owner, other in ((world.acme, world.bazaar), (world.bazaar, world.acme)):
        before = snapshot(owner.platform)
        targets = addressable(world, owner, kind)
        secrets = canaries(world, owner)
        if route.endswith("lookups/"):  # by design a lookup names the opaque cluster reference of a match
            secrets = [s for s in secrets if not s.startswith("ac_")]

        # The other platform's full key, on every one of the owner's objects.
        for target in targets:
            response = request(
                other.client(), method, url_for(route, target), body_for(route, world.refs(owner))
            )
            COUNTS["api: other platform"] += 1
            if kind:
                assert response.status_code == 404, (route, target, response.status_code)
                assert response.json()["error"]["code"] == "not_found"
            else:
                assert response.status_code in {200, 201}, (route, response.status_code, response.content)
            body = response.content.decode()
            leaked = [s for s in secrets if s in body and s not in str(body_for(route, world.refs(owner)))]
            assert not leaked, (route, leaked)
        assert snapshot(owner.platform) == before, (
            f"{route}: another platform changed {owner.platform}'s data"
        )

        # Callers without a usable key.
        revoked_key, revoked = ApiKey.generate(owner.platform, ["submit", "lookup", "read"])
        revoked_key.revoke()
        session = APIClient()
        session.force_login(bob)
        callers = {
            "no key": (APIClient(), 401),
            "revoked key": (_keyed(revoked), 401),
            "key without scopes": (_keyed(scopeless_key(owner)), 403),
            "admin session": (session, 401),
        }
        for role, (client_, expected) in callers.items():
            for target in targets:
                response = request(client_, method, url_for(route, target), body_for(route, ["x-1"]))
                COUNTS[f"api: {role}"] += 1
                assert response.status_code == expected, (role, route, response.status_code)
                assert set(response.json()) == {"error"}
        assert snapshot(owner.platform) == before

        # The owner itself reaches its objects (the positive control: the URLs above were right).
        for target in targets:
            response = request(owner.client(), method, url_for(route, target), body_for(route, ["own-1"]))
            COUNTS["api: owner"] += 1
            assert response.status_code in {200, 201}, (route, target, response.status_code)
    COUNTS["api routes"] += 1


def _keyed(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.mark.parametrize("route", sorted(TAXII_ROUTES))
def test_taxii_route_keeps_tenants_apart(route, world, alice, bob):
    """The other platform's key on the owner's collection is a 404 and its own collections hold none of the
    owner's strings; callers without a usable key get TAXII errors (401, 403)."""
    accept: dict[str, Any] = {"HTTP_ACCEPT": TAXII_MEDIA_TYPE}
    for owner, other in ((world.acme, world.bazaar), (world.bazaar, world.acme)):
        secrets = [*canaries(world, owner), owner.platform.name]
        shared_ok = [world.shared_cluster]  # both platforms have sellers in it: each may see its reference
        secrets = [s for s in secrets if s not in shared_ok]
        owner_url = taxii_url(route, owner, world)
        other_url = taxii_url(route, other, world)
        # What the route answers its owner: 200, or a 404 for every caller on an unknown path.
        answer = 404 if TAXII_ROUTES[route] == "unknown" else 200
        response = other.client().get(owner_url, **accept)
        COUNTS["taxii: other platform"] += 1
        assert response.status_code == (404 if TAXII_ROUTES[route] else 200), (route, response.status_code)
        assert response.json().get("http_status", "200") == str(response.status_code)
        own_view = other.client().get(other_url, **accept)
        assert own_view.status_code == answer, (route, own_view.status_code)
        for body in (response.content.decode(), own_view.content.decode()):
            leaked = [s for s in secrets if s in body]
            assert not leaked, (route, leaked)
        session = APIClient()
        session.force_login(bob)
        callers = {
            "no key": (APIClient(), 401),
            "key without scopes": (_keyed(scopeless_key(owner)), 403),
            "admin session": (session, 401),
        }
        for role, (client_, expected) in callers.items():
            response = client_.get(owner_url, **accept)
            COUNTS[f"taxii: {role}"] += 1
            assert response.status_code == expected, (role, route, response.status_code)
            assert response.json()["http_status"] == str(expected)
        assert owner.client().get(owner_url, **accept).status_code == answer  # the positive control
    _check_advisories(route, world, alice)


def _check_advisories(route: str, world: World, alice: User) -> None:
    """Partner keys never reach the exchange-wide advisories collection (404 on its id, absent from their
    collections list); an exchange analyst's key reads it and none of a partner's collections."""
    accept: dict[str, Any] = {"HTTP_ACCEPT": TAXII_MEDIA_TYPE}
    advisories_url = taxii_url(route, world.acme, world, collection=ADVISORIES_COLLECTION_ID)
    analyst = _keyed(AnalystKey.generate(alice)[1])
    kind = TAXII_ROUTES[route]
    for partner in (world.acme, world.bazaar):
        response = partner.client().get(advisories_url, **accept)
        COUNTS["taxii: partner key on the advisories"] += 1
        assert response.status_code == (404 if kind else 200), (route, response.status_code)
        assert ADVISORIES_COLLECTION_ID not in response.content.decode(), route
        # An exchange analyst's key on the partner's own collection.
        response = analyst.get(taxii_url(route, partner, world), **accept)
        COUNTS["taxii: analyst key on a partner collection"] += 1
        assert response.status_code == (404 if kind else 200), (route, response.status_code)
        assert collection_id(partner.platform) not in response.content.decode(), route
    response = analyst.get(advisories_url, **accept)  # the positive control: the URL is right
    assert response.status_code == (404 if kind == "unknown" else 200), (route, response.status_code)
    if route.endswith("collections/"):
        assert [c["id"] for c in response.json()["collections"]] == [ADVISORIES_COLLECTION_ID]


def taxii_url(route: str, owner: KeyedPlatform, world: World, collection: str | None = None) -> str:
    """The route filled with the owner's collection id (and the threat-actor of its own cluster); for the
    catch-all, a path below that object that no route names."""
    own_cluster = world.acme_cluster if owner is world.acme else world.bazaar_cluster
    if TAXII_ROUTES[route] == "unknown":
        route = "taxii2/api1/collections/<str:collection>/objects/<str:object_id>/no-such-endpoint/"
    if collection is not None:  # the advisories: the shared cluster is published
        own_cluster = world.shared_cluster
    url = route.replace("<str:collection>", collection or collection_id(owner.platform))
    return "/" + url.replace("<str:object_id>", stix.threat_actor_id(own_cluster))


def test_scopes_are_enforced_per_route(world):
    for route, (method, scope, kind) in API_ROUTES.items():
        target = addressable(world, world.acme, kind)[0]
        for held in ("submit", "lookup", "read"):
            _, secret = ApiKey.generate(world.acme.platform, [held])
            response = request(_keyed(secret), method, url_for(route, target), body_for(route, ["scoped-1"]))
            COUNTS["api: single-scope keys"] += 1
            if held == scope:
                assert response.status_code in {200, 201}, (route, held, response.status_code)
            else:
                assert response.status_code == 403, (route, held, response.status_code)


# --- the admin matrix ---------------------------------------------------------------------------------------


def login(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def admin_get(client: Client, url: str) -> Any:
    COUNTS["admin requests"] += 1
    return client.get(url)


def assert_no_canaries(response: Any, secrets: list[str], where: str) -> None:
    body = response.content.decode(errors="replace")
    leaked = [s for s in secrets if s in body]
    assert not leaked, f"{where}: partner analyst sees another platform's {leaked}"


def test_admin_keeps_partner_analysts_to_their_platform(world, alice, bob, carol):
    secrets = [
        *world.refs(world.bazaar),
        world.bazaar_cluster,
        world.bazaar.key.prefix,
        "bazaar-private-note",
    ]
    anonymous = login(None)
    partner, exchange = login(bob), login(alice)
    for label, other_objects in ADMIN_MODELS.items():
        model = registered_models().get(label)
        if model is None:
            continue
        COUNTS["admin models"] += 1
        info = (model._meta.app_label, model._meta.model_name)
        can_view = bob.has_perm(f"{info[0]}.view_{info[1]}") or bob.has_perm(f"{info[0]}.change_{info[1]}")
        can_add = bob.has_perm(f"{info[0]}.add_{info[1]}")

        changelist = reverse("admin:{}_{}_changelist".format(*info))
        response = admin_get(partner, changelist)
        assert response.status_code == (200 if can_view else 403), (changelist, response.status_code)
        assert_no_canaries(response, secrets, changelist)
        add = reverse("admin:{}_{}_add".format(*info))
        assert admin_get(partner, add).status_code == (200 if can_add else 403), add
        for url in (changelist, add):
            response = admin_get(anonymous, url)
            assert response.status_code == 302 and "/admin/login/" in response["Location"], url

        objects = list(other_objects(world)) if other_objects else list(model._default_manager.all()[:1])
        assert objects or other_objects is None or label in OPTIONAL_ROWS, (
            f"the test world has no {label} rows"
        )
        for obj in objects:
            COUNTS["admin foreign objects"] += 1
            pk = str(obj.pk)
            change = reverse("admin:{}_{}_change".format(*info), args=[pk])
            delete = reverse("admin:{}_{}_delete".format(*info), args=[pk])
            history = reverse("admin:{}_{}_history".format(*info), args=[pk])
            # The exchange analyst reaches the same pages (the URLs are right, the objects exist).
            alice_can = alice.has_perm(f"{info[0]}.view_{info[1]}")
            assert admin_get(exchange, change).status_code == (200 if alice_can else 403), change

            response = admin_get(partner, change)
            if other_objects is None:  # global configuration: reachable only with a permission
                assert response.status_code == (200 if can_view else 403), (change, response.status_code)
                continue
            expected = {404} if can_view else {403, 404}
            assert response.status_code in expected, (change, response.status_code)
            COUNTS["admin change pages refused"] += 1
            if label == "graph.actorcluster":
                _check_referral_package(partner, exchange, anonymous, obj, secrets)
                _check_advisory_action(partner, exchange, anonymous, obj, secrets)
            for url in (delete, history):
                response = admin_get(partner, url)
                assert response.status_code in {302, 403, 404}, (url, response.status_code)
                if response.status_code == 302:
                    assert pk not in response["Location"], url
                assert_no_canaries(response, secrets, url)
            for url in (change, delete, history):
                response = admin_get(anonymous, url)
                assert response.status_code == 302 and "/admin/login/" in response["Location"], url

    # The admin site's own pages, the transparency report (HTML and CSV) of this year, the time to action.
    year = timezone.now().year
    transparency = reverse("admin:graph_transparency_report")
    for url in (
        "/admin/",
        "/admin/jsi18n/",
        "/admin/password_change/",
        f"{transparency}?period={year}",
        f"{transparency}?period={year}&format=csv",
        reverse("admin:graph_opinion_time_to_action"),
    ):
        response = admin_get(partner, url)
        assert response.status_code == 200, url
        assert_no_canaries(response, secrets, url)
    assert admin_get(partner, "/admin/no-such-page/").status_code == 404
    seller_ct = _content_type_id(Seller)
    for obj in Seller.objects.filter(platform=world.bazaar.platform):
        assert admin_get(partner, f"/admin/r/{seller_ct}/{obj.pk}/").status_code == 404
    for url in ("/admin/", f"/admin/auth/user/{bob.pk}/password/"):
        assert admin_get(anonymous, url).status_code == 302
    assert admin_get(partner, f"/admin/auth/user/{carol.pk}/password/").status_code == 403
    _check_autocomplete(partner, secrets)
    _check_app_indexes(partner, secrets)


def _check_referral_package(
    partner: Client, exchange: Client, anonymous: Client, cluster: Any, secrets: list[str]
) -> None:
    """Another platform's cluster has no referral package for a partner analyst, by reference or by id."""
    for ident in (cluster.ref, str(cluster.pk)):
        url = reverse("admin:graph_actorcluster_referral", args=[ident])
        response = partner.post(url)
        assert response.status_code == 404, (url, response.status_code)
        assert_no_canaries(response, secrets, url)
        response = anonymous.post(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    COUNTS["admin referral packages refused"] += 1
    url = reverse("admin:graph_actorcluster_referral", args=[cluster.pk])
    assert exchange.post(url)["Content-Type"] == "application/zip", url  # the URL is right


def _check_advisory_action(
    partner: Client, exchange: Client, anonymous: Client, cluster: Any, secrets: list[str]
) -> None:
    """A partner analyst cannot publish or withdraw another platform's cluster (nor any): a 403, by reference
    or by id, and nothing changes."""
    before = ActorCluster.objects.get(pk=cluster.pk).published_at
    for ident in (cluster.ref, str(cluster.pk)):
        url = reverse("admin:graph_actorcluster_advisory", args=[ident])
        for decision in ("publish", "withdraw"):
            response = partner.post(url, {"advisory": decision})
            assert response.status_code == 403, (url, response.status_code)
            assert_no_canaries(response, secrets, url)
        response = anonymous.post(url, {"advisory": "publish"})
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    assert ActorCluster.objects.get(pk=cluster.pk).published_at == before
    COUNTS["admin advisory actions refused"] += 1
    url = reverse("admin:graph_actorcluster_advisory", args=[cluster.pk])
    change = reverse("admin:graph_actorcluster_change", args=[cluster.pk])
    assert exchange.post(url, {"advisory": "withdraw"})["Location"] == change  # the URL is right


OPTIONAL_ROWS = {
    "exchange.keystate",
    "graph.indicatoroverride",
    "graph.pendingmerge",
    "graph.reportdelivery",
    "auth.user",
}


def _content_type_id(model: type[Model]) -> int:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(model).pk


def _check_autocomplete(partner: Client, secrets: list[str]) -> None:
    """Every autocomplete field of every admin, asked for everything: only the analyst's own platform."""
    for model, model_admin in admin.site._registry.items():
        for field_name in model_admin.get_autocomplete_fields(None):  # type: ignore[arg-type]
            params = {
                "app_label": model._meta.app_label,
                "model_name": str(model._meta.model_name),
                "field_name": field_name,
                "term": "",
            }
            response = partner.get("/admin/autocomplete/", params)
            COUNTS["admin requests"] += 1
            assert response.status_code in {200, 403}, (model, field_name)
            assert_no_canaries(response, secrets, f"autocomplete {model._meta.label}.{field_name}")


def _check_app_indexes(partner: Client, secrets: list[str]) -> None:
    for app_label in {m._meta.app_label for m in admin.site._registry}:
        response = admin_get(partner, f"/admin/{app_label}/")
        assert response.status_code in {200, 404}, app_label
        assert_no_canaries(response, secrets, f"/admin/{app_label}/")


def teardown_module() -> None:
    print(f"\nisolation matrix: {dict(sorted(COUNTS.items()))}")
