"""Exchange-wide advisories (issue 16): confirmed cross-platform clusters that an exchange analyst published,
served in full over TAXII 2.1 to exchange analysts' keys only. Bundles are checked with the OASIS
stix2-validator and the stix2 library; taxii2-client reads the collection live in tests/system/test_taxii_live.py.

The world: Acme's acme-1 and acme-2 share a phone with Bazaar's baz-1 (the "ring", published); acme-5 and
Bazaar's baz-4 share an email (the "pair", confirmed but not published); Bazaar's baz-2 and baz-3 share a tax
id and Acme's acme-3 and acme-4 an email (single-platform clusters).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AnalystKey, AuditEntry
from exchange.models import LookupUsage
from graph import stix
from graph.actions import AdvisoryError, do_publish_advisory, do_update_cluster, do_withdraw_advisory
from graph.models import ActorCluster, ClusterStatus
from graph.taxii import ADVISORIES_COLLECTION_ID, TAXII_MEDIA_TYPE, collection_id
from tests.admin_world import decided_by_two_analysts, logged_in
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform
from tests.graph.test_stix_taxii import of_type, validate

pytestmark = pytest.mark.django_db

TAXII: dict[str, Any] = {"HTTP_ACCEPT": TAXII_MEDIA_TYPE}
ADVISORIES = f"/taxii2/api1/collections/{ADVISORIES_COLLECTION_ID}/"
CLUSTERS = "/admin/graph/actorcluster/"


def cluster_of(seller_ref: str) -> ActorCluster:
    return ActorCluster.objects.live().get(members__seller__seller_ref=seller_ref)


def confirm(cluster: ActorCluster, actor: str = "alice") -> None:
    """Through the workflow, as analysts would: new -> investigating -> confirmed (by two: four-eyes review)."""
    do_update_cluster(cluster, actor, {"status": ClusterStatus.INVESTIGATING})
    decided_by_two_analysts(cluster, ClusterStatus.CONFIRMED)


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> dict[str, ActorCluster]:
    for kp, sellers in (
        (
            acme,
            [
                seller("acme-1", ("phone", "+4930111111")),
                seller("acme-2", ("phone", "+4930111111")),
                seller("acme-3", ("email", "pair@acme.example")),
                seller("acme-4", ("email", "pair@acme.example")),
                seller("acme-5", ("email", "duo@example.com")),
            ],
        ),
        (
            bazaar,
            [
                seller("baz-1", ("phone", "+4930111111")),
                seller("baz-2", ("tax_id", "DE123456789")),
                seller("baz-3", ("tax_id", "DE123456789")),
                seller("baz-4", ("email", "duo@example.com")),
            ],
        ),
    ):
        assert submit(kp.client(), *sellers).status_code == 201
    ring, pair = cluster_of("acme-1"), cluster_of("acme-5")
    confirm(ring)
    confirm(pair)
    assert do_publish_advisory(ring, "alice")
    return {"ring": ring, "pair": pair, "acme_only": cluster_of("acme-3"), "bazaar_only": cluster_of("baz-2")}


@pytest.fixture
def analyst_key(alice: User) -> str:
    return AnalystKey.generate(alice, name="OpenCTI")[1]


def keyed(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def read_all(client: APIClient, query: str = "", endpoint: str = "objects") -> list[dict[str, Any]]:
    """Every page of the advisories' objects (or manifest records), asserting full pages until the last."""
    url = f"{ADVISORIES}{endpoint}/?{query}"
    found: list[dict[str, Any]] = []
    response = client.get(url, **TAXII)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        found += body.get("objects", [])
        if not body["more"]:
            return found
        assert body["objects"]
        response = client.get(url + f"&next={body['next']}", **TAXII)


def bundle_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "bundle", "id": "bundle--6f0b1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e", "objects": objects}


# --- publishing -------------------------------------------------------------------------------------------


def test_publishing_is_audited_and_once(world, alice):
    ring = world["ring"]
    ring.refresh_from_db()
    assert ring.published_at is not None
    entry = AuditEntry.objects.get(action="advisory_published")
    assert (entry.actor, entry.object_type, entry.object_id, entry.platform_id) == (
        "alice",
        "cluster",
        str(ring.pk),
        None,
    )
    assert entry.details == {"ref": ring.ref}
    assert do_publish_advisory(ring, "alice") is False  # published already: nothing written
    assert AuditEntry.objects.filter(action="advisory_published").count() == 1


