"""Clusters as the Django side stores and serves them: linking through the API, stable identity, events,
incremental == full, and partner scoping of /api/v1/clusters/."""

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from exchange.models import Indicator, Linking, Seller
from exchange.retention import do_retract
from graph.clustering import recluster_full, recluster_incremental, refresh_expired
from graph.models import ActorCluster, ClusterEvent, ClusterMember
from tests.builders import seller, submit

pytestmark = pytest.mark.django_db


def clusters() -> set[frozenset[str]]:
    members: dict[int, set[str]] = {}
    for cluster_id, platform, ref in ClusterMember.objects.filter(
        cluster__dissolved_at__isnull=True
    ).values_list("cluster_id", "seller__platform__slug", "seller__seller_ref"):
        members.setdefault(cluster_id, set()).add(f"{platform}:{ref}")
    return {frozenset(m) for m in members.values()}


def events(kind: str | None = None) -> list[ClusterEvent]:
    query = ClusterEvent.objects.order_by("id")
    return list(query.filter(kind=kind) if kind else query)


def test_shared_strong_indicator_links_across_platforms(acme, bazaar):
    submit(acme.client(), seller("a1", ("email", "Ring.Leader@gmail.com"), ("phone", "+4930111111")))
    submit(bazaar.client(), seller("b1", ("email", "ringleader+shop@googlemail.com")))
    assert clusters() == {frozenset({"acme:a1", "bazaar:b1"})}
    cluster = ActorCluster.objects.get()
    assert (cluster.size, cluster.platform_count, cluster.cross_platform) == (2, 2, True)
    assert cluster.kinds == ["email"]
    assert set(cluster.risk_parts) == {"platforms", "reports", "evidence", "recency", "opinions"}
    assert cluster.risk == sum(cluster.risk_parts.values()) > 0
    assert [e.kind for e in events()] == ["created"]


def test_one_weak_indicator_does_not_link_but_two_different_do(acme, bazaar):
    submit(acme.client(), seller("a1", ("store_name", "Best Deals"), ("email", "a@x.com")))
    submit(bazaar.client(), seller("b1", ("store_name", "best-deals!"), ("email", "b@x.com")))
    assert clusters() == set()
    submit(acme.client(), seller("a1", ("shipping_address", "1 Dock Rd, Hamburg")))
    submit(bazaar.client(), seller("b1", ("shipping_address", "1 dock road hamburg")))
    assert clusters() == {frozenset({"acme:a1", "bazaar:b1"})}


def test_hub_indicator_above_threshold_does_not_glue(acme, bazaar, settings):
    # Divisor 1: each platform counts for up to the whole threshold, so two platforms' holders make a hub.
    settings.EXCHANGE_LINK_THRESHOLDS = {"phone": 3}
    settings.EXCHANGE_HUB_PLATFORM_DIVISOR = 1
    submit(
        acme.client(), *[seller(f"a{i}", ("phone", "+4930999999"), ("email", f"{i}@x.com")) for i in range(2)]
    )
    submit(
        bazaar.client(),
        *[seller(f"b{i}", ("phone", "+4930999999"), ("email", f"b{i}@x.com")) for i in range(2)],
    )
    assert clusters() == set()
    submit(bazaar.client(), seller("b9", ("email", "0@x.com")))
    assert clusters() == {frozenset({"acme:a0", "bazaar:b9"})}


def test_override_common_and_include_trigger_recomputation(acme, bazaar):
    submit(acme.client(), seller("a1", ("phone", "+4930123456")))
    submit(bazaar.client(), seller("b1", ("phone", "+4930123456")))
    assert len(clusters()) == 1
    indicator = Indicator.objects.get()
    Indicator.objects.filter(pk=indicator.pk).update(linking=Linking.COMMON)
    recluster_incremental(indicators=[indicator.pk])
    assert clusters() == set()
    assert events()[-1].kind == "dissolved"
    Indicator.objects.filter(pk=indicator.pk).update(linking=Linking.INCLUDE)
    recluster_incremental(indicators=[indicator.pk])
    assert len(clusters()) == 1


