"""The cluster workflow lives on the model; its changes and indicator linking overrides have one door each
(graph.actions.do_update_cluster, do_set_indicator_linking)."""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts.models import AuditEntry
from exchange.models import Indicator, Linking
from graph.actions import WorkflowError, do_set_indicator_linking, do_update_cluster
from graph.models import NEXT_STATUS, ActorCluster, ClusterEvent, ClusterStatus, EventKind
from tests.admin_world import AdminWorld, assert_ring_taken_up_by, build, logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    return build(acme, bazaar)


def change_url(cluster: ActorCluster) -> str:
    return f"/admin/graph/actorcluster/{cluster.pk}/change/"


@pytest.mark.parametrize("current", list(ClusterStatus))
def test_the_model_allows_exactly_the_workflow(current):
    cluster = ActorCluster(status=current)
    assert cluster.next_statuses() == NEXT_STATUS[current]
    for target in ClusterStatus:
        allowed = target == current or target in NEXT_STATUS[current]
        error = cluster.transition_error(target)
        assert (error is None) == allowed, (current, target)
        if not allowed:
            assert error == f"A {current} cluster cannot become {target}."


def test_a_status_change_writes_its_event_and_audit_entries(world, alice):
    changed = do_update_cluster(
        world.ring, "alice", {"status": "investigating", "assignee": alice, "notes": "Look."}
    )
    assert changed == ["status", "assignee", "notes"]
    assert (world.ring.status, world.ring.assignee_id, world.ring.notes) == (
        "investigating",
        alice.pk,
        "Look.",
    )
    assert_ring_taken_up_by(world, alice)


def test_notes_alone_write_no_status_event(world):
    assert do_update_cluster(world.ring, "alice", {"notes": "n", "status": "new"}) == ["notes"]
    assert not ClusterEvent.objects.filter(kind=EventKind.STATUS).exists()
    assert not AuditEntry.objects.filter(action="cluster_status_changed").exists()
    assert AuditEntry.objects.get(action="cluster_updated").details == {"fields": ["notes"]}


def test_nothing_changed_writes_nothing(world):
    assert do_update_cluster(world.ring, "alice", {"status": "new", "notes": "", "assignee": None}) == []
    assert not AuditEntry.objects.filter(action__startswith="cluster_").exists()


def test_a_disallowed_transition_is_refused_and_writes_nothing(world):
    with pytest.raises(WorkflowError, match="A new cluster cannot become confirmed"):
        do_update_cluster(world.ring, "alice", {"status": "confirmed", "notes": "skip"})
    stored = ActorCluster.objects.get(pk=world.ring.pk)
    assert (stored.status, stored.notes) == ("new", "")
    assert not ClusterEvent.objects.filter(kind=EventKind.STATUS).exists()
    assert not AuditEntry.objects.filter(action__startswith="cluster_").exists()


def test_the_transition_is_checked_against_the_stored_status(world):
    ActorCluster.objects.filter(pk=world.ring.pk).update(status="dismissed")  # another analyst meanwhile
    with pytest.raises(WorkflowError, match="A dismissed cluster cannot become confirmed"):
        do_update_cluster(world.ring, "alice", {"status": "confirmed"})  # world.ring still says "new"


def test_unknown_fields_are_refused(world):
    with pytest.raises(ValueError, match="risk"):
        do_update_cluster(world.ring, "alice", {"risk": 0})


def test_the_action_is_durable(world):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_update_cluster(world.ring, "alice", {"status": "investigating"})
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "new"


def test_the_admin_refuses_a_disallowed_transition_with_a_form_error(world, alice):
    response = logged_in(alice).post(
        change_url(world.ring), {"status": "confirmed", "assignee": "", "notes": "", "_continue": "1"}
    )
    assert response.status_code == 200
    assert "not one of the available choices" in response.content.decode()
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "new"


def test_a_refusal_at_save_time_is_a_message_not_a_500(world, alice, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> list[str]:
        raise WorkflowError("A dismissed cluster cannot become confirmed.")

    monkeypatch.setattr("graph.admin.do_update_cluster", refuse)
    client = logged_in(alice)
    response = client.post(
        change_url(world.ring), {"status": "investigating", "assignee": "", "notes": "", "_continue": "1"}
    )
    assert response.status_code == 302 and response["Location"] == change_url(world.ring)
    html = client.get(change_url(world.ring)).content.decode()
    assert "Not saved: A dismissed cluster cannot become confirmed." in html
    assert "was changed successfully" not in html
    assert ActorCluster.objects.get(pk=world.ring.pk).status == "new"


# --- indicator linking overrides ----------------------------------------------------------------------------


def test_a_linking_override_is_audited_once_and_not_again_when_unchanged(world):
    email = Indicator.objects.get(kind="email", sightings__seller__seller_ref="baz-1")
    assert do_set_indicator_linking(email, "alice", Linking.COMMON, "support address") is True
    assert (email.linking, email.linking_changed_by) == (Linking.COMMON, "alice")
    stored = Indicator.objects.get(pk=email.pk)
    assert (stored.linking, stored.linking_reason, stored.linking_changed_by) == (
        Linking.COMMON,
        "support address",
        "alice",
    )
    entry = AuditEntry.objects.get(action="indicator_linking_changed")
    assert (entry.actor, entry.object_id, entry.details) == (
        "alice",
        str(email.pk),
        {"from": "auto", "to": "common"},
    )
    assert "support" not in str(entry.details)  # the free-text reason stays out of the audit log
    assert do_set_indicator_linking(email, "alice", Linking.COMMON, "support address") is False
    assert AuditEntry.objects.filter(action="indicator_linking_changed").count() == 1


def test_the_linking_action_is_durable(world):
    email = Indicator.objects.get(kind="email", sightings__seller__seller_ref="baz-1")
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_set_indicator_linking(email, "alice", Linking.COMMON, "nested")
    assert Indicator.objects.get(pk=email.pk).linking == Linking.AUTO
