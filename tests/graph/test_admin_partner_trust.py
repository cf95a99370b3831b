"""Issue 12 in the admin: what a partner analyst must not read (items 1 and 6), and hash search that never puts a
transport hash in a URL and is metered for partners (item 2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from accounts.models import AuditEntry
from exchange.lookups import QuotaExceeded, charge_platform_quota
from exchange.models import AnalystLookupUsage, Indicator, Seller
from graph.models import ActorCluster
from tests.admin_world import AdminWorld, build, logged_in
from tests.builders import th

pytestmark = pytest.mark.django_db

CLUSTERS = "/admin/graph/actorcluster/"
HASH_SEARCH = f"{CLUSTERS}hash-search/"
INDICATOR_HASH_SEARCH = "/admin/exchange/indicator/hash-search/"
SECRET_NOTES = "Suspect: baz-1 runs the ring"


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    return build(acme, bazaar)


@pytest.fixture
def annotated(world, alice) -> AdminWorld:
    """The ring carries exchange-only notes and an assignee."""
    ActorCluster.objects.filter(pk=world.ring.pk).update(notes=SECRET_NOTES, assignee=alice)
    return world


def body(response: Any) -> str:
    return response.content.decode()


def listed_refs(html: str) -> list[str]:
    return re.findall(r'href="/admin/graph/actorcluster/(ac_[0-9a-f]+)/change/', html)


def listed_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'href="/admin/graph/actorcluster/(\d+)/change/', html)]


def ref_url(cluster: ActorCluster, suffix: str = "change/") -> str:
    return f"{CLUSTERS}{cluster.ref}/{suffix}"


# --- item 1: only the filters the page offers -------------------------------------------------------------


# Each probe as (a value that matches the ring's secret, one that does not).
PROBES = [
    ("notes__startswith", "Suspect", "Innocent"),
    ("notes__regex", "^S", "^X"),
    ("assignee", "{alice}", "999999"),
    ("assignee__isnull", "False", "True"),
]


@pytest.mark.parametrize(("lookup", "matching", "missing"), PROBES)
def test_partner_analyst_cannot_read_notes_or_assignee_through_changelist_lookups(
    annotated, alice, bob, lookup, matching, missing
):
    client = logged_in(bob)
    answers = []
    for value in (matching, missing):
        response = client.get(CLUSTERS, {lookup: value.format(alice=alice.pk)})
        assert 400 <= response.status_code < 500, (lookup, value, response.status_code)
        answers.append(re.sub(r'name="csrfmiddlewaretoken" value="\w+"', "", body(response)))  # masked anew
    assert answers[0] == answers[1]  # nothing to tell a matching prefix from a missing one
    assert annotated.ring.ref not in answers[0]
    assert f"Filtering by {lookup} not allowed" in answers[0]  # names the parameter, never the value


def test_every_scoped_admin_refuses_a_partner_analyst_lookups_it_does_not_offer(world, bob):
    client = logged_in(bob)
    for url, params in (
        ("/admin/exchange/seller/", {"retraction_reason__startswith": "a"}),
        ("/admin/exchange/seller/", {"id__gt": "0"}),
        (CLUSTERS, {"risk__gte": "0"}),
        (CLUSTERS, {"ref__startswith": "ac_"}),
    ):
        assert client.get(url, params).status_code == 400, (url, params)


def test_partner_analyst_can_use_the_offered_filters(world, bob):
    client = logged_in(bob)
    for params in (
        {"status__exact": "new"},
        {"cross_platform__exact": "1"},
        {"risk": "low"},
        {"reason": "trademark"},
        {"changed": "7d"},
        {"state": "all"},
        {"q": "acme-1"},
    ):
        response = client.get(CLUSTERS, params)
        assert response.status_code == 200, params
    assert listed_refs(body(client.get(CLUSTERS, {"cross_platform__exact": "1"}))) == [world.ring.ref]
    sellers = client.get(
        "/admin/exchange/seller/", {"status__exact": "suspected", "retracted_at__isempty": "1"}
    )
    assert sellers.status_code == 200 and "acme-2" in body(sellers) and "acme-1" not in body(sellers)


def test_exchange_analyst_can_still_use_every_offered_filter(annotated, alice):
    client = logged_in(alice)
    w = annotated
    for params, expected in (
        ({"assigned": "me"}, {w.ring.pk}),
        ({"platform": str(w.acme.platform.pk)}, {w.ring.pk, w.acme_only.pk}),
        ({"status__exact": "new"}, {w.ring.pk, w.acme_only.pk, w.bazaar_only.pk}),
        ({"cross_platform__exact": "1"}, {w.ring.pk}),
    ):
        response = client.get(CLUSTERS, params)
        assert response.status_code == 200 and set(listed_ids(body(response))) == expected, params


def test_partner_analyst_cannot_order_by_a_column_not_shown(world, bob):
    client = logged_in(bob)
    assert client.get(CLUSTERS, {"o": "6"}).status_code == 400  # the hidden assignee's old place
    assert client.get(CLUSTERS, {"o": "x"}).status_code == 400
    assert client.get(CLUSTERS, {"o": "2.-9"}).status_code == 400
    shown = client.get(CLUSTERS, {"o": "-3.0"})
    assert shown.status_code == 200 and world.ring.ref in body(shown)


def test_partner_analyst_does_not_see_the_assignee_column(annotated, alice, bob):
    partner = body(logged_in(bob).get(CLUSTERS))
    assert "column-assignee" not in partner and "alice" not in partner
    assert "column-assignee" in body(logged_in(alice).get(CLUSTERS))


def test_cluster_history_is_for_exchange_analysts_only(annotated, alice, bob):
    ring = annotated.ring
    for url in (ref_url(ring, "history/"), f"{CLUSTERS}{ring.pk}/history/"):
        assert logged_in(bob).get(url).status_code == 404, url
        assert logged_in(alice).get(url).status_code == 200, url
    assert "/history/" not in body(logged_in(bob).get(ref_url(ring)))


# --- item 2: hash search is a POST, audited, metered for partners ------------------------------------------


def csrf_client(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_hash_search_is_a_post_that_finds_the_cluster_and_audits_the_match_count(world, alice):
    hash_ = th("tax_id", "DE123456789")
    client = logged_in(alice)
    response = client.post(HASH_SEARCH, {"transport_hash": hash_.upper()})
    assert response.status_code == 200
    html = body(response)
    assert listed_ids(html) == [world.ring.pk]
    assert hash_ not in html.lower()
    missing = client.post(HASH_SEARCH, {"transport_hash": th("email", "never@example.com")})
    assert missing.status_code == 200 and listed_ids(body(missing)) == []
    entries = AuditEntry.objects.filter(action="admin_hash_search").order_by("id")
    assert [(e.actor, e.details) for e in entries] == [("alice", {"matches": 1}), ("alice", {"matches": 0})]
    for row in AuditEntry.objects.values_list():
        assert hash_ not in str(row).lower()
    assert not Indicator.objects.filter(token=hash_).exists()


def test_cluster_list_offers_the_hash_search_as_a_post_form(world, alice):
    html = body(logged_in(alice).get(CLUSTERS))
    form = re.search(r'<form[^>]*action="/admin/graph/actorcluster/hash-search/"[^>]*>.*?</form>', html, re.S)
    assert form is not None and 'method="post"' in form.group(0)
    assert 'name="csrfmiddlewaretoken"' in form.group(0) and 'name="transport_hash"' in form.group(0)
    assert "<script" not in form.group(0) and "onclick" not in form.group(0)


def test_get_search_by_transport_hash_finds_nothing_and_does_not_echo_it(world, alice, bob):
    hash_ = th("tax_id", "DE123456789")
    for user in (alice, bob):
        response = logged_in(user).get(CLUSTERS, {"q": hash_})
        assert response.status_code == 200
        html = body(response)
        assert listed_ids(html) == [] and listed_refs(html) == []
        assert hash_ not in html and hash_.upper() not in html
        assert "hash search form" in html
    assert not AuditEntry.objects.filter(action="admin_hash_search").exists()


def test_hash_search_refuses_a_malformed_hash_and_a_get(world, alice):
    client = logged_in(alice)
    response = client.post(HASH_SEARCH, {"transport_hash": "ring@example.com"})
    assert response.status_code == 400 and "64 hexadecimal characters" in body(response)
    assert "ring@example.com" not in body(response)
    assert client.get(HASH_SEARCH).status_code == 405
    assert not AuditEntry.objects.filter(action="admin_hash_search").exists()


def test_hash_search_enforces_csrf(world, alice):
    client = csrf_client(alice)
    hash_ = th("tax_id", "DE123456789")
    assert client.post(HASH_SEARCH, {"transport_hash": hash_}).status_code == 403
    page = body(client.get(CLUSTERS))
    token = re.search(
        r'action="/admin/graph/actorcluster/hash-search/".*?name="csrfmiddlewaretoken" value="([^"]+)"',
        page,
        re.S,
    )
    assert token is not None
    response = client.post(HASH_SEARCH, {"transport_hash": hash_, "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 200 and listed_ids(body(response)) == [world.ring.pk]


def usage(world_platform: Any) -> int:
    row = AnalystLookupUsage.objects.filter(platform=world_platform).first()
    return row.count if row else 0


def test_partner_hash_search_is_charged_to_the_platform_quota_and_refused_beyond_it(
    world, bob, carol, settings
):
    settings.EXCHANGE_ANALYST_DAILY_QUOTA = 2
    hash_ = th("tax_id", "DE123456789")
    client = logged_in(bob)
    for _ in range(2):
        response = client.post(HASH_SEARCH, {"transport_hash": hash_})
        assert response.status_code == 200 and listed_refs(body(response)) == [world.ring.ref]
    assert usage(world.acme.platform) == 2
    refused = client.post(HASH_SEARCH, {"transport_hash": hash_})
    assert refused.status_code == 429
    assert "quota reached" in body(refused) and "resets at" in body(refused)
    assert listed_refs(body(refused)) == [] and hash_ not in body(refused)
    assert usage(world.acme.platform) == 2
    # Another platform's analysts have their own quota; exchange analysts are not metered.
    assert logged_in(carol).post(HASH_SEARCH, {"transport_hash": hash_}).status_code == 200
    assert usage(world.bazaar.platform) == 1


def test_partner_cluster_page_view_is_charged_one_unit_of_the_platform_quota(world, bob, alice, settings):
    settings.EXCHANGE_ANALYST_DAILY_QUOTA = 1
    client = logged_in(bob)
    assert client.get(ref_url(world.ring)).status_code == 200
    assert usage(world.acme.platform) == 1
    refused = client.get(ref_url(world.ring))
    assert refused.status_code == 429 and "quota reached" in body(refused)
    assert "acme-1" not in body(refused) and "Platform A" not in body(refused)
    assert logged_in(alice).get(ref_url(world.ring)).status_code == 200
    assert AnalystLookupUsage.objects.count() == 1


def test_indicator_hash_search_is_a_post_for_exchange_analysts_only(world, alice, bob):
    hash_ = th("tax_id", "DE123456789")
    indicator = Indicator.objects.get(kind="tax_id")
    client = logged_in(alice)
    response = client.post(INDICATOR_HASH_SEARCH, {"transport_hash": hash_})
    assert response.status_code == 200
    assert f"/admin/exchange/indicator/{indicator.pk}/change/" in body(response)
    assert hash_ not in body(response)
    assert AuditEntry.objects.get(action="admin_indicator_hash_search").details == {"matches": 1}
    listing = client.get("/admin/exchange/indicator/", {"q": hash_})
    assert listing.status_code == 200 and hash_ not in body(listing)
    assert f"/admin/exchange/indicator/{indicator.pk}/change/" not in body(listing)
    assert 'action="/admin/exchange/indicator/hash-search/"' in body(listing)
    assert logged_in(bob).post(INDICATOR_HASH_SEARCH, {"transport_hash": hash_}).status_code == 403


# --- item 6: partners see opaque references, never sequential ids ------------------------------------------


def test_partner_cluster_list_shows_and_links_refs_never_ids(world, bob):
    html = body(logged_in(bob).get(CLUSTERS, {"state": "all"}))
    assert set(listed_refs(html)) == {world.ring.ref, world.acme_only.ref}
    assert listed_ids(html) == []
    for cluster in (world.ring, world.acme_only):
        assert f"#{cluster.pk} " not in html and f"/{cluster.pk}/" not in html


def test_partner_cluster_page_is_titled_by_ref(world, bob):
    html = body(logged_in(bob).get(ref_url(world.ring)))
    assert f"Cluster {world.ring.ref}" in html
    assert f"Cluster #{world.ring.pk}" not in html and f"Cluster {world.ring.pk} " not in html


def test_partner_search_by_cluster_id_is_not_offered(world, alice, bob):
    assert listed_refs(body(logged_in(bob).get(CLUSTERS, {"q": f"#{world.ring.pk}"}))) == []
    assert listed_refs(body(logged_in(bob).get(CLUSTERS, {"q": str(world.ring.pk)}))) == []
    assert listed_refs(body(logged_in(bob).get(CLUSTERS, {"q": world.ring.ref}))) == [world.ring.ref]
    assert "cluster id" not in body(logged_in(bob).get(CLUSTERS))
    assert listed_ids(body(logged_in(alice).get(CLUSTERS, {"q": f"#{world.ring.pk}"}))) == [world.ring.pk]


def test_cluster_page_opens_by_ref_for_everyone_in_scope(world, alice, bob, carol):
    """The link that report emails carry."""
    for user in (alice, bob, carol):
        assert logged_in(user).get(ref_url(world.ring)).status_code == 200, user
    assert logged_in(alice).get(f"{CLUSTERS}{world.ring.pk}/change/").status_code == 200
    assert logged_in(bob).get(ref_url(world.bazaar_only)).status_code == 404
    assert logged_in(carol).get(ref_url(world.acme_only)).status_code == 404
    # Partners never address clusters by sequential id, not even their own.
    assert logged_in(bob).get(f"{CLUSTERS}{world.ring.pk}/change/").status_code == 404


def test_exchange_analyst_works_a_cluster_from_its_ref_url(world, alice):
    response = logged_in(alice).post(
        ref_url(world.ring), {"status": "investigating", "assignee": "", "notes": "", "_continue": "1"}
    )
    assert response.status_code == 302
    world.ring.refresh_from_db()
    assert world.ring.status == "investigating"


@pytest.mark.parametrize(
    "object_id",
    ["ac_", "ac_zz", "ac_%00", "%00", "1%00", "ac_" + "0" * 16, "99999999999999999999999", "%D9%A1", "AC_x"],
)
def test_malformed_or_unknown_cluster_ids_are_404(world, alice, bob, object_id):
    for user in (alice, bob):
        for suffix in ("change/", "history/"):
            response = logged_in(user).get(f"{CLUSTERS}{object_id}/{suffix}")
            assert response.status_code == 404, (user, object_id, suffix, response.status_code)


def test_partner_seller_list_links_clusters_by_ref(world, bob):
    html = body(logged_in(bob).get("/admin/exchange/seller/"))
    assert f"/admin/graph/actorcluster/{world.ring.ref}/change/" in html
    assert listed_ids(html) == []
    seller = Seller.objects.get(seller_ref="acme-1")
    page = body(logged_in(bob).get(f"/admin/exchange/seller/{seller.pk}/change/"))
    assert world.ring.ref in page and f"#{world.ring.pk}" not in page


@pytest.mark.parametrize("term", ["\x00", "ac_\x00", "acme-1\x00", "#1\x00"])
def test_searching_with_a_nul_byte_is_refused_with_a_message_never_a_500(world, alice, bob, term):
    for user in (alice, bob):
        for url in (CLUSTERS, "/admin/exchange/seller/"):
            response = logged_in(user).get(url, {"q": term})
            assert response.status_code == 200, (user, url)
            assert "Null characters are not allowed" in body(response)


def test_platform_quota_counts_per_utc_day_for_all_of_a_platforms_analysts(world, settings):
    settings.EXCHANGE_ANALYST_DAILY_QUOTA = 3
    acme, bazaar = world.acme.platform.pk, world.bazaar.platform.pk
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    assert charge_platform_quota(acme, 2, late) == 3
    with pytest.raises(QuotaExceeded) as refused:
        charge_platform_quota(acme, 2, late)
    assert refused.value.resets_at == datetime(2026, 3, 2, tzinfo=UTC)
    charge_platform_quota(acme, 1, late)  # exactly the quota
    charge_platform_quota(bazaar, 3, late)  # another platform counts apart
    charge_platform_quota(acme, 3, datetime(2026, 3, 2, 0, 1, tzinfo=UTC))  # a new UTC day
    with pytest.raises(QuotaExceeded):
        charge_platform_quota(acme, 4, late)
    rows = AnalystLookupUsage.objects.values_list("platform_id", "day", "count")
    assert sorted(rows) == sorted(
        [(acme, late.date(), 3), (bazaar, late.date(), 3), (acme, datetime(2026, 3, 2, tzinfo=UTC).date(), 3)]
    )


@pytest.mark.parametrize("prefix", ["22", "23", "24", "25", "26", "40", "5f", "2f", "00"])
def test_a_cluster_opens_by_any_ref_even_one_the_admin_would_unquote(world, alice, bob, prefix):
    # Django's admin unquotes "_23" to "#" before get_object: "ac_23…" must still open, for both roles.
    ref = f"ac_{prefix}f4bab26b71c2e9"
    ActorCluster.objects.filter(pk=world.ring.pk).update(ref=ref)
    for user in (alice, bob):
        response = logged_in(user).get(f"{CLUSTERS}{ref}/change/")
        assert response.status_code == 200, (user, response.status_code)
