"""Four-eyes review (graph.actions, graph/approval_admin.py): confirming an actor, dismissing a cluster and forcing
an indicator back in wait for a second exchange analyst; nothing changes for partners until another analyst
approves; self-approval is refused with a clear message; partner analysts cannot approve; both steps audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import AuditEntry
from exchange.models import Indicator, Linking
from graph.actions import (
    ApprovalRefused,
    ApprovalRequired,
    do_approve,
    do_reject,
    do_request_cluster_status,
    do_request_indicator_linking,
    do_set_indicator_linking,
    do_update_cluster,
)
from graph.models import ActorCluster, Approval, ClusterEvent, EventKind
from tests.admin_world import AdminWorld, build, cut_by_the_hub_rule, logged_in

pytestmark = pytest.mark.django_db

APPROVALS = "/admin/graph/approval/"


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    return build(acme, bazaar)


def change_url(cluster: ActorCluster) -> str:
    return f"/admin/graph/actorcluster/{cluster.pk}/change/"


def ask_for(client: Client, cluster: ActorCluster, status: str) -> Any:
    cluster.refresh_from_db()
    form = {"status": status, "assignee": "", "notes": cluster.notes, "_continue": "1"}
    return client.post(change_url(cluster), form, follow=True)


def act(client: Client, action: str, *approvals: Approval) -> str:
    response = client.post(
        APPROVALS, {"action": action, "_selected_action": [str(a.pk) for a in approvals]}, follow=True
    )
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def investigating(cluster: ActorCluster) -> ActorCluster:
    do_update_cluster(cluster, "alice", {"status": "investigating"})
    return cluster


def test_confirming_waits_for_a_second_analyst_who_approves_it(world, alice, erin):
    ring = investigating(world.ring)
    page = ask_for(logged_in(alice), ring, "confirmed").content.decode()
    assert "waits for a second exchange analyst" in page
    ring.refresh_from_db()
    assert ring.status == "investigating"  # nothing changed for partners yet
    approval = Approval.objects.get()
    assert (approval.state, approval.current, approval.proposed, approval.requested_by_name) == (
        "pending",
        "investigating",
        "confirmed",
        "alice",
    )
    assert "Waiting for a second exchange analyst" in logged_in(alice).get(change_url(ring)).content.decode()
    listed = logged_in(erin).get(APPROVALS).content.decode()
    assert "alice" in listed and "investigating → confirmed" in listed

    assert "1 change(s) approved and made" in act(logged_in(erin), "approve", approval)
    ring.refresh_from_db()
    assert ring.status == "confirmed"
    approval.refresh_from_db()
    assert (approval.state, approval.decided_by_name) == ("approved", "erin")
    event = ClusterEvent.objects.get(cluster=ring, kind=EventKind.STATUS, details__to="confirmed")
    assert (event.actor, event.details["approved_by"]) == ("alice", "erin")
    # Both steps audited, and the change itself names both analysts.
    requested = AuditEntry.objects.get(action="approval_requested")
    approved = AuditEntry.objects.get(action="approval_approved")
    assert (requested.actor, approved.actor, approved.details["first_analyst"]) == ("alice", "erin", "alice")
    assert requested.details == {
        "kind": "cluster_status",
        "cluster": ring.pk,
        "from": "investigating",
        "to": "confirmed",
    }
    changed = AuditEntry.objects.get(action="cluster_status_changed", details__to="confirmed")
    assert (changed.actor, changed.details["approved_by"]) == ("alice", "erin")
    decided = logged_in(erin).get(f"{APPROVALS}?state=all").content.decode()
    assert "alice" in decided and "erin" in decided  # first and second analyst
    assert "approved by erin" in logged_in(alice).get(change_url(ring)).content.decode()  # the timeline


def test_partner_analysts_see_the_outcome_not_who_approved_it(world, alice, erin, bob):
    approval = do_request_cluster_status(investigating(world.ring), alice, "confirmed")
    do_approve(approval, erin)
    page = logged_in(bob).get(f"/admin/graph/actorcluster/{world.ring.ref}/change/").content.decode()
    assert "Confirmed actor" in page
    assert "erin" not in page and "alice" not in page


def test_dismissing_a_cluster_waits_for_approval_too(world, alice, erin):
    approval = do_request_cluster_status(world.ring, alice, "dismissed")
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "new"
    do_approve(approval, erin)
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "dismissed"


def test_self_approval_is_refused_with_a_clear_message(world, alice):
    approval = do_request_cluster_status(investigating(world.ring), alice, "confirmed")
    page = act(logged_in(alice), "approve", approval)
    assert (
        f"Approval {approval.pk} not approved: You asked for this change: another exchange analyst must approve it"
        in page
    )
    with pytest.raises(ApprovalRefused, match="You asked for this change"):
        do_approve(approval, alice)
    approval.refresh_from_db()
    assert approval.state == "pending"
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "investigating"
    assert not AuditEntry.objects.filter(action="approval_approved").exists()


def test_partner_analysts_cannot_see_or_approve(world, alice, bob, dave):
    approval = do_request_cluster_status(investigating(world.ring), alice, "confirmed")
    partner = logged_in(bob)
    assert partner.get(APPROVALS).status_code == 403
    assert partner.get(f"{APPROVALS}{approval.pk}/change/").status_code == 404
    refused = partner.post(APPROVALS, {"action": "approve", "_selected_action": [str(approval.pk)]})
    assert refused.status_code == 403
    for user in (bob, dave):
        with pytest.raises(ApprovalRefused, match="Only exchange analysts"):
            do_approve(approval, user)
        with pytest.raises(ApprovalRefused, match="Only exchange analysts"):
            do_request_cluster_status(world.ring, user, "dismissed")
    approval.refresh_from_db()
    assert (
        approval.state == "pending" and ActorCluster.objects.get(pk=world.ring.pk).status == "investigating"
    )


def test_a_rejection_changes_nothing_and_the_first_analyst_may_withdraw(world, alice, erin):
    ring = investigating(world.ring)
    rejected = do_request_cluster_status(ring, alice, "confirmed")
    assert "rejected or withdrawn" in act(logged_in(erin), "reject", rejected)
    rejected.refresh_from_db()
    assert (rejected.state, rejected.decided_by_name) == ("rejected", "erin")
    withdrawn = do_request_cluster_status(ring, alice, "dismissed")
    assert do_reject(withdrawn, alice) == "withdrawn"
    assert ActorCluster.objects.get(pk=ring.pk).status == "investigating"
    assert [e.action for e in AuditEntry.objects.filter(object_type="approval").order_by("id")] == [
        "approval_requested",
        "approval_rejected",
        "approval_requested",
        "approval_withdrawn",
    ]
    with pytest.raises(ApprovalRefused, match="rejected already"):
        do_approve(rejected, erin)


def test_one_change_waits_per_cluster(world, alice, erin):
    ring = investigating(world.ring)
    do_request_cluster_status(ring, alice, "confirmed")
    with pytest.raises(ApprovalRefused, match="waits for a second analyst already"):
        do_request_cluster_status(ring, erin, "dismissed")
    page = ask_for(logged_in(erin), ring, "dismissed").content.decode()
    assert "Not saved: Another change of this waits" in page
    assert Approval.objects.count() == 1


def test_a_change_the_workflow_no_longer_allows_is_not_approved(world, alice, erin):
    ring = investigating(world.ring)
    approval = do_request_cluster_status(ring, alice, "confirmed")
    do_update_cluster(ring, "erin", {"status": "new"})  # reopened meanwhile: new cannot become confirmed
    page = act(logged_in(erin), "approve", approval)
    assert "not approved: A new cluster cannot become confirmed" in page
    approval.refresh_from_db()
    assert approval.state == "pending" and ActorCluster.objects.get(pk=ring.pk).status == "new"


def test_the_direct_doors_refuse_four_eyes_changes(world):
    ring = investigating(world.ring)
    for status in ("confirmed", "dismissed"):
        with pytest.raises(ApprovalRequired):
            do_update_cluster(ring, "alice", {"status": status, "notes": "skip"})
    stored = ActorCluster.objects.get(pk=ring.pk)
    assert (stored.status, stored.notes) == ("investigating", "")
    email = Indicator.objects.get(kind="email", sightings__seller__seller_ref="baz-1")
    with pytest.raises(ApprovalRequired):
        do_set_indicator_linking(email, "alice", Linking.INCLUDE, "one actor")
    assert Indicator.objects.get(pk=email.pk).linking == Linking.AUTO
    # Keeping links apart is one analyst's call.
    assert do_set_indicator_linking(email, "alice", Linking.COMMON, "support address") is True


def test_forcing_an_indicator_in_links_only_once_approved(acme, alice, erin):
    left, right = cut_by_the_hub_rule(acme)  # n-1 and n-4: apart while the email is marked common
    email = Indicator.objects.get(kind="email", linking=Linking.COMMON)
    url = f"/admin/exchange/indicator/{email.pk}/change/"
    response = logged_in(alice).post(url, {"linking": "include", "linking_reason": "one actor"}, follow=True)
    assert "waits for a second exchange analyst" in response.content.decode()
    email.refresh_from_db()
    assert email.linking == Linking.COMMON
    live = ActorCluster.objects.live()
    assert (live.get(members__seller__seller_ref="n-1"), live.get(members__seller__seller_ref="n-4")) == (
        left,
        right,
    )
    assert "asked by alice" in logged_in(erin).get(url).content.decode()

    approval = Approval.objects.get(indicator=email)
    with pytest.raises(ApprovalRefused):
        do_request_indicator_linking(email, erin, Linking.INCLUDE, "me too")
    act(logged_in(erin), "approve", approval)
    email.refresh_from_db()
    assert (email.linking, email.linking_reason, email.linking_changed_by) == (
        Linking.INCLUDE,
        "one actor",
        "alice",
    )
    joined = ActorCluster.objects.live().get(members__seller__seller_ref="n-1")
    assert joined.members.filter(seller__seller_ref="n-4").exists()
    entry = AuditEntry.objects.get(action="indicator_linking_changed", details__to="include")
    assert (entry.actor, entry.details["approved_by"]) == ("alice", "erin")
    assert "one actor" not in str(
        AuditEntry.objects.filter(object_type="approval").values_list("details", flat=True)
    )