@pytest.mark.parametrize(
    ("which", "status", "reason"),
    [
        ("pair", ClusterStatus.INVESTIGATING, "Only a confirmed actor"),
        ("acme_only", ClusterStatus.CONFIRMED, "Only a cross-platform cluster"),
        ("dissolved", ClusterStatus.CONFIRMED, "A dissolved cluster"),
    ],
)
def test_only_live_confirmed_cross_platform_clusters_can_be_published(world, which, status, reason):
    cluster = world["pair"] if which == "dissolved" else world[which]
    ActorCluster.objects.filter(pk=cluster.pk).update(
        status=status, dissolved_at=timezone.now() if which == "dissolved" else None
    )
    cluster.refresh_from_db()
    with pytest.raises(AdvisoryError, match=reason):
        do_publish_advisory(cluster, "alice")
    assert ActorCluster.objects.get(pk=cluster.pk).published_at is None
    assert AuditEntry.objects.filter(action="advisory_published").count() == 1  # the ring's, by the fixture


def test_withdrawing_is_audited_and_once(world):
    ring = world["ring"]
    assert do_withdraw_advisory(ring, "alice") is True
    assert ActorCluster.objects.get(pk=ring.pk).published_at is None and ring.published_at is None
    entry = AuditEntry.objects.get(action="advisory_withdrawn")
    assert entry.details == {"ref": ring.ref, "reason": "withdrawn"} and entry.actor == "alice"
    assert do_withdraw_advisory(ring, "alice") is False
    assert AuditEntry.objects.filter(action="advisory_withdrawn").count() == 1


def test_reopening_a_published_cluster_withdraws_it(world):
    ring = world["ring"]
    do_update_cluster(ring, "alice", {"status": ClusterStatus.INVESTIGATING})
    assert ActorCluster.objects.get(pk=ring.pk).published_at is None
    entry = AuditEntry.objects.get(action="advisory_withdrawn")
    assert entry.details == {"ref": ring.ref, "reason": "status_changed"}
    # Confirmed again, it is not published again by itself.
    decided_by_two_analysts(ring, ClusterStatus.CONFIRMED)
    assert ActorCluster.objects.get(pk=ring.pk).published_at is None


def test_the_actions_are_durable(world):
    for action in (do_publish_advisory, do_withdraw_advisory):
        with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
            action(world["pair"], "alice")


# --- the admin ------------------------------------------------------------------------------------------


def advisory_url(cluster: ActorCluster) -> str:
    return f"{CLUSTERS}{cluster.pk}/advisory/"