def test_retraction_stops_linking_at_once(acme, bazaar):
    submit(acme.client(), seller("a1", ("email", "x@x.com")), seller("a2", ("phone", "+4930123456")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com"), ("phone", "+4930123456")))
    assert clusters() == {frozenset({"acme:a1", "acme:a2", "bazaar:b1"})}
    do_retract(Seller.objects.get(seller_ref="b1"), "appeal upheld", "test")
    assert clusters() == set()


def test_expired_members_leave_on_refresh(acme, bazaar, settings):
    submit(acme.client(), seller("a1", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")))
    Seller.objects.filter(seller_ref="a1").update(expires_at=timezone.now() - timedelta(seconds=1))
    refresh_expired()
    assert clusters() == set()


def test_stable_identity_grow_merge_split_dissolve(acme, bazaar):
    c = acme.client()
    submit(c, seller("a1", ("email", "one@x.com")), seller("a2", ("email", "one@x.com")))
    first = ActorCluster.objects.get()
    # grow: a third seller joins
    submit(c, seller("a3", ("email", "one@x.com")))
    assert ActorCluster.objects.live().get().pk == first.pk
    assert events()[-1].kind == "grew" and (events()[-1].members_before, events()[-1].members_after) == (2, 3)
    # a second cluster, then a seller bridging both: the larger keeps its id, the smaller is merged
    submit(c, seller("a4", ("phone", "+4930777777")), seller("a5", ("phone", "+4930777777")))
    second = ActorCluster.objects.live().exclude(pk=first.pk).get()
    first.status, first.notes = "investigating", "known ring"
    first.save(update_fields=["status", "notes"])
    second.notes = "seen on marketplace B"
    second.save(update_fields=["notes"])
    submit(c, seller("a6", ("email", "one@x.com"), ("phone", "+4930777777")))
    merged = ActorCluster.objects.live().get()
    assert merged.pk == first.pk and merged.size == 6
    assert merged.status == "investigating" and "seen on marketplace B" in merged.notes
    assert {e.kind for e in events()[-2:]} == {"merged"}
    # split: retracting the bridge separates them again; the piece without the id inherits the notes
    do_retract(Seller.objects.get(seller_ref="a6"), "appeal", "test")
    live = ActorCluster.objects.live().order_by("id")
    assert [c.size for c in live] == [3, 2]
    assert live[0].pk == first.pk
    assert live[1].status == "investigating"
    assert any(e.kind == "split" for e in events())
    # dissolve
    for ref in ("a4", "a5"):
        do_retract(Seller.objects.get(seller_ref=ref), "appeal", "test")
    assert events()[-1].kind == "dissolved"
    assert ActorCluster.objects.live().count() == 1


def test_full_recluster_is_idempotent_and_keeps_ids(acme, bazaar):
    submit(acme.client(), seller("a1", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")))
    before = {(c.pk, c.ref) for c in ActorCluster.objects.all()}
    event_count = ClusterEvent.objects.count()
    summary = recluster_full()
    assert summary.clusters == 1 and summary.cross_platform == 1
    assert {(c.pk, c.ref) for c in ActorCluster.objects.all()} == before
    assert ClusterEvent.objects.count() == event_count


def test_random_sequences_incremental_equals_full(acme, bazaar, third, settings):
    """After every step of a random sequence of submissions and retractions, the clusters maintained
    incrementally equal a full recomputation (the pure core has the hypothesis version of this)."""

    # Three platforms, each counting for at most ceil(threshold / 2) holders: hubs need two or three of them.
    settings.EXCHANGE_LINK_THRESHOLDS = {"phone": 4, "email": 4, "store_name": 3, "shipping_address": 3}
    settings.EXCHANGE_HUB_PLATFORM_DIVISOR = 2
    rng = random.Random(42)
    pool = {
        "email": [f"e{i}@x.com" for i in range(8)],
        "phone": [f"+49301234{i:03d}" for i in range(8)],
        "store_name": [f"shop {i}" for i in range(4)],
        "shipping_address": [f"{i} harbour street" for i in range(4)],
    }
    platforms = [acme, bazaar, third]
    for step in range(60):
        if step % 5 == 4 and Seller.objects.linkable().exists():
            victim = rng.choice(list(Seller.objects.linkable()))
            do_retract(victim, "appeal", "test")
        else:
            kinds = rng.sample(list(pool), k=rng.randint(1, 3))
            indicators = [(k, rng.choice(pool[k])) for k in kinds]
            submit(
                rng.choice(platforms).client(),
                seller(f"s{rng.randint(0, 20)}", *indicators, reported_at=timezone.now()),
            )
        incremental = clusters()
        recluster_full()
        assert clusters() == incremental, f"step {step}"


def test_partner_sees_only_clusters_with_its_sellers_and_others_as_counts(acme, bazaar, third, settings):
    submit(acme.client(), seller("a1", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")), seller("b2", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b3", ("phone", "+4930555555")))
    submit(third.client(), seller("t1", ("phone", "+4930555555")))
    listing = acme.client().get("/api/v1/clusters/").json()
    assert listing["count"] == 1
    ref = listing["results"][0]["id"]
    detail = acme.client().get(f"/api/v1/clusters/{ref}/").json()
    assert [s["seller_ref"] for s in detail["your_sellers"]] == ["a1"]
    assert detail["other_platforms"] == [{"platform": "Platform A", "accounts": 2}]
    assert "'b1'" not in str(detail) and "Bazaar" not in str(detail)
    settings.EXCHANGE_REVEAL_PLATFORM_NAMES = True
    revealed = acme.client().get(f"/api/v1/clusters/{ref}/").json()
    assert revealed["other_platforms"] == [{"platform": "Bazaar North", "accounts": 2}]
    other_ref = ActorCluster.objects.exclude(ref=ref).get().ref
    assert acme.client().get(f"/api/v1/clusters/{other_ref}/").status_code == 404
    assert acme.client().get("/api/v1/sellers/a1/").json()["cluster"]["id"] == ref


def test_lookup_reports_cluster_and_risk(acme, bazaar):
    from tests.builders import th

    submit(bazaar.client(), seller("b1", ("email", "x@x.com")), seller("b2", ("email", "x@x.com")))
    response = acme.client().post(
        "/api/v1/lookups/", {"indicators": [{"kind": "email", "hash": th("email", "x@x.com")}]}, format="json"
    )
    result = response.json()["results"][0]
    assert result["cluster"] == ActorCluster.objects.get().ref and result["risk"] > 0
    assert result["other_platforms"] == 1 and result["reported_sellers"] == 2


def test_cluster_list_has_no_query_per_row(acme, bazaar, django_assert_max_num_queries):
    for i in range(15):
        submit(acme.client(), seller(f"a{i}", ("email", f"{i}@x.com")))
        submit(bazaar.client(), seller(f"b{i}", ("email", f"{i}@x.com")))
    client = acme.client()
    # 6, plus charging the page's clusters to the quota and its audit entry (5 statements on SQLite).
    with django_assert_max_num_queries(11):
        assert client.get("/api/v1/clusters/").json()["count"] == 15


@pytest.mark.django_db(transaction=True)
def test_worker_mode_enqueues_in_the_same_transaction_and_the_worker_applies_it(acme, bazaar, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the Procrastinate worker needs PostgreSQL")
    from procrastinate.contrib.django import app
    from procrastinate.contrib.django.models import ProcrastinateJob

    settings.EXCHANGE_TASK_MODE = "worker"
    submit(acme.client(), seller("a1", ("email", "x@x.com")))
    # A rejected batch enqueues nothing: the job is written in the submission's transaction.
    assert (
        submit(bazaar.client(), {**seller("b0", ("email", "x@x.com")), "status": "bogus"}).status_code == 400
    )
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")))
    assert ProcrastinateJob.objects.filter(task_name__endswith="recompute_clusters").count() == 2  # type: ignore[misc]
    assert clusters() == set()  # nothing computed inline
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:  # type: ignore[attr-defined]
        worker_app.run_worker(
            wait=False, install_signal_handlers=False, listen_notify=False, queues=["clusters"]
        )
    assert clusters() == {frozenset({"acme:a1", "bazaar:b1"})}
    jobs = ProcrastinateJob.objects.filter(task_name__endswith="recompute_clusters")  # type: ignore[misc]
    assert set(jobs.values_list("status", flat=True)) == {"succeeded"}
