"""Partners' opinions on clusters through the API (issue 15, "Opinions"): recording them on a cluster of one's own
sellers or on a lookup match, what others see of them (counts, never who), the risk they move (the same
whether recomputed incrementally or in full), and a false positive's detaching of the seller.

The world (tests/admin_world.py): the ring acme-1, acme-2, baz-1, baz-2 across Acme and Bazaar; acme-3 ~ acme-4
on Acme alone; baz-3 ~ baz-4 on Bazaar alone; loners acme-solo and baz-solo.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange.contract import OPINION_KINDS, OPINION_NOTE_MAX_LENGTH
from graph.clustering import recluster_full
from graph.models import ActorCluster, Opinion, OpinionKind, Review
from graph.risk import CORROBORATION_STEP, FALSE_POSITIVE_STEP
from tests.admin_world import AdminWorld, build
from tests.builders import th
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> AdminWorld:
    return build(acme, bazaar)


def give(kp: KeyedPlatform, ref: str, body: Any) -> Any:
    return kp.client().post(f"/api/v1/clusters/{ref}/opinions/", body, format="json")


def detail(kp: KeyedPlatform, ref: str) -> Any:
    return kp.client().get(f"/api/v1/clusters/{ref}/")


def refreshed(cluster: ActorCluster) -> ActorCluster:
    return ActorCluster.objects.get(pk=cluster.pk)


def test_the_opinion_kinds_are_the_partner_contracts() -> None:
    assert set(OpinionKind.values) == set(OPINION_KINDS)


# --- recording ---------------------------------------------------------------------------------------------


def test_a_partner_records_an_opinion_on_a_cluster_its_seller_is_in(world: AdminWorld, acme) -> None:
    response = give(
        acme, world.ring.ref, {"opinion": "seen_too", "seller_ref": "acme-1", "note": "same ring"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "opinion": "seen_too",
        "seller_ref": "acme-1",
        "note": "same ring",
        "acted_at": None,
        "created_at": body["created_at"],
        "review": None,
    }
    opinion = Opinion.objects.get()
    assert (opinion.cluster_id, opinion.platform_id, opinion.via, opinion.actor) == (
        world.ring.pk,
        acme.platform.pk,
        "member",
        acme.key.prefix,
    )
    entry = AuditEntry.objects.get(action="opinion_recorded")
    assert (entry.actor, entry.platform_id, entry.object_type, entry.object_id) == (
        acme.key.prefix,
        acme.platform.pk,
        "cluster",
        str(world.ring.pk),
    )
    assert entry.details == {
        "opinion": opinion.pk,
        "kind": "seen_too",
        "seller": opinion.seller_id,
        "via": "member",
    }
    assert "same ring" not in str(entry.details)  # the note is the partner's free text: not in the log


def test_an_action_keeps_its_time_and_the_first_signal(world: AdminWorld, acme) -> None:
    acted = timezone.now() - timedelta(minutes=1)
    response = give(
        acme, world.ring.ref, {"opinion": "actioned", "seller_ref": "acme-2", "acted_at": acted.isoformat()}
    )
    assert response.status_code == 201, response.content
    assert response.json()["acted_at"].startswith(acted.strftime("%Y-%m-%dT%H:%M"))
    opinion = Opinion.objects.get()
    seller = opinion.seller
    assert seller is not None and opinion.first_signal_at == seller.created_at
    assert opinion.time_to_action == acted - seller.created_at


def test_the_cluster_page_lists_ones_own_opinions_and_everyones_counts_never_who(
    world: AdminWorld, acme, bazaar
) -> None:
    assert (
        give(acme, world.ring.ref, {"opinion": "seen_too", "note": "acme's private note"}).status_code == 201
    )
    assert give(acme, world.ring.ref, {"opinion": "disputed", "seller_ref": "acme-2"}).status_code == 201
    assert give(bazaar, world.ring.ref, {"opinion": "seen_too"}).status_code == 201
    assert give(bazaar, world.ring.ref, {"opinion": "seen_too", "seller_ref": "baz-1"}).status_code == 201

    acme_view = detail(acme, world.ring.ref).json()
    bazaar_view = detail(bazaar, world.ring.ref).json()
    # Platforms per kind, each once however many opinions it gave; the same for everyone.
    counts = {"seen_too": 2, "false_positive": 0, "disputed": 1, "actioned": 0}
    assert acme_view["opinions"] == bazaar_view["opinions"] == counts
    assert [(o["opinion"], o["seller_ref"]) for o in acme_view["your_opinions"]] == [
        ("disputed", "acme-2"),
        ("seen_too", None),
    ]
    assert [(o["opinion"], o["seller_ref"]) for o in bazaar_view["your_opinions"]] == [
        ("seen_too", "baz-1"),
        ("seen_too", None),
    ]
    # Never who: no other platform's note, key, seller refs or opinion ids.
    text = str(bazaar_view)
    acme_ids = set(Opinion.objects.filter(platform=acme.platform).values_list("pk", flat=True))
    assert "acme's private note" not in text and acme.key.prefix not in text and "acme-" not in text
    assert not acme_ids & {o["id"] for o in bazaar_view["your_opinions"]}


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"opinion": "liked"}, "opinion"),
        ({}, "opinion"),
        ({"opinion": "seen_too", "who": "me"}, "who"),
        ({"opinion": "seen_too", "note": "x" * (OPINION_NOTE_MAX_LENGTH + 1)}, "note"),
        ({"opinion": "seen_too", "note": 5}, "note"),
        ({"opinion": "seen_too", "seller_ref": "no spaces allowed"}, "seller_ref"),
        ({"opinion": "actioned"}, "acted_at"),
        ({"opinion": "actioned", "acted_at": "2026-01-01T00:00:00"}, "acted_at"),  # no timezone
        ({"opinion": "actioned", "acted_at": "yesterday"}, "acted_at"),
        ({"opinion": "seen_too", "acted_at": "2026-01-01T00:00:00Z"}, "acted_at"),
        ({"opinion": "false_positive"}, "seller_ref"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    world: AdminWorld, acme, body: dict[str, Any], field: str
) -> None:
    response = give(acme, world.ring.ref, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"], response.json()
    assert not Opinion.objects.exists() and not AuditEntry.objects.filter(action="opinion_recorded").exists()


def test_an_action_in_the_future_or_before_the_first_signal_is_refused(world: AdminWorld, acme) -> None:
    future = timezone.now() + timedelta(hours=1)
    response = give(acme, world.ring.ref, {"opinion": "actioned", "acted_at": future.isoformat()})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["acted_at"] == ["is in the future"]
    # Acme reported its sellers a moment ago: an action a day earlier was not taken on this signal.
    before = timezone.now() - timedelta(days=1)
    response = give(acme, world.ring.ref, {"opinion": "actioned", "acted_at": before.isoformat()})
    assert response.status_code == 400
    assert "before the first signal" in response.json()["error"]["details"]["acted_at"][0]
    assert not Opinion.objects.exists()


def test_ones_own_seller_outside_the_cluster_is_a_400(world: AdminWorld, acme) -> None:
    response = give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-3"})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "seller_ref": ["your seller 'acme-3' is not in this cluster"]
    }
    assert not Opinion.objects.exists()


# --- another platform's things are not found ----------------------------------------------------------------


def test_another_platforms_cluster_and_an_unknown_one_are_404s(world: AdminWorld, acme) -> None:
    for ref in (world.bazaar_only.ref, "ac_0000000000000000", "nothing-like-a-ref"):
        response = give(acme, ref, {"opinion": "seen_too"})
        assert response.status_code == 404, (ref, response.status_code)
        assert response.json()["error"]["code"] == "not_found"
    assert not Opinion.objects.exists()


def test_another_platforms_seller_answers_as_not_found(world: AdminWorld, acme) -> None:
    """baz-1 is in the ring, but Bazaar's: for Acme it does not exist, exactly like a ref nobody reported."""
    answers = [
        give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": ref})
        for ref in ("baz-1", "never-reported")
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json() == answers[1].json()
    assert not Opinion.objects.exists()


def test_a_key_without_the_submit_scope_cannot_give_opinions(world: AdminWorld, acme) -> None:
    _, secret = ApiKey.generate(acme.platform, ["read", "lookup"])
    client = KeyedPlatform(acme.platform, acme.key, secret).client()
    response = client.post(
        f"/api/v1/clusters/{world.ring.ref}/opinions/", {"opinion": "seen_too"}, format="json"
    )
    assert response.status_code == 403
    assert not Opinion.objects.exists()


# --- on a lookup match --------------------------------------------------------------------------------------


def test_a_platform_gives_its_opinion_on_a_cluster_its_lookup_showed_it(world: AdminWorld, third) -> None:
    # Third reports nobody: before its lookup the ring does not exist for it.
    assert give(third, world.ring.ref, {"opinion": "seen_too"}).status_code == 404
    body = {"indicators": [{"kind": "tax_id", "hash": th("tax_id", "DE123456789")}]}
    answer = third.client().post("/api/v1/lookups/", body, format="json").json()["results"][0]
    assert answer["cluster"] == world.ring.ref
    entry = AuditEntry.objects.get(action="lookup", platform=third.platform)
    assert entry.details["refs"] == [world.ring.ref]  # what the answer revealed, as cluster reads record it

    acted = timezone.now()
    response = give(third, world.ring.ref, {"opinion": "actioned", "acted_at": acted.isoformat()})
    assert response.status_code == 201, response.content
    opinion = Opinion.objects.get()
    assert (opinion.via, opinion.first_signal_at) == ("lookup", entry.created_at)
    # What the lookup did not show stays out of reach, and the ring's page is still not Third's to read.
    assert give(third, world.acme_only.ref, {"opinion": "seen_too"}).status_code == 404
    assert detail(third, world.ring.ref).status_code == 404
    # Third has no seller in the ring: naming one of its own is a 404 (it reported none).
    assert give(third, world.ring.ref, {"opinion": "false_positive", "seller_ref": "x-1"}).status_code == 404


def test_another_platforms_lookup_does_not_open_a_cluster_to_the_caller(
    world: AdminWorld, acme, third
) -> None:
    body = {"indicators": [{"kind": "phone", "hash": th("phone", "+4930222222")}]}
    assert acme.client().post("/api/v1/lookups/", body, format="json").status_code == 200
    # Acme's lookup matched nothing of Bazaar's alone (a store name and an address), and a lookup by Acme never
    # lets Third in.
    assert give(third, world.bazaar_only.ref, {"opinion": "seen_too"}).status_code == 404
    assert give(acme, world.bazaar_only.ref, {"opinion": "seen_too"}).status_code == 404


# --- risk ---------------------------------------------------------------------------------------------------


def test_corroboration_raises_the_risk_and_a_false_positive_lowers_it_as_a_full_recluster_does(
    world: AdminWorld, acme, bazaar, third
) -> None:
    ring = refreshed(world.ring)
    base = ring.risk
    assert ring.risk_parts["opinions"] == 0
    # Bazaar corroborates twice: one platform counts once.
    assert give(bazaar, ring.ref, {"opinion": "seen_too"}).status_code == 201
    assert give(bazaar, ring.ref, {"opinion": "seen_too", "seller_ref": "baz-2"}).status_code == 201
    assert refreshed(ring).risk_parts["opinions"] == CORROBORATION_STEP
    # Third acts on what its lookup showed it: a second corroborating platform.
    body = {"indicators": [{"kind": "email", "hash": th("email", "ring@example.com")}]}
    third.client().post("/api/v1/lookups/", body, format="json")
    assert (
        give(third, ring.ref, {"opinion": "actioned", "acted_at": timezone.now().isoformat()}).status_code
        == 201
    )
    after_up = refreshed(ring)
    assert after_up.risk_parts["opinions"] == 2 * CORROBORATION_STEP
    assert after_up.risk == min(base + 2 * CORROBORATION_STEP, 100) == sum(after_up.risk_parts.values())
    # A disputed opinion moves nothing.
    assert give(acme, ring.ref, {"opinion": "disputed", "seller_ref": "acme-1"}).status_code == 201
    assert refreshed(ring).risk == after_up.risk
    # Acme says acme-2 is not this actor.
    assert give(acme, ring.ref, {"opinion": "false_positive", "seller_ref": "acme-2"}).status_code == 201
    after_down = refreshed(ring)
    assert after_down.risk_parts["opinions"] == 2 * CORROBORATION_STEP - FALSE_POSITIVE_STEP
    assert after_down.risk == sum(after_down.risk_parts.values())

    # A full recomputation gives the same risk and parts; so does rerunning it.
    recluster_full()
    full = refreshed(ring)
    assert (full.risk, full.risk_parts) == (after_down.risk, after_down.risk_parts)
    assert full.changed_at == after_down.changed_at  # membership untouched
    # Opinions on one cluster move no other cluster.
    assert refreshed(world.acme_only).risk_parts["opinions"] == 0


# --- false positives detach the seller for its platform ------------------------------------------------------


def test_a_false_positive_detaches_the_seller_from_its_platforms_views_at_once(
    world: AdminWorld, acme, bazaar
) -> None:
    before_bazaar = detail(bazaar, world.ring.ref).json()
    response = give(
        acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-2", "note": "ours"}
    )
    assert response.status_code == 201 and response.json()["review"] == "pending"
    # Acme's cluster page no longer lists acme-2; acme-2's page shows no cluster; the ring stays (acme-1).
    view = detail(acme, world.ring.ref).json()
    assert [s["seller_ref"] for s in view["your_sellers"]] == ["acme-1"]
    assert acme.client().get("/api/v1/sellers/acme-2/").json()["cluster"] is None
    assert acme.client().get("/api/v1/sellers/acme-1/").json()["cluster"]["id"] == world.ring.ref
    listed = [c["id"] for c in acme.client().get("/api/v1/clusters/").json()["results"]]
    assert world.ring.ref in listed
    # Bazaar's view of Acme's members is unchanged: only Acme's own view is detached.
    after_bazaar = detail(bazaar, world.ring.ref).json()
    assert (
        after_bazaar["other_platforms"]
        == before_bazaar["other_platforms"]
        == [{"platform": "Platform A", "accounts": 2}]
    )
    assert after_bazaar["opinions"]["false_positive"] == 1

    # Giving it again while it stands answers the standing one (200) and stores nothing.
    again = give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-2"})
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert Opinion.objects.count() == 1
    # Another opinion on the detached seller is refused: it is not in the cluster for Acme any more.
    other = give(acme, world.ring.ref, {"opinion": "seen_too", "seller_ref": "acme-2"})
    assert other.status_code == 400
    assert "detached" in other.json()["error"]["details"]["seller_ref"][0]

    # Both of Acme's sellers detached: the ring is gone from Acme's list and its page is a 404.
    assert (
        give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-1"}).status_code == 201
    )
    listed = [c["id"] for c in acme.client().get("/api/v1/clusters/").json()["results"]]
    assert world.ring.ref not in listed and world.acme_only.ref in listed
    assert detail(acme, world.ring.ref).status_code == 404
    assert detail(bazaar, world.ring.ref).status_code == 200


def test_a_rejected_false_positive_shows_the_seller_again_and_lifts_its_risk_effect(
    world: AdminWorld, acme, alice
) -> None:
    from graph.actions import do_review_false_positive

    base = refreshed(world.ring)
    assert (
        give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-2"}).status_code == 201
    )
    opinion = Opinion.objects.get()
    assert refreshed(world.ring).risk < base.risk
    assert do_review_false_positive(opinion, alice, accept=False)
    assert not do_review_false_positive(opinion, alice, accept=True)  # no longer pending
    assert opinion.review == Review.REJECTED and opinion.reviewed_by_id == alice.pk
    assert [s["seller_ref"] for s in detail(acme, world.ring.ref).json()["your_sellers"]] == [
        "acme-1",
        "acme-2",
    ]
    assert (refreshed(world.ring).risk, refreshed(world.ring).risk_parts) == (base.risk, base.risk_parts)
    entry = AuditEntry.objects.get(action="false_positive_rejected")
    assert (entry.actor, entry.platform_id, entry.object_id) == ("alice", acme.platform.pk, str(opinion.pk))
    # A new false positive may be given after a rejection.
    assert (
        give(acme, world.ring.ref, {"opinion": "false_positive", "seller_ref": "acme-2"}).status_code == 201
    )
