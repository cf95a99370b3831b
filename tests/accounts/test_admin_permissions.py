"""Who may reach which admin page and action: exchange analyst, partner analyst, a staff account without an
analyst profile (deny by default), a superuser and an anonymous visitor; including direct URLs to another
platform's objects, which a partner analyst gets as 404 (the object does not exist for them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import AnalystProfile, ApiKey, AuditEntry, Platform
from exchange.models import Indicator, Linking, Seller, Submission
from graph.models import ActorCluster
from tests.admin_world import AdminWorld, build, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme, bazaar, bob, carol) -> AdminWorld:
    w = build(acme, bazaar)
    AuditEntry.objects.record("cluster_viewed", "carol", bazaar.platform, "cluster", str(w.bazaar_only.pk))
    return w


# model admin -> (objects of Bazaar only, objects of Acme) in the world
Objects = Callable[[AdminWorld], Any]
MODELS: dict[str, tuple[Objects, Objects]] = {
    "graph/actorcluster": (lambda w: w.bazaar_only, lambda w: w.ring),
    "exchange/seller": (
        lambda w: Seller.objects.get(seller_ref="baz-1"),
        lambda w: Seller.objects.get(seller_ref="acme-1"),
    ),
    "exchange/indicator": (
        lambda w: Indicator.objects.get(kind="store_name"),
        lambda w: Indicator.objects.get(kind="bank_account"),
    ),
    "exchange/submission": (
        lambda w: Submission.objects.get(platform=w.bazaar.platform),
        lambda w: Submission.objects.get(platform=w.acme.platform),
    ),
    "accounts/auditentry": (
        lambda w: AuditEntry.objects.filter(platform=w.bazaar.platform).first(),
        lambda w: AuditEntry.objects.record(
            "cluster_viewed", "bob", w.acme.platform, "cluster", str(w.ring.pk)
        ),
    ),
    "accounts/platform": (lambda w: w.bazaar.platform, lambda w: w.acme.platform),
    "accounts/apikey": (lambda w: w.bazaar.key, lambda w: w.acme.key),
    "accounts/analystprofile": (
        lambda w: AnalystProfile.objects.get(user__username="carol"),
        lambda w: AnalystProfile.objects.get(user__username="bob"),
    ),
}
# What the partner analyst may view (their own platform's rows only).
PARTNER_VIEWS = {"graph/actorcluster", "exchange/seller"}


def status(client: Client, url: str, method: str = "get", data: Any = None) -> int:
    return getattr(client, method)(url, data or {}).status_code


@pytest.mark.parametrize("model", sorted(MODELS))
def test_exchange_analyst_reaches_every_page(model, world, alice):
    client = logged_in(alice)
    expected = 403 if model == "accounts/analystprofile" else 200  # analyst accounts: superusers only
    assert status(client, f"/admin/{model}/") == expected
    for obj in (MODELS[model][0](world), MODELS[model][1](world)):
        assert status(client, f"/admin/{model}/{obj.pk}/change/") == expected, model
        assert status(client, f"/admin/{model}/{obj.pk}/history/") == expected, model


@pytest.mark.parametrize("model", sorted(MODELS))
def test_superuser_is_an_exchange_analyst(model, world, root):
    client = logged_in(root)
    assert status(client, f"/admin/{model}/") == 200
    obj = MODELS[model][0](world)
    assert status(client, f"/admin/{model}/{obj.pk}/change/") == 200


@pytest.mark.parametrize("model", sorted(MODELS))
def test_partner_analyst_gets_404_for_another_platforms_objects(model, world, bob):
    client = logged_in(bob)
    other = MODELS[model][0](world)
    for suffix in ("change/", "history/"):
        assert status(client, f"/admin/{model}/{other.pk}/{suffix}") == 404, (model, suffix)
    assert status(client, f"/admin/{model}/{other.pk}/change/", "post", {"status": "dismissed"}) == 404
    assert status(client, f"/admin/{model}/{other.pk}/delete/") in {403, 404}
    assert status(client, f"/admin/{model}/{other.pk}/delete/", "post", {"post": "yes"}) in {403, 404}
    assert type(other).objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_partner_analyst_reaches_only_their_own_views(model, world, bob):
    client = logged_in(bob)
    own = MODELS[model][1](world)
    if model in PARTNER_VIEWS:
        assert status(client, f"/admin/{model}/") == 200
        # Partner analysts open clusters by opaque reference only.
        own_id = own.ref if model == "graph/actorcluster" else own.pk
        assert status(client, f"/admin/{model}/{own_id}/change/") == 200
    else:
        assert status(client, f"/admin/{model}/") == 403
        # Their own platform's rows of a model they have no permission on: still not theirs to open.
        assert status(client, f"/admin/{model}/{own.pk}/change/") in {403, 404}
    assert status(client, f"/admin/{model}/add/") == 403


def test_partner_cluster_list_holds_only_clusters_with_their_sellers(world, bob):
    html = logged_in(bob).get("/admin/graph/actorcluster/", {"state": "all"}).content.decode()
    assert f"/admin/graph/actorcluster/{world.ring.ref}/change/" in html
    assert f"/admin/graph/actorcluster/{world.acme_only.ref}/change/" in html
    assert f"/admin/graph/actorcluster/{world.bazaar_only.pk}/change/" not in html
    assert world.bazaar_only.ref not in html
    assert "Bazaar North" not in html and "baz-" not in html


def test_partner_seller_list_holds_only_their_sellers(world, bob):
    html = logged_in(bob).get("/admin/exchange/seller/").content.decode()
    assert "acme-1" in html and "baz-" not in html
    assert "/admin/exchange/seller/?platform" not in html  # no platform filter naming others


def test_partner_cannot_change_a_cluster_they_can_see(world, bob):
    data = {"status": "dismissed", "notes": "mine now"}
    assert status(logged_in(bob), f"/admin/graph/actorcluster/{world.ring.ref}/change/", "post", data) == 403
    world.ring.refresh_from_db()
    assert (world.ring.status, world.ring.notes) == ("new", "")


def test_partner_cannot_override_indicators_or_manage_keys_and_platforms(world, bob):
    client = logged_in(bob)
    email = Indicator.objects.get(kind="email", sightings__seller__seller_ref="acme-1")
    data = {"linking": "common", "linking_reason": "x"}
    assert status(client, f"/admin/exchange/indicator/{email.pk}/change/", "post", data) in {403, 404}
    email.refresh_from_db()
    assert email.linking == Linking.AUTO
    revoke = {"action": "revoke", "_selected_action": [world.acme.key.pk]}
    assert status(client, "/admin/accounts/apikey/", "post", revoke) == 403
    world.acme.key.refresh_from_db()
    assert not world.acme.key.is_revoked
    key_data = {"platform": world.acme.platform.pk, "name": "sneaky", "scope_read": "on"}
    assert status(client, "/admin/accounts/apikey/add/", "post", key_data) == 403
    assert not ApiKey.objects.filter(name="sneaky").exists()
    platform_data = {"name": "Renamed", "slug": "acme", "report_cadence": "daily"}
    assert status(
        client, f"/admin/accounts/platform/{world.acme.platform.pk}/change/", "post", platform_data
    ) in {
        403,
        404,
    }
    assert Platform.objects.get(pk=world.acme.platform.pk).name == "Acme Market"


def test_partner_admin_index_lists_only_what_they_may_open(world, bob):
    html = logged_in(bob).get("/admin/").content.decode()
    assert "/admin/graph/actorcluster/" in html and "/admin/exchange/seller/" in html
    for hidden in ("indicator", "apikey", "platform", "auditentry", "submission", "reportdelivery"):
        assert f"/{hidden}/" not in html, hidden


@pytest.mark.parametrize("model", sorted(MODELS))
def test_staff_without_an_analyst_profile_sees_nothing(model, world, dave):
    client = logged_in(dave)
    assert status(client, f"/admin/{model}/") == 403
    obj = MODELS[model][0](world)
    assert status(client, f"/admin/{model}/{obj.pk}/change/") in {403, 404}
    html = client.get("/admin/").content.decode()
    assert f"/admin/{model}/" not in html


def test_exchange_actions_are_refused_to_staff_without_a_profile(world, dave):
    client = logged_in(dave)
    data = {"status": "investigating", "assignee": "", "notes": ""}
    assert status(client, f"/admin/graph/actorcluster/{world.ring.pk}/change/", "post", data) in {403, 404}
    revoke = {"action": "revoke", "_selected_action": [world.acme.key.pk]}
    assert status(client, "/admin/accounts/apikey/", "post", revoke) == 403
    world.acme.key.refresh_from_db()
    assert not world.acme.key.is_revoked


@pytest.mark.parametrize("model", sorted(MODELS))
def test_anonymous_visitors_are_sent_to_the_login(model, world):
    client = Client()
    obj = MODELS[model][0](world)
    for url in (f"/admin/{model}/", f"/admin/{model}/{obj.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_nobody_adds_or_deletes_clusters_sellers_or_audit_entries(world, alice, root):
    for user in (alice, root):
        client = logged_in(user)
        for model, obj in (
            ("graph/actorcluster", world.ring),
            ("exchange/seller", Seller.objects.get(seller_ref="acme-1")),
            ("accounts/auditentry", AuditEntry.objects.order_by("pk").first()),
        ):
            assert obj is not None
            assert status(client, f"/admin/{model}/add/") == 403
            assert status(client, f"/admin/{model}/{obj.pk}/delete/") == 403
    assert ActorCluster.objects.filter(pk=world.ring.pk).exists()


def test_admin_pages_offer_no_view_site_link_to_a_page_that_does_not_exist(world, alice, bob):
    """Issue 19, item 8: "View site" went to "/", a 404; the admin is the analysts' site."""
    for user in (alice, bob):
        html = logged_in(user).get("/admin/").content.decode()
        assert "View site" not in html
    assert Client().get("/").status_code == 404
