"""The investigator admin: the cluster list, the cluster page, the workflow, overrides, keys and the audit log."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from accounts.scoping import EVERYTHING, scope_of
from exchange.models import Indicator, Linking, Seller
from graph.explain import explain
from graph.models import ActorCluster, Approval, ClusterEvent, ClusterStatus, EventKind
from graph.picture import MAX_SELLERS, render
from tests.admin_world import PASSWORD, AdminWorld, assert_ring_taken_up_by, build, logged_in
from tests.builders import seller, submit, th

pytestmark = pytest.mark.django_db

CLUSTERS = "/admin/graph/actorcluster/"


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    return build(acme, bazaar)


def page(client: Client, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def listed(html: str) -> list[int]:
    """Cluster ids in the order the changelist shows them."""
    return [int(pk) for pk in re.findall(r'href="/admin/graph/actorcluster/(\d+)/change/', html)]


def listed_refs(html: str) -> list[str]:
    """Cluster references in the order a partner analyst's changelist shows them (partners never see ids)."""
    return re.findall(r'href="/admin/graph/actorcluster/(ac_[0-9a-f]+)/change/', html)


def change_url(cluster: ActorCluster) -> str:
    return f"{CLUSTERS}{cluster.pk}/change/"


def ref_url(cluster: ActorCluster) -> str:
    """The cluster page as report emails link to it, and the only way a partner analyst opens it."""
    return f"{CLUSTERS}{cluster.ref}/change/"


# --- the cluster list ---------------------------------------------------------------------------------------


def test_cluster_list_puts_cross_platform_clusters_first_then_highest_risk(world, alice):
    ActorCluster.objects.filter(pk=world.acme_only.pk).update(risk=99)
    ActorCluster.objects.filter(pk=world.bazaar_only.pk).update(risk=50)
    ActorCluster.objects.filter(pk=world.ring.pk).update(risk=20)
    ids = listed(page(logged_in(alice), CLUSTERS))
    assert ids == [world.ring.pk, world.acme_only.pk, world.bazaar_only.pk]


def test_cluster_list_shows_size_platforms_risk_status_and_assignee(world, alice):
    ActorCluster.objects.filter(pk=world.ring.pk).update(assignee=alice, status=ClusterStatus.INVESTIGATING)
    html = page(logged_in(alice), CLUSTERS)
    row = re.search(rf"/admin/graph/actorcluster/{world.ring.pk}/change/.*?</tr>", html, re.S)
    assert row is not None
    text = row.group(0)
    assert "Acme Market (2)" in text and "Bazaar North (2)" in text
    assert f"risk-{'high' if world.ring.risk >= 70 else 'medium'}" in text
    assert "Investigating" in text and "alice" in text


def test_cluster_list_costs_the_same_queries_for_many_rows(
    acme, bazaar, alice, django_assert_max_num_queries
):
    client = logged_in(alice)
    build(acme, bazaar)
    client.get(CLUSTERS)  # warm up (content types, sessions)
    with CaptureQueriesContext(connection) as few:
        assert client.get(CLUSTERS).status_code == 200
    submit(
        acme.client(),
        *[seller(f"extra-{n}-{side}", ("phone", f"+49301234{n:03d}")) for n in range(12) for side in "ab"],
    )
    assert ActorCluster.objects.live().count() >= 15
    with CaptureQueriesContext(connection) as many:
        assert client.get(CLUSTERS).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many]
    with django_assert_max_num_queries(len(few)):
        client.get(CLUSTERS, {"cross_platform__exact": "1", "risk": "high", "status__exact": "new"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"cross_platform__exact": "1"}, {"ring"}),
        ({"cross_platform__exact": "0"}, {"acme_only", "bazaar_only"}),
        ({"reason": "trademark"}, {"acme_only"}),
        ({"reason": "copyright"}, {"ring"}),
        ({"status__exact": "new"}, {"ring", "acme_only", "bazaar_only"}),
        ({"status__exact": "confirmed"}, set()),
        ({"changed": "1d"}, {"ring", "acme_only", "bazaar_only"}),
        ({"assigned": "nobody"}, {"ring", "acme_only", "bazaar_only"}),
        ({"assigned": "me"}, set()),
        ({"state": "dissolved"}, set()),
    ],
)
def test_cluster_list_filters(world, alice, params, expected):
    names = {world.ring.pk: "ring", world.acme_only.pk: "acme_only", world.bazaar_only.pk: "bazaar_only"}
    assert {names[pk] for pk in listed(page(logged_in(alice), CLUSTERS, **params))} == expected