def test_an_exchange_analyst_publishes_and_withdraws_from_the_cluster_page(world, alice):
    client, pair = logged_in(alice), world["pair"]
    page = client.get(f"{CLUSTERS}{pair.pk}/change/").content.decode()
    assert 'value="Publish as advisory"' in page and f'action="{advisory_url(pair)}"' in page
    response = client.post(advisory_url(pair), {"advisory": "publish"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{CLUSTERS}{pair.pk}/change/"
    assert "Published 1 advisory(ies)." in response.content.decode()
    assert 'value="Withdraw advisory"' in response.content.decode()
    entry = AuditEntry.objects.filter(action="advisory_published").latest("id")
    assert (entry.actor, entry.object_id) == ("alice", str(pair.pk))
    client.post(advisory_url(pair), {"advisory": "withdraw"})
    assert ActorCluster.objects.get(pk=pair.pk).published_at is None
    assert AuditEntry.objects.filter(action="advisory_withdrawn", actor="alice").count() == 1


def test_the_cluster_page_says_why_a_cluster_cannot_be_published(world, alice):
    page = logged_in(alice).get(f"{CLUSTERS}{world['acme_only'].pk}/change/").content.decode()
    assert "Only a cross-platform cluster can be published" in page
    assert 'value="Publish as advisory"' not in page


def test_publishing_a_cluster_that_may_not_be_is_refused_with_the_reason(world, alice):
    response = logged_in(alice).post(advisory_url(world["acme_only"]), {"advisory": "publish"}, follow=True)
    assert "not published: Only a cross-platform cluster" in response.content.decode()
    assert ActorCluster.objects.get(pk=world["acme_only"].pk).published_at is None


@pytest.mark.parametrize("body", [{}, {"advisory": "delete"}])
def test_a_bad_decision_is_a_400(world, alice, body):
    response = logged_in(alice).post(advisory_url(world["pair"]), body)
    assert response.status_code == 400 and b"publish" in response.content
    assert ActorCluster.objects.get(pk=world["pair"].pk).published_at is None


def test_the_advisory_url_takes_posts_only(world, alice):
    assert logged_in(alice).get(advisory_url(world["pair"])).status_code == 405


def test_only_exchange_analysts_publish(world, bob, carol, dave):
    pair, ring = world["pair"], world["ring"]
    for user in (bob, carol, dave):
        client = logged_in(user)
        for cluster, decision in ((pair, "publish"), (ring, "withdraw")):
            for ident in (cluster.pk, cluster.ref):
                response = client.post(f"{CLUSTERS}{ident}/advisory/", {"advisory": decision})
                assert response.status_code == 403, (user.username, ident, response.status_code)
            changelist = client.post(
                CLUSTERS, {"action": f"{decision}_advisories", "_selected_action": [cluster.pk]}
            )
            # Not an action they are offered: the list again (or a 403 without an analyst profile), no change.
            assert changelist.status_code in {200, 403}
            assert b"advisory(ies)" not in changelist.content
    # A partner analyst's page offers nothing of it.
    page = logged_in(bob).get(f"{CLUSTERS}{ring.ref}/change/").content.decode()
    assert "advisory" not in page.lower()
    assert ActorCluster.objects.get(pk=pair.pk).published_at is None
    assert ActorCluster.objects.get(pk=ring.pk).published_at is not None
    anonymous = Client().post(advisory_url(pair), {"advisory": "publish"})
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert AuditEntry.objects.filter(action__startswith="advisory_").count() == 1  # the fixture's


def test_changelist_actions_publish_and_withdraw_in_bulk(world, alice):
    client = logged_in(alice)
    chosen = [world["pair"].pk, world["acme_only"].pk, world["ring"].pk]
    response = client.post(
        CLUSTERS, {"action": "publish_advisories", "_selected_action": chosen, "state": "all"}, follow=True
    )
    text = response.content.decode()
    assert "Published 1 advisory(ies)." in text
    assert f"Cluster #{world['acme_only'].pk} not published: Only a cross-platform cluster" in text
    assert "1 cluster(s) were published already" in text
    listed = client.get(CLUSTERS, {"advisory": "listed"}).content.decode()
    assert f"/admin/graph/actorcluster/{world['pair'].pk}/change/" in listed
    assert f"/admin/graph/actorcluster/{world['acme_only'].pk}/change/" not in listed
    client.post(CLUSTERS, {"action": "withdraw_advisories", "_selected_action": chosen})
    assert not ActorCluster.objects.filter(published_at__isnull=False).exists()
    assert AuditEntry.objects.filter(action="advisory_withdrawn", actor="alice").count() == 2


# --- the TAXII collection ---------------------------------------------------------------------------------


def test_an_analyst_key_lists_the_advisories_collection_only(world, analyst_key):
    client = keyed(analyst_key)
    assert client.get("/taxii2/", **TAXII).json()["api_roots"] == ["http://testserver/taxii2/api1/"]
    (collection,) = client.get("/taxii2/api1/collections/", **TAXII).json()["collections"]
    assert collection["id"] == ADVISORIES_COLLECTION_ID and collection["title"] == "Exchange advisories"
    assert (collection["can_read"], collection["can_write"]) == (True, False)
    assert client.get(ADVISORIES, **TAXII).json() == collection


def test_the_advisories_are_the_published_clusters_in_full_and_validate(world, analyst_key):
    objects = read_all(keyed(analyst_key))
    bundle = bundle_of(objects)
    validate(bundle)
    assert [a["name"] for a in of_type(bundle, "threat-actor")] == [world["ring"].ref]
    sellers = {
        i["name"]: i["x_exchange_platform"]
        for i in of_type(bundle, "identity")
        if i["id"] != stix.PRODUCER_ID
    }
    assert sellers == {"acme-1": "Acme Market", "acme-2": "Acme Market", "baz-1": "Bazaar North"}
    sightings = {s["x_exchange_platform"]: s["count"] for s in of_type(bundle, "sighting")}
    assert sightings == {"Acme Market": 2, "Bazaar North": 1}
    text = json.dumps(objects)
    for unpublished in ("acme-5", "baz-4", "acme-3", "baz-2", world["pair"].ref, world["bazaar_only"].ref):
        assert unpublished not in text


def test_every_advisory_object_carries_the_exchanges_default_tlp(world, analyst_key):
    objects = read_all(keyed(analyst_key))
    marked = [o for o in objects if o["type"] in {"threat-actor", "identity", "relationship", "sighting"}]
    marked = [o for o in marked if o["id"] != stix.PRODUCER_ID]
    assert marked and all(
        o["object_marking_refs"] == [stix.TLP_MARKING_IDS[stix.DEFAULT_TLP]] for o in marked
    )
    assert stix.DEFAULT_TLP == "amber+strict"


def test_withdrawn_and_reopened_advisories_leave_the_collection(world, analyst_key):
    client = keyed(analyst_key)
    do_publish_advisory(world["pair"], "alice")
    actors = {a["name"] for a in read_all(client, "match[type]=threat-actor")}
    assert actors == {world["ring"].ref, world["pair"].ref}
    do_withdraw_advisory(world["pair"], "alice")
    do_update_cluster(world["ring"], "alice", {"status": ClusterStatus.INVESTIGATING})
    assert read_all(client, "match[type]=threat-actor") == []


def test_a_published_cluster_that_dissolves_or_stops_spanning_platforms_leaves_the_collection(
    world, analyst_key
):
    client = keyed(analyst_key)
    ActorCluster.objects.filter(pk=world["ring"].pk).update(platform_count=1, cross_platform=False)
    assert read_all(client, "match[type]=threat-actor") == []
    ActorCluster.objects.filter(pk=world["ring"].pk).update(
        platform_count=2, cross_platform=True, dissolved_at=timezone.now()
    )
    assert read_all(client, "match[type]=threat-actor") == []


def test_objects_page_by_limit_and_the_manifest_matches(world, analyst_key):
    client = keyed(analyst_key)
    everything = client.get(f"{ADVISORIES}objects/", **TAXII).json()
    assert everything["more"] is False
    paged = read_all(client, "limit=3")
    assert paged == everything["objects"] and len(paged) > 6
    manifest = read_all(client, "limit=2", "manifest")
    assert [m["id"] for m in manifest] == [o["id"] for o in paged]
    assert all(m["media_type"] == stix.STIX_MEDIA_TYPE for m in manifest)


def test_an_advisory_is_added_when_published_and_again_when_its_membership_changes(world, analyst_key):
    client = keyed(analyst_key)
    ring = ActorCluster.objects.get(pk=world["ring"].pk)
    assert ring.published_at is not None and ring.published_at > ring.changed_at
    response = client.get(f"{ADVISORIES}objects/?match[type]=threat-actor", **TAXII)
    published = response["X-TAXII-Date-Added-Last"]
    assert published.startswith(f"{ring.published_at:%Y-%m-%dT%H:%M:%S}")
    assert client.get(f"{ADVISORIES}objects/?added_after={published}", **TAXII).json() == {"more": False}
    # The pair changed before the ring was published, but is added when it is published: a client that polls
    # from the ring's date added gets it.
    assert ActorCluster.objects.get(pk=world["pair"].pk).changed_at < ring.published_at
    do_publish_advisory(world["pair"], "alice")
    fresh = client.get(
        f"{ADVISORIES}objects/?added_after={published}&match[type]=threat-actor", **TAXII
    ).json()
    assert [a["name"] for a in fresh["objects"]] == [world["pair"].ref]
    # A membership change adds the ring's objects again (new versions).
    later = timezone.now() + timedelta(minutes=5)
    ActorCluster.objects.filter(pk=ring.pk).update(changed_at=later)
    again = client.get(
        f"{ADVISORIES}objects/?added_after={published}&match[type]=threat-actor", **TAXII
    ).json()
    assert {a["name"] for a in again["objects"]} == {world["ring"].ref, world["pair"].ref}


def test_objects_by_id_versions_and_filters(world, analyst_key):
    client = keyed(analyst_key)
    objects = read_all(client)
    for obj in objects:
        assert client.get(f"{ADVISORIES}objects/{obj['id']}/", **TAXII).json() == {
            "more": False,
            "objects": [obj],
        }
        versions = client.get(f"{ADVISORIES}objects/{obj['id']}/versions/", **TAXII).json()
        assert versions == {"more": False, "versions": [obj.get("modified", obj["created"])]}
    baz_1 = stix.seller_identity_id("bazaar", "baz-1")
    assert [o["id"] for o in read_all(client, f"match[id]={baz_1}&limit=1")] == [baz_1]
    unpublished = [stix.threat_actor_id(world["pair"].ref), stix.seller_identity_id("acme", "acme-5")]
    assert read_all(client, f"match[id]={','.join(unpublished)}") == []
    for object_id in unpublished:
        assert client.get(f"{ADVISORIES}objects/{object_id}/", **TAXII).status_code == 404
    assert read_all(client, "match[spec_version]=2.0") == []
    bad = client.get(f"{ADVISORIES}objects/?match[color]=red", **TAXII)
    assert bad.status_code == 400 and bad.json()["http_status"] == "400"


def test_reads_are_audited_and_not_metered(world, analyst_key, acme):
    client = keyed(analyst_key)
    read_all(client)
    client.get(f"{ADVISORIES}objects/{stix.threat_actor_id(world['ring'].ref)}/", **TAXII)
    entries = AuditEntry.objects.filter(action="advisory_read").order_by("id")
    assert [e.details["endpoint"] for e in entries] == ["taxii_objects", "taxii_object"]
    first = entries[0]
    assert (first.actor, first.platform_id) == ("alice", None)
    assert first.details["refs"] == [world["ring"].ref] and first.details["clusters"] == 1
    assert first.details["key"] == AnalystKey.objects.get().prefix
    assert analyst_key not in json.dumps(first.details)
    assert not LookupUsage.objects.exists()
    assert not AuditEntry.objects.filter(action="cluster_read").exists()


# --- who may read it ---------------------------------------------------------------------------------------

ADVISORY_PATHS = ("", "objects/", "manifest/", "objects/{actor}/", "objects/{actor}/versions/")


def test_a_partner_key_never_reaches_the_advisories(world, acme, bazaar):
    actor = stix.threat_actor_id(world["ring"].ref)
    for kp in (acme, bazaar):  # both have sellers in the published ring
        client = kp.client()
        (own,) = client.get("/taxii2/api1/collections/", **TAXII).json()["collections"]
        assert own["id"] == collection_id(kp.platform) != ADVISORIES_COLLECTION_ID
        for path in ADVISORY_PATHS:
            response = client.get(ADVISORIES + path.format(actor=actor), **TAXII)
            assert response.status_code == 404, (kp.platform.slug, path, response.status_code)
            assert response.json()["http_status"] == "404" and response["Content-Type"] == TAXII_MEDIA_TYPE
            assert "Advisor" not in response.content.decode()
    assert not AuditEntry.objects.filter(action="advisory_read").exists()


def test_a_partner_analysts_session_or_no_key_cannot_read_the_advisories(world, bob, anonymous):
    session = APIClient()
    session.force_login(bob)
    for client in (session, anonymous):
        response = client.get(f"{ADVISORIES}objects/", **TAXII)
        assert response.status_code == 401 and response.json()["http_status"] == "401"


def test_an_analyst_key_reads_no_partner_collection(world, analyst_key, acme):
    client = keyed(analyst_key)
    base = f"/taxii2/api1/collections/{collection_id(acme.platform)}/"
    for path in ("", "objects/", "manifest/"):
        assert client.get(base + path, **TAXII).status_code == 404
    assert not LookupUsage.objects.exists()
