"""Which platform's webhook hears what: joined, left, merged, split, confirmed, dismissed and retracted, each
queued in the transaction of the change, only for platforms with a webhook, and only with their own view.

Acme, Bazaar and Third Market report sellers through the API (recomputation inline); the outbox rows are read
back as the events their receivers would get."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from accounts.models import AuditEntry
from exchange.client import webhooks as contract
from graph import webhooks
from graph.actions import FOUR_EYES_STATUSES, do_record_opinion, do_update_cluster
from graph.models import ActorCluster, ClusterMember, RetractionNotice, WebhookDelivery
from tests.admin_world import decided_by_two_analysts
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform
from tests.graph.webhook_helpers import LOCAL_NETWORKS, clear_outbox, events_of, types_of, webhook_on

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhook_settings(settings: Any) -> None:
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = LOCAL_NETWORKS
    settings.EXCHANGE_HELD_MERGE_DAYS = 0  # a bridge seller of one platform merges at once


@pytest.fixture
def hooked(acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform) -> list[KeyedPlatform]:
    for kp in (acme, bazaar, third):
        webhook_on(kp)
    return [acme, bazaar, third]


def report(kp: KeyedPlatform, ref: str, *indicators: tuple[str, str]) -> None:
    assert submit(kp.client(), seller(ref, *indicators)).status_code == 201


def retract(kp: KeyedPlatform, ref: str) -> None:
    response = kp.client().post(f"/api/v1/sellers/{ref}/retract/", {"reason": "appeal"}, format="json")
    assert response.status_code == 200, response.content


def cluster_of(ref: str) -> ActorCluster:
    return ClusterMember.objects.select_related("cluster").get(seller__seller_ref=ref).cluster


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    return events[0]


def test_a_new_cross_platform_cluster_tells_each_platform_its_own_sellers_joined(acme, bazaar, third, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    assert WebhookDelivery.objects.count() == 0  # one seller alone is in no cross-platform cluster
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")

    for kp, own in ((acme, "acme-1"), (bazaar, "bz-1")):
        event = only(events_of(kp))
        assert event["type"] == contract.CLUSTER_JOINED
        assert event["id"].startswith("evt_") and event["created_at"].endswith("Z")
        assert event["data"] == {
            "cluster": {
                "id": cluster.ref,
                "size": 2,
                "platforms": 2,
                "cross_platform": True,
                "risk": cluster.risk,
                "kinds": ["email"],
                "status": "new",
                "dissolved": False,
            },
            "your_sellers": [own],
        }
    assert events_of(third) == []
    # Each platform's batch is audited with counts only.
    entry = AuditEntry.objects.get(action="webhook_queued", platform=acme.platform)
    assert entry.details == {"events": 1, "types": {"cluster.joined": 1}}


def test_a_platform_joining_an_existing_cluster_is_told_and_the_others_are_not(acme, bazaar, third, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    clear_outbox()
    report(third, "t-1", ("email", "ring@example.com"))

    event = only(events_of(third))
    assert event["type"] == contract.CLUSTER_JOINED and event["data"]["your_sellers"] == ["t-1"]
    assert event["data"]["cluster"]["platforms"] == 3
    assert events_of(acme) == events_of(bazaar) == []  # their sellers did not move (the report says it grew)


def test_only_platforms_with_a_webhook_get_events(acme, bazaar, third):
    webhook_on(acme)
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    assert types_of(acme) == [contract.CLUSTER_JOINED]
    assert set(WebhookDelivery.objects.values_list("platform", flat=True)) == {acme.platform.pk}


def test_an_inactive_platform_gets_no_events(acme, bazaar, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    type(acme.platform).objects.filter(pk=acme.platform.pk).update(active=False)
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    assert events_of(acme) == [] and types_of(bazaar) == [contract.CLUSTER_JOINED]


def test_a_retraction_tells_the_retracting_platform_its_seller_left_and_the_others_of_the_retraction(
    acme, bazaar, third, hooked
):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    report(third, "t-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")
    clear_outbox()

    retract(bazaar, "bz-1")

    left = only(events_of(bazaar))
    assert left["type"] == contract.CLUSTER_LEFT
    assert left["data"]["your_sellers"] == ["bz-1"] and left["data"]["cluster"]["id"] == cluster.ref
    for kp, own in ((acme, "acme-1"), (third, "t-1")):
        event = only(events_of(kp))  # still in a cross-platform cluster: no "left" for them
        assert event["type"] == contract.REPORT_RETRACTED
        assert event["data"]["cluster"] == cluster.ref
        assert event["data"]["signals"] == ["cluster"]
        assert event["data"]["first_lookup_match_at"] is None
        assert event["data"]["your_sellers_in_cluster"] == [own]
        assert event["data"]["retracted_at"].endswith("Z")
        assert "bz-1" not in str(event) and "appeal" not in str(event)  # not its reference, not its reason
    notices = RetractionNotice.objects.order_by("platform_id")
    assert [n.platform_id for n in notices] == sorted([acme.platform.pk, third.platform.pk])
    assert {n.cluster_ref for n in notices} == {cluster.ref}


def test_the_last_other_platform_leaving_tells_the_remaining_one_its_sellers_left(acme, bazaar, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(acme, "acme-2", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    clear_outbox()

    retract(bazaar, "bz-1")

    assert sorted(types_of(acme)) == [contract.CLUSTER_LEFT, contract.REPORT_RETRACTED]
    left = only(events_of(acme, contract.CLUSTER_LEFT))
    assert left["data"]["your_sellers"] == ["acme-1", "acme-2"]  # still linked, but no longer cross-platform
    assert left["data"]["cluster"]["cross_platform"] is False


def test_a_lookup_match_is_told_of_the_retraction_even_without_a_cluster(acme, bazaar, third, hooked):
    report(acme, "acme-solo", ("email", "solo@example.com"))
    response = third.client().post(
        "/api/v1/lookups/",
        {"indicators": [{"kind": "email", "hash": th("email", "solo@example.com")}]},
        format="json",
    )
    assert response.status_code == 200 and response.json()["results"][0]["match"] is True
    acme.client().post(  # its own seller matching is no signal about another platform
        "/api/v1/lookups/",
        {"indicators": [{"kind": "email", "hash": th("email", "solo@example.com")}]},
        format="json",
    )
    clear_outbox()

    retract(acme, "acme-solo")

    event = only(events_of(third))
    assert event["type"] == contract.REPORT_RETRACTED
    assert event["data"]["cluster"] is None and event["data"]["signals"] == ["lookup"]
    assert event["data"]["first_lookup_match_at"] is not None
    assert events_of(acme) == events_of(bazaar) == []


def test_a_retraction_overturned_on_appeal_is_its_own_event_type(acme, bazaar, hooked):
    from exchange.models import Seller
    from exchange.retention import do_retract

    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    clear_outbox()
    do_retract(Seller.objects.get(seller_ref="bz-1"), "appeal upheld", "test", overturned=True)
    assert types_of(acme) == [contract.REPORT_OVERTURNED, contract.CLUSTER_LEFT]
    assert RetractionNotice.objects.get().overturned is True


def test_a_merge_tells_every_platform_that_was_in_a_merged_cluster(acme, bazaar, third, hooked):
    report(acme, "acme-1", ("phone", "+4930123456"))
    report(bazaar, "bz-1", ("phone", "+4930123456"))
    report(acme, "acme-2", ("phone", "+4930999999"))
    report(third, "t-2", ("phone", "+4930999999"))
    first, second = cluster_of("acme-1"), cluster_of("t-2")
    clear_outbox()

    report(bazaar, "bz-bridge", ("phone", "+4930123456"), ("phone", "+4930999999"))

    merged = cluster_of("bz-bridge")
    assert merged.pk in {first.pk, second.pk} and merged.size == 5
    absorbed = second if merged.pk == first.pk else first
    for kp, own in ((acme, ["acme-1", "acme-2"]), (third, ["t-2"]), (bazaar, ["bz-1", "bz-bridge"])):
        event = only(events_of(kp, contract.CLUSTER_MERGED))
        assert event["data"]["cluster"]["id"] == merged.ref
        assert event["data"]["your_sellers"] == own
        assert event["data"]["clusters_merged"] == 1
    assert only(events_of(third, contract.CLUSTER_MERGED))["data"]["your_former_clusters"] == (
        [absorbed.ref] if absorbed.pk == second.pk else []
    )
    # The bridge itself joined a cross-platform cluster; nobody else "joined" or "left".
    assert only(events_of(bazaar, contract.CLUSTER_JOINED))["data"]["your_sellers"] == ["bz-bridge"]
    assert sorted(types_of(acme)) == sorted(types_of(third)) == [contract.CLUSTER_MERGED]


def test_retracting_the_bridge_splits_the_cluster_and_tells_each_platform_where_its_sellers_went(
    acme, bazaar, third, hooked
):
    report(acme, "acme-1", ("phone", "+4930123456"))
    report(bazaar, "bz-1", ("phone", "+4930123456"))
    report(acme, "acme-2", ("phone", "+4930999999"))
    report(third, "t-2", ("phone", "+4930999999"))
    report(bazaar, "bz-bridge", ("phone", "+4930123456"), ("phone", "+4930999999"))
    merged = cluster_of("bz-bridge")
    clear_outbox()

    retract(bazaar, "bz-bridge")

    pieces = {ref: cluster_of(ref).ref for ref in ("acme-1", "acme-2", "t-2", "bz-1")}
    assert pieces["acme-1"] != pieces["acme-2"]
    split = only(events_of(acme, contract.CLUSTER_SPLIT))
    assert split["data"]["cluster"]["id"] == merged.ref
    assert split["data"]["your_sellers"] == ["acme-1", "acme-2"]
    assert split["data"]["pieces_in_all"] == 2
    assert sorted((p["cluster"]["id"], p["your_sellers"]) for p in split["data"]["pieces"]) == sorted(
        [(pieces["acme-1"], ["acme-1"]), (pieces["acme-2"], ["acme-2"])]
    )
    third_split = only(events_of(third, contract.CLUSTER_SPLIT))
    assert [(p["cluster"]["id"], p["your_sellers"]) for p in third_split["data"]["pieces"]] == [
        (pieces["t-2"], ["t-2"])
    ]
    # Acme and Third had been in the cluster with the bridge: they hear of its retraction too.
    assert only(events_of(acme, contract.REPORT_RETRACTED))["data"]["cluster"] == merged.ref
    assert only(events_of(third, contract.REPORT_RETRACTED))["data"]["signals"] == ["cluster"]
    # Bazaar's own bridge left; its other seller went with a piece (named in its split event).
    bz_split = only(events_of(bazaar, contract.CLUSTER_SPLIT))
    assert [p["your_sellers"] for p in bz_split["data"]["pieces"]] == [["bz-1"], ["bz-bridge"]]
    assert bz_split["data"]["pieces"][-1]["cluster"] is None
    assert only(events_of(bazaar, contract.CLUSTER_LEFT))["data"]["your_sellers"] == ["bz-bridge"]


@pytest.mark.parametrize(
    ("path", "event_type"),
    [
        (["investigating", "confirmed"], contract.CLUSTER_CONFIRMED),
        (["dismissed"], contract.CLUSTER_DISMISSED),
    ],
)
def test_confirming_or_dismissing_a_cluster_tells_its_platforms(
    acme, bazaar, third, hooked, path, event_type
):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")
    clear_outbox()

    for status in path:  # confirming and dismissing take two exchange analysts (four-eyes review)
        if status in FOUR_EYES_STATUSES:
            decided_by_two_analysts(cluster, status)
        else:
            do_update_cluster(cluster, "alice", {"status": status})

    for kp, own in ((acme, "acme-1"), (bazaar, "bz-1")):
        event = only(events_of(kp))  # investigating tells nobody
        assert event["type"] == event_type
        assert event["data"]["cluster"]["status"] == path[-1]
        assert event["data"]["previous_status"] == ("investigating" if len(path) == 2 else "new")
        assert event["data"]["your_sellers"] == [own]
    assert events_of(third) == []


def test_a_seller_its_platform_detached_with_a_false_positive_is_out_of_its_events(
    acme, bazaar, third, hooked
):
    """A false-positive opinion takes the seller out of the cluster for its platform's views at once: its
    events do not name it, and a platform with no seller left in the cluster hears nothing of it."""
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(acme, "acme-2", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    report(third, "t-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")
    do_record_opinion(acme.key, cluster.ref, "false_positive", seller_ref="acme-1")
    do_record_opinion(third.key, cluster.ref, "false_positive", seller_ref="t-1")
    clear_outbox()

    decided_by_two_analysts(cluster, "dismissed")

    assert only(events_of(acme))["data"]["your_sellers"] == ["acme-2"]
    assert only(events_of(bazaar))["data"]["your_sellers"] == ["bz-1"]
    assert events_of(third) == []  # it sees no seller of its own in the cluster any more
    clear_outbox()
    retract(bazaar, "bz-1")  # acme-1 and acme-2 stay linked with t-1: no membership change for them
    assert [e["data"]["your_sellers_in_cluster"] for e in events_of(acme, contract.REPORT_RETRACTED)] == [
        ["acme-2"]
    ]


def test_an_opinion_tells_the_other_platforms_that_see_the_cluster_the_kind_and_counts_never_who(
    acme, bazaar, third, hooked
):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    report(third, "t-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")
    clear_outbox()

    do_record_opinion(acme.key, cluster.ref, "seen_too", note="acme-1 sold fakes")
    assert events_of(acme) == []  # the platform that gave it is not told of its own opinion
    for kp in (bazaar, third):
        event = only(events_of(kp))
        assert event["type"] == contract.CLUSTER_OPINION_ADDED
        assert event["data"]["cluster"]["id"] == cluster.ref
        assert event["data"]["opinion"] == "seen_too" and event["data"]["recorded_at"].endswith("Z")
        assert event["data"]["opinions"] == {"seen_too": 1, "false_positive": 0, "disputed": 0, "actioned": 0}
        body = WebhookDelivery.objects.get(event_id=event["id"]).body
        for secret in ("acme", "sold fakes", "acme-1", acme.platform.name):
            assert secret not in body

    clear_outbox()
    do_record_opinion(third.key, cluster.ref, "false_positive", seller_ref="t-1")
    assert [only(events_of(kp))["data"]["opinions"]["false_positive"] for kp in (acme, bazaar)] == [1, 1]
    assert events_of(third) == []
    clear_outbox()
    do_record_opinion(bazaar.key, cluster.ref, "disputed")
    assert only(events_of(acme))["data"]["opinion"] == "disputed"
    assert events_of(third) == []  # it detached its only seller there: it no longer sees the cluster


def test_an_appeal_upheld_through_the_api_is_sent_as_overturned(acme, bazaar, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    ref = cluster_of("bz-1").ref
    clear_outbox()
    response = bazaar.client().post("/api/v1/sellers/bz-1/appeals/", {"outcome": "upheld"}, format="json")
    assert response.status_code in (200, 201), response.content
    event = only(events_of(acme, contract.REPORT_OVERTURNED))
    assert event["data"]["cluster"] == ref and event["data"]["your_sellers_in_cluster"] == ["acme-1"]
    assert events_of(acme, contract.REPORT_RETRACTED) == []
    assert RetractionNotice.objects.get(platform=acme.platform).overturned is True


def test_events_roll_back_with_the_change(acme, bazaar, hooked):
    report(acme, "acme-1", ("email", "ring@example.com"))
    report(bazaar, "bz-1", ("email", "ring@example.com"))
    cluster = cluster_of("acme-1")
    clear_outbox()
    with pytest.raises(RuntimeError), transaction.atomic():
        webhooks.queue_status_change(ActorCluster(pk=cluster.pk, ref=cluster.ref, status="confirmed"), "new")
        assert WebhookDelivery.objects.count() == 2
        raise RuntimeError
    assert WebhookDelivery.objects.count() == 0


def test_emit_builds_each_platforms_own_view_and_refuses_unknown_types(acme, bazaar, third, hooked):
    cluster = ActorCluster.objects.create(size=2, platform_count=2, cross_platform=True)
    queued = webhooks.emit(
        [acme.platform.pk, bazaar.platform.pk],
        contract.CLUSTER_OPINION_ADDED,
        lambda platform_id: (
            None
            if platform_id == bazaar.platform.pk
            else {"cluster": webhooks.cluster_view(cluster), "opinion": "seen_too", "counts": {"seen_too": 1}}
        ),
        cluster=cluster,
    )
    assert queued == 1
    assert only(events_of(acme))["data"]["opinion"] == "seen_too"
    with pytest.raises(ValueError, match="unknown webhook event type"):
        webhooks.emit([acme.platform.pk], "cluster.exploded", lambda platform_id: {})


def test_every_event_id_is_unique_and_matches_its_row(acme, bazaar, third, hooked):
    for n in range(3):
        report(acme, f"acme-{n}", ("email", f"ring{n}@example.com"))
        report(bazaar, f"bz-{n}", ("email", f"ring{n}@example.com"))
    rows = list(WebhookDelivery.objects.all())
    assert len(rows) == 6 and len({row.event_id for row in rows}) == 6
    for row in rows:
        assert events_of_row(row)["id"] == row.event_id


def events_of_row(row: WebhookDelivery) -> dict[str, Any]:
    import json

    return dict(json.loads(row.body))