def test_cluster_list_filters_by_platform_risk_band_and_assignee(world, alice):
    client = logged_in(alice)
    acme_id = str(world.acme.platform.pk)
    assert set(listed(page(client, CLUSTERS, platform=acme_id))) == {world.ring.pk, world.acme_only.pk}
    ActorCluster.objects.filter(pk=world.ring.pk).update(risk=75, assignee=alice)
    ActorCluster.objects.exclude(pk=world.ring.pk).update(risk=10)
    assert listed(page(client, CLUSTERS, risk="high")) == [world.ring.pk]
    assert set(listed(page(client, CLUSTERS, risk="low"))) == {world.acme_only.pk, world.bazaar_only.pk}
    assert listed(page(client, CLUSTERS, assigned="me")) == [world.ring.pk]


def test_search_by_seller_ref_cluster_ref_and_id(world, alice):
    client = logged_in(alice)
    assert listed(page(client, CLUSTERS, q="baz-2")) == [world.ring.pk]
    assert listed(page(client, CLUSTERS, q=world.acme_only.ref)) == [world.acme_only.pk]
    assert listed(page(client, CLUSTERS, q=str(world.bazaar_only.pk))) == [world.bazaar_only.pk]
    assert listed(page(client, CLUSTERS, q="nobody-has-this")) == []


def test_search_by_transport_hash_keys_it_on_the_server_and_is_audited(world, alice):
    client = logged_in(alice)
    hash_ = th("tax_id", "DE123456789")

    def search(transport_hash: str) -> list[int]:
        response = client.post(f"{CLUSTERS}hash-search/", {"transport_hash": transport_hash})
        assert response.status_code == 200
        return listed(response.content.decode())

    assert search(hash_) == [world.ring.pk]
    assert search(hash_.upper()) == [world.ring.pk]
    assert search(th("email", "never-reported@example.com")) == []
    entry = AuditEntry.objects.filter(action="admin_hash_search").first()
    assert entry is not None and entry.actor == "alice"
    assert hash_ not in str(entry.details) and not Indicator.objects.filter(token=hash_).exists()


def test_partner_search_never_finds_clusters_by_another_platforms_seller_ref(world, bob):
    client = logged_in(bob)
    assert listed_refs(page(client, CLUSTERS, q="baz-1")) == []
    assert listed_refs(page(client, CLUSTERS, q="acme-1")) == [world.ring.ref]


# --- the cluster page ---------------------------------------------------------------------------------------


def test_cluster_page_explains_the_cluster(world, alice):
    html = page(logged_in(alice), change_url(world.ring))
    for ref in ("acme-1", "acme-2", "baz-1", "baz-2"):
        assert ref in html
    assert "Acme Market: 2 accounts" in html and "Bazaar North: 2 accounts" in html
    # The holding indicators with their counts; the email is the bridge between the platforms.
    indicators = html[html.index('id="indicators"') : html.index('id="risk"')]
    for kind in ("email", "phone", "tax_id"):
        assert kind in indicators
    assert "bridge" in indicators
    token = Indicator.objects.get(kind="email", sightings__seller__seller_ref="baz-1").token
    assert token[:12] in indicators  # exchange analysts see (a prefix of) tokens, linking to the indicator
    # The default chain goes across platforms.
    assert 'id="chain"' in html and "email (strong)" in html
    # Risk parts add up to the score, with their formulas.
    risk = html[html.index('id="risk"') : html.index('id="history"')]
    assert f"{world.ring.risk} / 100" in risk
    for name, value in world.ring.risk_parts.items():
        assert f"<td>{name}</td><td>{value} /" in risk
    assert "created" in html[html.index('id="history"') :]
    assert "<svg" in html and "cluster-picture" in html


