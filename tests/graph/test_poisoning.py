"""Data poisoning by one hostile platform (issue 12, items 7 and 8): its submissions through the real API
neither dissolve nor glue the honest platforms' clusters."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEntry
from exchange.models import Indicator, Seller
from exchange.retention import do_retract
from graph import reports
from graph.actions import do_approve_merge, do_reject_merge
from graph.clustering import recluster_full, refresh_expired
from graph.models import ActorCluster, ClusterEvent, ClusterMember, MergeState, PendingMerge
from tests.admin_world import logged_in
from tests.builders import seller, submit

pytestmark = pytest.mark.django_db

STORE = ("store_name", "Harbor & Finch")
DOCK = ("shipping_address", "1 Dock Road, Hamburg")


def honest_state(*platforms: Any) -> dict[str, Any]:
    """What the honest platforms have: cluster ids and members, and what /api/v1/clusters/ tells each."""
    members: dict[int, set[str]] = {}
    for cluster_id, slug, ref in ClusterMember.objects.filter(cluster__dissolved_at__isnull=True).values_list(
        "cluster_id", "seller__platform__slug", "seller__seller_ref"
    ):
        members.setdefault(cluster_id, set()).add(f"{slug}:{ref}")
    api = {}
    for platform in platforms:
        client = platform.client()
        listing = client.get("/api/v1/clusters/").json()["results"]
        details = [client.get(f"/api/v1/clusters/{c['id']}/").json() for c in listing]
        api[platform.platform.slug] = {
            "listing": listing,
            "members": [(d["your_sellers"], d["other_platforms"]) for d in details],
        }
    return {"clusters": members, "api": api}


def test_one_platforms_fake_holders_do_not_dissolve_other_platforms_cluster(acme, bazaar, hostile, alice):
    submit(acme.client(), seller("a1", STORE, DOCK))
    submit(bazaar.client(), seller("b1", STORE, DOCK))
    before = honest_state(acme, bazaar)
    assert list(before["clusters"].values()) == [{"acme:a1", "bazaar:b1"}]

    # Eleven invented sellers holding the store name: over its threshold of 10 by a plain count.
    response = submit(hostile.client(), *[seller(f"fake{n}", STORE) for n in range(11)])
    assert response.status_code == 201

    assert honest_state(acme, bazaar) == before
    # The indicator page tells the analyst why it still links, from the same rule.
    store = Indicator.objects.get(kind="store_name")
    html = logged_in(alice).get(f"/admin/exchange/indicator/{store.pk}/change/").content.decode()
    assert "13 active sellers on 3 platform(s)" in html
    assert "links (6 counted; suppressed automatically above 10); each platform counts for at most 4" in html


def test_an_indicator_common_on_three_platforms_is_still_suppressed(acme, bazaar, hostile):
    submit(acme.client(), seller("a1", STORE, DOCK), *[seller(f"a{n}", STORE) for n in range(2, 6)])
    submit(bazaar.client(), seller("b1", STORE, DOCK), *[seller(f"b{n}", STORE) for n in range(2, 6)])
    assert ActorCluster.objects.live().count() == 1  # 4 + 4 counted: still linking
    submit(hostile.client(), *[seller(f"m{n}", STORE) for n in range(3)])
    assert ActorCluster.objects.live().count() == 0  # 4 + 4 + 3 = 11 counted over 3 platforms: a hub


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("EXCHANGE_HUB_PLATFORM_DIVISOR", "0"),
        ("EXCHANGE_HUB_PLATFORM_DIVISOR", "three"),
        ("EXCHANGE_HELD_MERGE_DAYS", "-1"),
        ("EXCHANGE_HELD_MERGE_DAYS", "30d"),
    ],
)
def test_a_malformed_poisoning_setting_stops_the_process_naming_it(name, raw):
    from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

    result = _manage({**PRODUCTION_ENV, name: raw}, "check")
    assert result.returncode != 0
    assert f"{name} must be an integer" in result.stderr


# --- item 8: held merges ------------------------------------------------------------------------------------

EMAIL = ("email", "ring.one@example.org")
PHONE = ("phone", "+4930555123")
MERGES = "/admin/graph/pendingmerge/"


def two_honest_clusters(acme: Any, bazaar: Any) -> None:
    """X: Acme a1 + Bazaar b1 (an email). Y: Acme a2 + Bazaar b2 (a phone). Unrelated actors."""
    submit(acme.client(), seller("a1", EMAIL), seller("a2", PHONE))
    submit(bazaar.client(), seller("b1", EMAIL), seller("b2", PHONE))


def test_a_hostile_bridge_between_two_honest_clusters_is_held_and_shown_only_to_exchange_analysts(
    acme, bazaar, hostile, alice, bob
):
    two_honest_clusters(acme, bazaar)
    before = honest_state(acme, bazaar)
    assert sorted(map(sorted, before["clusters"].values())) == [
        ["acme:a1", "bazaar:b1"],
        ["acme:a2", "bazaar:b2"],
    ]

    # Both attacks at once: a glue seller holding one indicator of each cluster, and 11 fake store-name holders.
    assert submit(hostile.client(), seller("glue", EMAIL, PHONE)).status_code == 201
    submit(hostile.client(), *[seller(f"fake{n}", STORE) for n in range(11)])

    assert honest_state(acme, bazaar) == before
    assert not ClusterEvent.objects.filter(kind="merged").exists()  # nothing for reports to announce
    acme.platform.report_recipients, acme.platform.report_cadence = ["trust@acme.example"], "daily"
    acme.platform.save(update_fields=["report_recipients", "report_cadence"])
    reports.run_reports()
    [report] = [m for m in mail.outbox if m.to == ["trust@acme.example"]]
    body = report.body
    assert all(ActorCluster.objects.get(pk=pk).ref in body for pk in before["clusters"])
    assert "grew or merged: 0" in body and "Cross-platform clusters containing your sellers now: 2" in body
    # The hostile platform learns nothing either: its glue seller is in no cluster.
    assert hostile.client().get("/api/v1/sellers/glue/").json()["cluster"] is None

    merge = PendingMerge.objects.get()
    assert (merge.state, merge.platform_id) == (MergeState.PENDING, hostile.platform.pk)
    assert merge.held_seller_ids() == [Seller.objects.get(seller_ref="glue").pk]
    joined = list(merge.clusters())
    assert sorted(c.pk for c in joined) == sorted(before["clusters"])

    html = logged_in(alice).get(MERGES).content.decode()
    assert f'href="{MERGES}{merge.pk}/change/"' in html
    page = logged_in(alice).get(f"{MERGES}{merge.pk}/change/").content.decode()
    for cluster in joined:
        assert f'href="/admin/graph/actorcluster/{cluster.pk}/change/"' in page
    assert "glue" not in page  # counts and cluster links, no seller references

    partner = logged_in(bob)
    # Bob's cluster list shows the two clusters apart.
    listing = partner.get("/admin/graph/actorcluster/").content.decode()
    # (partner analysts know clusters by reference only)
    shown = set(re.findall(r'href="/admin/graph/actorcluster/(ac_[0-9a-f]+)/change/', listing))
    assert shown == {ActorCluster.objects.get(pk=pk).ref for pk in before["clusters"]}
    assert partner.get(MERGES).status_code == 403  # like every admin page without a permission
    for url in (f"{MERGES}{merge.pk}/change/", f"{MERGES}{merge.pk}/history/", f"{MERGES}{merge.pk}/delete/"):
        assert partner.get(url).status_code == 404, url
    assert partner.post(MERGES, {"action": "approve", "_selected_action": [merge.pk]}).status_code == 403
    assert MERGES not in partner.get("/admin/").content.decode()
    assert PendingMerge.objects.get().state == MergeState.PENDING


def test_a_held_merge_is_announced_in_the_exchange_analysts_digest_only(acme, bazaar, hostile, alice):
    acme.platform.report_recipients, acme.platform.report_cadence = ["trust@acme.example"], "daily"
    acme.platform.save(update_fields=["report_recipients", "report_cadence"])
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    reports.run_reports()
    (digest,) = [m for m in mail.outbox if "alice@example.org" in m.to]
    html = next(content for content, kind in digest.alternatives if kind == "text/html")  # type: ignore[attr-defined]
    for text in (digest.body, html):
        assert "Mallory Mart: 1 merge waiting (1 new in this period)" in text
        assert "/admin/graph/pendingmerge/" in text and "glue" not in text
    assert "1 held merge" in digest.subject
    (report,) = [m for m in mail.outbox if m.to == ["trust@acme.example"]]
    assert "held merge" not in report.body.lower() and "Mallory" not in report.body


def test_an_exchange_analyst_approving_the_merge_joins_the_clusters_and_is_audited(
    acme, bazaar, hostile, alice
):
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    merge = PendingMerge.objects.get()
    response = logged_in(alice).post(MERGES, {"action": "approve", "_selected_action": [merge.pk]})
    assert response.status_code == 302
    merge.refresh_from_db()
    assert (merge.state, merge.decided_by) == (MergeState.APPROVED, alice)
    [cluster] = ActorCluster.objects.live()
    assert cluster.size == 5
    entry = AuditEntry.objects.get(action="merge_approved")
    assert (entry.actor, entry.object_id, entry.details) == (
        "alice",
        str(merge.pk),
        {"held_sellers": 1, "clusters": 2},
    )
    recluster_full()  # a full run agrees and does not hold it again
    assert ActorCluster.objects.live().get().size == 5 and PendingMerge.objects.count() == 1


def test_a_rejected_merge_stays_held_after_the_hold_period(acme, bazaar, hostile, alice):
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    merge = PendingMerge.objects.get()
    assert do_reject_merge(merge, alice)
    assert AuditEntry.objects.filter(action="merge_rejected", object_id=str(merge.pk)).exists()
    Seller.objects.update(created_at=timezone.now() - timedelta(days=31))
    refresh_expired()
    recluster_full()
    assert sorted(c.size for c in ActorCluster.objects.live()) == [2, 2]
    merge.refresh_from_db()
    assert (merge.state, merge.closed_at) == (MergeState.REJECTED, None)
    assert not do_approve_merge(merge, alice)  # decided once


def test_an_undecided_merge_stays_held_after_the_hold_period(acme, bazaar, hostile, settings):
    # Only an analyst's approval or a second platform's link releases a held merge, not the passage of time.
    settings.EXCHANGE_HELD_MERGE_DAYS = 30
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    Seller.objects.filter(seller_ref="glue").update(created_at=timezone.now() - timedelta(days=31))
    refresh_expired()
    recluster_full()
    assert sorted(c.size for c in ActorCluster.objects.live()) == [2, 2]
    assert PendingMerge.objects.get().state == MergeState.PENDING


def test_a_second_platform_making_the_same_link_releases_the_merge(acme, bazaar, hostile):
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    submit(bazaar.client(), seller("b3", EMAIL, PHONE))
    assert [c.size for c in ActorCluster.objects.live()] == [6]
    merge = PendingMerge.objects.get()
    assert (merge.state, merge.closed_at is not None) == (MergeState.MERGED, True)


def test_a_hold_period_of_zero_turns_held_merges_off(acme, bazaar, hostile, settings):
    settings.EXCHANGE_HELD_MERGE_DAYS = 0
    two_honest_clusters(acme, bazaar)
    submit(hostile.client(), seller("glue", EMAIL, PHONE))
    assert [c.size for c in ActorCluster.objects.live()] == [5]
    assert not PendingMerge.objects.exists()


def test_random_sequences_with_a_hostile_platform_incremental_equals_full(
    acme, bazaar, hostile, alice, settings
):
    """After every step the clusters and held merges maintained incrementally equal a full recomputation."""
    settings.EXCHANGE_LINK_THRESHOLDS = {"email": 4, "phone": 4, "store_name": 3, "shipping_address": 3}
    rng = random.Random(12)
    pool = {
        "email": [f"e{i}@x.com" for i in range(5)],
        "phone": [f"+49301234{i:03d}" for i in range(5)],
        "store_name": [f"shop {i}" for i in range(3)],
        "shipping_address": [f"{i} harbour street" for i in range(3)],
    }

    def state() -> tuple[set[frozenset[int]], set[tuple[int, frozenset[int], str]]]:
        members: dict[int, set[int]] = {}
        for cluster_id, seller_id in ClusterMember.objects.values_list("cluster_id", "seller_id"):
            members.setdefault(cluster_id, set()).add(seller_id)
        held = {(m.platform_id, frozenset(m.held_seller_ids()), m.state) for m in PendingMerge.objects.live()}
        return {frozenset(m) for m in members.values()}, held

    platforms = [acme, bazaar, hostile]
    held_seen = 0
    for step in range(40):
        roll = rng.random()
        if roll < 0.1 and Seller.objects.linkable().exists():
            do_retract(rng.choice(list(Seller.objects.linkable().order_by("pk"))), "appeal", "test")
        elif roll < 0.2 and PendingMerge.objects.filter(state=MergeState.PENDING).exists():
            merge = rng.choice(list(PendingMerge.objects.filter(state=MergeState.PENDING).order_by("pk")))
            decide = do_approve_merge if rng.random() < 0.5 else do_reject_merge
            decide(merge, alice)
        else:
            kinds = rng.sample(list(pool), k=rng.randint(1, 2))
            submit(
                rng.choice(platforms).client(),
                seller(f"s{rng.randint(0, 12)}", *[(k, rng.choice(pool[k])) for k in kinds]),
            )
        incremental = state()
        held_seen += bool(incremental[1])
        recluster_full()
        assert state() == incremental, f"step {step}"
    assert held_seen  # the sequence did hold merges
