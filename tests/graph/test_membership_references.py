"""Cluster memberships and events refer to their seller and cluster without a database foreign key (the comment
above `graph.models.ClusterMember`: PostgreSQL's row-by-row checks at commit were a fifth of a first build).
What the keys guarded is held here instead."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections, transaction
from django.utils import timezone

from exchange import locks
from exchange.models import Seller
from exchange.retention import purge
from graph.clustering import recluster_full, refresh_expired
from graph.models import ActorCluster, ClusterEvent, ClusterMember
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db


def orphans() -> dict[str, int]:
    """Memberships and events whose seller or cluster does not exist."""
    sellers, clusters = Seller.objects.values("id"), ActorCluster.objects.values("id")
    return {
        "members without seller": ClusterMember.objects.exclude(seller_id__in=sellers).count(),
        "members without cluster": ClusterMember.objects.exclude(cluster_id__in=clusters).count(),
        "events without cluster": ClusterEvent.objects.exclude(cluster_id__in=clusters).count(),
    }


NONE = {"members without seller": 0, "members without cluster": 0, "events without cluster": 0}


def linked_pair(acme: KeyedPlatform, bazaar: KeyedPlatform) -> ActorCluster:
    assert submit(acme.client(), seller("a1", ("email", "pair@example.com"))).status_code == 201
    assert submit(bazaar.client(), seller("b1", ("email", "pair@example.com"))).status_code == 201
    cluster = ActorCluster.objects.get()
    assert cluster.members.count() == 2 and cluster.events.exists()
    return cluster


def test_deletes_through_the_orm_still_take_the_memberships_and_events_along(
    acme: KeyedPlatform, bazaar: KeyedPlatform
) -> None:
    cluster = linked_pair(acme, bazaar)
    Seller.objects.filter(seller_ref="a1").delete()
    assert list(cluster.members.values_list("seller__seller_ref", flat=True)) == ["b1"]
    ActorCluster.objects.filter(pk=cluster.pk).delete()  # clusters are never deleted; if one were
    assert not ClusterMember.objects.exists() and not ClusterEvent.objects.exists()
    assert orphans() == NONE


def test_retraction_recomputation_and_purge_leave_nothing_pointing_at_a_deleted_seller(
    acme: KeyedPlatform, bazaar: KeyedPlatform, settings
) -> None:
    linked_pair(acme, bazaar)
    response = acme.client().post("/api/v1/sellers/a1/retract/", {"reason": "appeal upheld"}, format="json")
    assert response.status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 2)):
        refresh_expired()
        assert purge().sellers == 1
        recluster_full()
    assert not Seller.objects.filter(seller_ref="a1").exists()
    assert orphans() == NONE
    assert ActorCluster.objects.get().dissolved_at is not None  # one seller left: the cluster dissolved


@pytest.mark.django_db(transaction=True)
def test_the_purge_waits_for_a_recomputation_that_is_writing(acme: KeyedPlatform, settings) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's (SQLite serialises writers itself)")
    assert submit(acme.client(), seller("a1", ("email", "gone@example.com"))).status_code == 201
    assert (
        acme.client().post("/api/v1/sellers/a1/retract/", {"reason": "x"}, format="json").status_code == 200
    )
    finished = threading.Event()
    result: list[int] = []

    def run_purge() -> None:
        try:
            with time_machine.travel(timezone.now() + timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 2)):
                result.append(purge().sellers)
        finally:
            finished.set()
            connections.close_all()

    with transaction.atomic():  # a recomputation's transaction, holding its lock as recluster_* do
        locks.hold(locks.RECOMPUTATION)
        worker = threading.Thread(target=run_purge)
        worker.start()
        assert not finished.wait(0.5), "the purge ran while a recomputation held the lock"
        released = time.monotonic()
    assert finished.wait(10)
    worker.join()
    assert time.monotonic() - released < 10
    assert result == [1]
    assert not Seller.objects.exists()


def test_the_derived_tables_carry_no_foreign_key() -> None:
    """The decision pinned: a migration that puts a key back brings back the checks at commit."""
    if connection.vendor != "postgresql":
        pytest.skip("the cost of the checks is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND conrelid::regclass::text IN ('graph_clustermember', 'graph_clusterevent')"
        )
        assert cursor.fetchall() == []