def test_evidence_chain_between_two_chosen_members(world, alice):
    explanation = explain(world.ring, EVERYTHING)
    position = {m.alias: m.position for m in explanation.members}
    html = page(logged_in(alice), change_url(world.ring), a=str(position["acme-2"]), b=str(position["baz-2"]))
    chain = html[html.index('id="chain"') : html.index("</ol>", html.index('id="chain"'))]
    steps = re.findall(r"<li>", chain)
    assert len(steps) == 3  # acme-2 -phone- acme-1 -email- baz-1 -tax id- baz-2
    assert chain.index("phone") < chain.index("email") < chain.index("tax_id")
    assert "linked in 3 steps" in html


def test_evidence_chain_rejects_bad_choices(world, alice):
    client = logged_in(alice)
    assert "Choose two different sellers" in page(client, change_url(world.ring), a="1", b="1")
    assert "Choose two members" in page(client, change_url(world.ring), a="1", b="99")
    assert "Choose two members" in page(client, change_url(world.ring), a="x", b="1")


def test_every_cluster_view_is_audited(world, alice, bob):
    logged_in(alice).get(change_url(world.ring))
    logged_in(bob).get(ref_url(world.ring))
    views = AuditEntry.objects.filter(action="cluster_viewed", object_id=str(world.ring.pk))
    assert {(e.actor, e.platform_id) for e in views} == {("alice", None), ("bob", world.acme.platform.pk)}
    assert all(e.details == {} for e in views)


def test_partner_sees_other_platforms_as_counts_only(world, bob):
    html = page(logged_in(bob), ref_url(world.ring))
    assert "acme-1" in html and "acme-2" in html
    assert "baz-1" not in html and "baz-2" not in html
    assert "Bazaar North" not in html
    assert "Platform A: 2 accounts" in html
    for token in Indicator.objects.values_list("token", flat=True):
        assert token[:12] not in html
    assert "/admin/exchange/indicator/" not in html
    for seller_id in Seller.objects.filter(platform=world.bazaar.platform).values_list("pk", flat=True):
        assert f"/admin/exchange/seller/{seller_id}/" not in html
    assert 'name="notes"' not in html


def test_partner_sees_other_platform_names_when_the_consortium_reveals_them(world, bob, settings):
    settings.EXCHANGE_REVEAL_PLATFORM_NAMES = True
    html = page(logged_in(bob), ref_url(world.ring))
    assert "Bazaar North: 2 accounts" in html
    assert "baz-1" not in html


def test_picture_collapses_a_large_cluster_and_says_so(acme, alice):
    # A chain of sellers, each sharing an email with the next: one cluster larger than the picture's limit.
    count = MAX_SELLERS + 15
    sellers = [
        seller(f"chain-{n}", ("email", f"link{n}@example.com"), ("email", f"link{n + 1}@example.com"))
        for n in range(count)
    ]
    assert submit(acme.client(), *sellers).status_code == 201
    cluster = ActorCluster.objects.live().get()
    picture = render(explain(cluster, EVERYTHING))
    assert picture.collapsed and picture.sellers_drawn == MAX_SELLERS and picture.sellers_total == count
    assert "collapsed" in picture.caption and "+15" in picture.svg
    html = page(logged_in(alice), change_url(cluster))
    assert "Large cluster" in html


def test_picture_is_deterministic(world):
    first = render(explain(world.ring, EVERYTHING)).svg
    assert render(explain(world.ring, EVERYTHING)).svg == first


# --- the workflow -------------------------------------------------------------------------------------------


def work(client: Client, cluster: ActorCluster, **data: str) -> Any:
    cluster.refresh_from_db()
    form = {"status": cluster.status, "assignee": "", "notes": cluster.notes, "_continue": "1"}
    return client.post(change_url(cluster), {**form, **data})


def test_status_change_records_an_event_and_an_audit_entry(world, alice, erin):
    response = work(
        logged_in(alice), world.ring, status="investigating", assignee=str(alice.pk), notes="Look."
    )
    assert response.status_code == 302
    assert_ring_taken_up_by(world, alice)
    # Confirming waits for a second analyst (four-eyes review): Erin approves it.
    assert work(logged_in(alice), world.ring, status="confirmed").status_code == 302
    world.ring.refresh_from_db()
    assert world.ring.status == "investigating"
    approve_all(logged_in(erin))
    world.ring.refresh_from_db()
    assert world.ring.status == "confirmed"


def test_status_workflow_refuses_skipping_investigation(world, alice):
    response = work(logged_in(alice), world.ring, status="confirmed")
    assert response.status_code == 200
    world.ring.refresh_from_db()
    assert world.ring.status == "new"
    assert not ClusterEvent.objects.filter(kind=EventKind.STATUS).exists()


def test_saving_the_workflow_never_overwrites_what_a_recomputation_wrote(world, alice):
    client = logged_in(alice)
    world.ring.refresh_from_db()
    ActorCluster.objects.filter(pk=world.ring.pk).update(risk=3, size=40)  # a recomputation meanwhile
    client.post(
        change_url(world.ring), {"status": "investigating", "assignee": "", "notes": "", "_continue": "1"}
    )
    world.ring.refresh_from_db()
    assert (world.ring.risk, world.ring.size, world.ring.status) == (3, 40, "investigating")


def test_only_exchange_analysts_can_be_assigned(world, alice, bob):
    html = page(logged_in(alice), change_url(world.ring))
    select = html[html.index('name="assignee"') : html.index("</select>", html.index('name="assignee"'))]
    assert ">alice<" in select and ">bob<" not in select
    response = work(logged_in(alice), world.ring, status="investigating", assignee=str(bob.pk))
    assert response.status_code == 200
    world.ring.refresh_from_db()
    assert world.ring.assignee is None


# --- indicator overrides ------------------------------------------------------------------------------------


def approve_all(client: Client) -> None:
    """Approve every pending four-eyes approval, as the second exchange analyst does in the Approvals list."""
    pending = [str(pk) for pk in Approval.objects.pending().values_list("pk", flat=True)]
    response = client.post(
        "/admin/graph/approval/", {"action": "approve", "_selected_action": pending}, follow=True
    )
    assert response.status_code == 200 and "approved and made" in response.content.decode()


def test_marking_an_indicator_common_records_who_and_why_and_reclusters(world, alice, erin):
    email = Indicator.objects.get(kind="email", sightings__seller__seller_ref="baz-1")
    url = f"/admin/exchange/indicator/{email.pk}/change/"
    client = logged_in(alice)
    assert "ring" not in page(client, url)  # never a raw value (only the token)
    response = client.post(url, {"linking": "common", "linking_reason": ""})
    assert response.status_code == 200 and "Say why" in response.content.decode()

    response = client.post(url, {"linking": "common", "linking_reason": "Marketplace support address"})
    assert response.status_code == 302
    email.refresh_from_db()
    assert (email.linking, email.linking_changed_by) == (Linking.COMMON, "alice")
    assert email.linking_changed_at is not None
    entry = AuditEntry.objects.get(action="indicator_linking_changed")
    assert (entry.object_id, entry.details) == (str(email.pk), {"from": "auto", "to": "common"})
    # The email was the bridge: the ring splits into an Acme pair and a Bazaar pair.
    acme_side = ActorCluster.objects.live().get(members__seller__seller_ref="acme-1")
    bazaar_side = ActorCluster.objects.live().get(members__seller__seller_ref="baz-1")
    assert acme_side != bazaar_side and not acme_side.cross_platform
    html = page(client, change_url(bazaar_side))
    assert "suppressed: marked common" in html

    # Forcing it back in waits for a second analyst (four-eyes review): the clusters stay apart until then.
    response = client.post(url, {"linking": "include", "linking_reason": "Checked: one actor"})
    assert response.status_code == 302
    assert not ActorCluster.objects.live().get(members__seller__seller_ref="acme-1").cross_platform
    approve_all(logged_in(erin))
    assert ActorCluster.objects.live().get(members__seller__seller_ref="acme-1").cross_platform


# --- platforms, keys and the audit log ----------------------------------------------------------------------


def test_creating_a_key_shows_it_once_and_audits_it(world, alice):
    client = logged_in(alice)
    response = client.post(
        "/admin/accounts/apikey/add/",
        {
            "platform": world.acme.platform.pk,
            "name": "nightly sync",
            "scope_submit": "on",
            "scope_read": "on",
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = re.search(r'value="(bax_[^"]+)"', response.content.decode())
    assert shown is not None
    full_key = shown.group(1)
    key = ApiKey.objects.get(name="nightly sync")
    assert key.matches(full_key) and key.scopes == ["submit", "read"]
    assert full_key not in page(client, f"/admin/accounts/apikey/{key.pk}/change/")
    assert full_key not in page(client, "/admin/accounts/apikey/")
    entry = AuditEntry.objects.get(action="api_key_created")
    assert (entry.actor, entry.platform_id, entry.object_id) == ("alice", world.acme.platform.pk, key.prefix)
    assert full_key not in str(entry.details)
    # The key works against the API.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {full_key}")
    assert api.get("/api/v1/sellers/").status_code == 200


def test_a_key_needs_a_scope(world, alice):
    response = logged_in(alice).post(
        "/admin/accounts/apikey/add/", {"platform": world.acme.platform.pk, "name": "nothing"}
    )
    assert response.status_code == 200 and "at least one scope" in response.content.decode()
    assert not ApiKey.objects.filter(name="nothing").exists()


def test_revoking_keys_is_an_audited_action(world, alice):
    key = world.bazaar.key
    response = logged_in(alice).post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert response.status_code == 200 and "Revoked 1 key" in response.content.decode()
    key.refresh_from_db()
    assert key.is_revoked
    entry = AuditEntry.objects.get(action="api_key_revoked")
    assert (entry.platform_id, entry.object_id) == (world.bazaar.platform.pk, key.prefix)
    assert world.bazaar.client().get("/api/v1/sellers/").status_code == 401


def test_key_list_filters_active_and_revoked_keys(world, alice):
    client = logged_in(alice)
    ApiKey.objects.filter(pk=world.bazaar.key.pk).update(revoked_at=timezone.now())
    active = page(client, "/admin/accounts/apikey/", revoked_at__isempty="1")
    revoked = page(client, "/admin/accounts/apikey/", revoked_at__isempty="0")
    assert world.acme.key.prefix in active and world.bazaar.key.prefix not in active
    assert world.bazaar.key.prefix in revoked and world.acme.key.prefix not in revoked


def test_seller_list_filters_active_and_retracted_reports(world, alice):
    client = logged_in(alice)
    Seller.objects.filter(seller_ref="acme-2").update(retracted_at=timezone.now())
    active = page(client, "/admin/exchange/seller/", retracted_at__isempty="1")
    retracted = page(client, "/admin/exchange/seller/", retracted_at__isempty="0")
    assert ">acme-1<" in active and ">acme-2<" not in active
    assert ">acme-2<" in retracted and ">acme-1<" not in retracted


INDICATORS = "/admin/exchange/indicator/"


def listed_indicators(client: Client, **params: str) -> list[Indicator]:
    response = client.get(INDICATORS, params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_indicator_list_opens_on_shared_indicators_and_offers_all_of_them(world, alice):
    client = logged_in(alice)
    shared = {i.pk for i in Indicator.objects.filter(holders__gte=2)}
    single = {i.pk for i in Indicator.objects.filter(holders__lt=2)}
    assert shared and single  # the world has both: the ring's indicators and the solo sellers' emails
    assert {i.pk for i in listed_indicators(client)} == shared
    assert {i.pk for i in listed_indicators(client, shared="yes")} == shared  # links made before the default
    assert {i.pk for i in listed_indicators(client, shared="no")} == single
    assert {i.pk for i in listed_indicators(client, shared="all")} == shared | single
    html = page(client, INDICATORS)
    assert re.search(r'<li class="selected">\s*<a href="\?"[^>]*>Held by 2\+ sellers</a>', html)
    assert re.search(r'<a href="\?shared=all"[^>]*>All</a>', html)


def test_partner_analysts_still_get_no_indicators_whatever_the_shared_filter(world, bob):
    client = logged_in(bob)
    for params in ({}, {"shared": "all"}, {"shared": "no"}):
        response = client.get(INDICATORS, params)
        assert response.status_code == 403, params


def test_reasons_read_as_words_in_the_seller_list_the_filters_and_the_cluster_page(world, alice):
    submitted = submit(
        world.acme.client(),
        # Shares acme-3's bank account: it joins the Acme-only cluster.
        seller("acme-gi", ("bank_account", "DE89370400440532013000"), reasons=("geographical_indication",)),
    )
    assert submitted.status_code == 201, submitted.content
    client = logged_in(alice)
    sellers = page(client, "/admin/exchange/seller/")
    assert '<td class="field-reasons_list">geographical indication</td>' in sellers
    assert ">geographical indication</a>" in sellers  # the reason filter
    assert ">falsified documents</a>" in page(client, CLUSTERS)  # the cluster list's reason filter
    cluster = page(client, change_url(ActorCluster.objects.live().get(members__seller__seller_ref="acme-gi")))
    assert '<span class="tag">geographical indication</span>' in cluster
    # The codes stay in the query strings, where the API's vocabulary belongs.
    assert "reason=geographical_indication" in sellers
    assert ">geographical_indication<" not in sellers + cluster


def test_key_list_shows_last_use(world, alice):
    html = page(logged_in(alice), "/admin/accounts/apikey/")
    assert world.acme.key.prefix in html and "last used" in html.lower()


def test_platform_report_settings(world, alice):
    client = logged_in(alice)
    platform = world.acme.platform
    url = f"/admin/accounts/platform/{platform.pk}/change/"
    html = page(client, url)
    assert world.acme.key.prefix in html and "Create an API key" in html
    data = {
        "name": platform.name,
        "slug": platform.slug,
        "active": "on",
        "default_region": "DE",
        "report_recipients": "tns@acme.example\nlead@acme.example",
        "report_cadence": "weekly",
        "stix_tlp": "green",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
    }
    assert client.post(url, {**data, "report_recipients": "not an email"}).status_code == 200
    assert client.post(url, data).status_code == 302
    platform.refresh_from_db()
    assert platform.report_recipients == ["tns@acme.example", "lead@acme.example"]
    assert platform.report_cadence == "weekly"
    assert platform.stix_tlp == "green"  # the TLP of its STIX exports is set here too
    assert AuditEntry.objects.filter(action="platform_changed", platform=platform).exists()


def test_audit_log_is_read_only_and_filterable(world, alice):
    client = logged_in(alice)
    client.get(change_url(world.ring))
    AuditEntry.objects.record("api_key_revoked", "alice", world.acme.platform, "api_key", "bax_x")
    html = page(client, "/admin/accounts/auditentry/", action="cluster_viewed")
    assert set(re.findall(r'<td class="field-action">([^<]*)</td>', html)) == {"cluster_viewed"}
    assert f"cluster #{world.ring.pk}" in html
    entry = AuditEntry.objects.filter(action="cluster_viewed").first()
    assert entry is not None
    assert client.post(f"/admin/accounts/auditentry/{entry.pk}/change/", {}).status_code == 403
    assert client.get(f"/admin/accounts/auditentry/{entry.pk}/delete/").status_code == 403
    assert client.get("/admin/accounts/auditentry/add/").status_code == 403
    assert page(client, "/admin/accounts/auditentry/", platform__id__exact=str(world.acme.platform.pk))


# --- login rate limiting ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_login_is_rate_limited_per_username_and_address(alice, bob, fresh_cache):
    client = Client()
    for _ in range(5):
        response = client.post("/admin/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/admin/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429 and "Too many" in response.content.decode()
    assert response["Retry-After"]
    assert AuditEntry.objects.filter(action="admin_login_throttled", actor="alice").exists()
    # Another account from the same address is not locked out by alice's failures.
    response = client.post("/admin/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302


def test_a_successful_login_clears_the_accounts_failures(alice, fresh_cache):
    client = Client()
    for _ in range(4):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(4):
        assert client.post("/admin/login/", {"username": "alice", "password": "wrong"}).status_code == 200


def test_partner_sees_only_the_month_and_no_exchange_wide_count_of_indicators_only_others_hold(
    world, bob, alice
):
    """Issue 19, item 9: the tax id only Bazaar's members hold is shown to Acme's analyst with the month it was
    first seen and without its exchange-wide holder count; the phone and email Acme holds keep both."""
    rows = {row.kind: row for row in explain(world.ring, scope_of(bob)).indicators}
    assert rows["tax_id"].holders is None and rows["tax_id"].first_seen_format == "Y-m"
    assert rows["tax_id"].first_seen is not None and rows["tax_id"].first_seen.day == 1
    for kind in ("phone", "email"):
        assert rows[kind].holders == 2 and rows[kind].first_seen_format == "Y-m-d"
    exact = {row.kind: row for row in explain(world.ring, EVERYTHING).indicators}
    assert exact["tax_id"].holders == 2 and exact["tax_id"].first_seen_format == "Y-m-d"

    html = page(logged_in(bob), ref_url(world.ring))
    first_seen = exact["tax_id"].first_seen
    assert first_seen is not None
    day, month = first_seen.strftime("%Y-%m-%d"), first_seen.strftime("%Y-%m")
    tax_row = re.search(r"<tr>\s*<td><span class=\"tag tag-strong\">tax_id</span>.*?</tr>", html, re.S)
    assert tax_row and month in tax_row.group(0) and day not in tax_row.group(0)
    assert "Not shown for indicators only other platforms hold" in tax_row.group(0)
    assert day in page(logged_in(alice), change_url(world.ring))  # the exchange analyst sees the day


def test_cluster_page_labels_the_earliest_report_apart_from_when_the_cluster_formed(world, alice, bob):
    """Issue 19, item 8: the card said "first seen" and showed when the cluster formed, months after its
    reports. Both are labelled; a partner analyst sees another platform's earliest report by month."""
    earliest = timezone.now() - timedelta(days=100)
    Seller.objects.filter(seller_ref="baz-2").update(first_reported_at=earliest)
    Seller.objects.filter(seller_ref="acme-2").update(first_reported_at=earliest + timedelta(days=40))
    card = re.search(r'id="dates">(.*?)</div>\s*</div>', page(logged_in(alice), change_url(world.ring)), re.S)
    assert card and "Earliest report" in card.group(1) and "Cluster formed" in card.group(1)
    assert earliest.strftime("%Y-%m-%d") in card.group(1)
    assert world.ring.created_at.strftime("%Y-%m-%d %H:%M") in card.group(1)

    partner = re.search(r'id="dates">(.*?)</div>\s*</div>', page(logged_in(bob), ref_url(world.ring)), re.S)
    assert partner and earliest.strftime("%Y-%m") in partner.group(1)
    assert earliest.strftime("%Y-%m-%d") not in partner.group(1)
    Seller.objects.filter(seller_ref="acme-2").update(first_reported_at=earliest - timedelta(days=1))
    own = re.search(r'id="dates">(.*?)</div>\s*</div>', page(logged_in(bob), ref_url(world.ring)), re.S)
    assert own and (earliest - timedelta(days=1)).strftime("%Y-%m-%d") in own.group(
        1
    )  # its own report: the day
