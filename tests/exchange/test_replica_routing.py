"""Read scaling (exchange/routers.py): which database a query goes to, and what happens when the replica fails.

The router's decisions and `on_replica`'s fallback are tested here without a second server; the suite has no
replica configured, so `replica_configured` is patched where a test needs one. The real streaming replica is
tests/system/test_replica.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection
from django.http import Http404

from accounts.models import ApiKey, AuditEntry, Platform
from exchange import routers
from exchange.models import LookupUsage, Seller
from graph.models import ActorCluster
from tests.builders import seller, submit, th

ROUTER = routers.ReplicaRouter()


@pytest.fixture
def with_replica(monkeypatch: pytest.MonkeyPatch) -> routers._ReplicaHealth:
    """A replica is configured, and this process has seen it fail never (a fresh health record)."""
    monkeypatch.setattr(routers, "replica_configured", lambda: True)
    health = routers._ReplicaHealth()
    monkeypatch.setattr(routers, "health", health)
    return health


def test_reads_go_to_the_replica_only_inside_the_scope(with_replica):
    assert ROUTER.db_for_read(Seller) == DEFAULT_DB_ALIAS
    with routers.reading_from_replica():
        assert ROUTER.db_for_read(Seller) == routers.REPLICA
        assert ROUTER.db_for_read(ActorCluster) == routers.REPLICA
        assert routers.read_alias() == routers.REPLICA  # what raw SQL uses
    assert ROUTER.db_for_read(Seller) == DEFAULT_DB_ALIAS
    assert routers.read_alias() == DEFAULT_DB_ALIAS


def test_an_instance_read_on_the_replica_does_not_pull_later_reads_there(with_replica):
    loaded_there = Seller(seller_ref="x")
    loaded_there._state.db = routers.REPLICA
    assert ROUTER.db_for_read(Platform, instance=loaded_there) == DEFAULT_DB_ALIAS


def test_writes_always_go_to_the_primary(with_replica):
    with routers.reading_from_replica():
        assert ROUTER.db_for_write(AuditEntry) == DEFAULT_DB_ALIAS
        assert ROUTER.db_for_write(LookupUsage) == DEFAULT_DB_ALIAS
    assert ROUTER.db_for_write(ApiKey) == DEFAULT_DB_ALIAS


def test_only_the_primary_is_migrated():
    assert ROUTER.allow_migrate(DEFAULT_DB_ALIAS, "exchange") is True
    assert ROUTER.allow_migrate(routers.REPLICA, "exchange") is False
    assert ROUTER.allow_migrate(routers.REPLICA, "graph", model_name="actorcluster") is False


def test_rows_from_the_replica_and_the_primary_may_be_related():
    primary, replica, other = Platform(), Seller(), Seller()
    primary._state.db, replica._state.db, other._state.db = DEFAULT_DB_ALIAS, routers.REPLICA, "elsewhere"
    assert ROUTER.allow_relation(primary, replica) is True
    assert ROUTER.allow_relation(primary, other) is None  # not ours to decide


def test_without_a_replica_the_scope_reads_from_the_primary():
    assert not routers.replica_configured()  # the suite's settings: no DATABASE_REPLICA_URL
    with routers.reading_from_replica():
        assert routers.read_alias() == DEFAULT_DB_ALIAS
    assert routers.on_replica(routers.read_alias) == DEFAULT_DB_ALIAS


def test_on_replica_reads_on_the_replica(with_replica):
    assert routers.on_replica(routers.read_alias) == routers.REPLICA
    assert routers.read_alias() == DEFAULT_DB_ALIAS  # the scope ends with the read


def read_unless_on_replica() -> str:
    """A read that fails like a replica that is down, and answers on the primary."""
    if routers.read_alias() == routers.REPLICA:
        raise OperationalError("connection refused")
    return "answered by the primary"


def test_a_failing_replica_falls_back_to_the_primary_and_is_logged_once(with_replica, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="exchange.replica")
    assert routers.on_replica(read_unless_on_replica) == "answered by the primary"
    tries: list[str] = []

    def counting_read() -> str:
        tries.append(routers.read_alias())
        return read_unless_on_replica()

    # Within RETRY_SECONDS the replica is not tried again, and nothing more is logged.
    assert routers.on_replica(counting_read) == "answered by the primary"
    assert tries == [DEFAULT_DB_ALIAS]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event=replica_unavailable error=OperationalError fallback=primary retry_in_s=30"]

    # After it, the replica is tried again; answering, it is back in use.
    later = routers.time.monotonic() + routers.RETRY_SECONDS
    monkeypatch.setattr(routers.time, "monotonic", lambda: later)
    assert routers.on_replica(routers.read_alias) == routers.REPLICA
    assert [r.getMessage() for r in caplog.records][1:] == ["event=replica_available"]


def test_an_error_that_is_not_the_databases_is_not_retried(with_replica):
    tries: list[str] = []

    def broken_read() -> str:
        tries.append(routers.read_alias())
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        routers.on_replica(broken_read)
    assert tries == [routers.REPLICA]
    assert with_replica.usable()


def missing_on_replica() -> str:
    """An object the replica has not replayed yet, that the primary has."""
    if routers.read_alias() == routers.REPLICA:
        raise Http404("not on the replica")
    return "found on the primary"


def test_absence_on_the_replica_is_confirmed_on_the_primary_where_asked(with_replica):
    assert routers.on_replica(missing_on_replica, confirm_absence=True) == "found on the primary"
    with pytest.raises(Http404):
        routers.on_replica(missing_on_replica)
    assert with_replica.usable()  # a missing object says nothing about the replica's health


# ------------------------------------------------------------------ the partner API with a failing replica


@contextmanager
def replica_that_fails() -> Iterator[None]:
    """Stands in for `reading_from_replica`: every query in the scope fails as a replica that went away."""

    def refuse(execute, sql, params, many, context):  # Django's execute_wrapper signature
        raise OperationalError("the replica went away")

    with connection.execute_wrapper(refuse):
        yield


@pytest.fixture
def failing_replica(with_replica, monkeypatch):
    monkeypatch.setattr(routers, "reading_from_replica", replica_that_fails)
    return with_replica


@pytest.fixture
def linked(acme, bazaar):
    assert submit(bazaar.client(), seller("baz-1", ("email", "ring@x.com"))).status_code == 201
    assert submit(acme.client(), seller("acme-1", ("email", "ring@x.com"))).status_code == 201


ENDPOINTS = [
    ("post", "/api/v1/lookups/", {"indicators": [{"kind": "email", "hash": th("email", "ring@x.com")}]}),
    ("get", "/api/v1/sellers/", None),
    ("get", "/api/v1/sellers/acme-1/", None),
    ("get", "/api/v1/clusters/", None),
    ("get", "/api/v1/clusters/{ref}/", None),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_partner_reads_answer_from_the_primary_when_the_replica_fails_and_charge_once(
    acme, linked, method, path, body, caplog, request
):
    ref = acme.client().get("/api/v1/sellers/acme-1/").json()["cluster"]["id"]
    path = path.format(ref=ref)
    client = acme.client()
    healthy = getattr(client, method)(path, body, format="json")
    assert healthy.status_code == 200
    usage, audits = LookupUsage.objects.get().count, AuditEntry.objects.count()

    request.getfixturevalue("failing_replica")
    caplog.set_level(logging.WARNING, logger="exchange.replica")
    fallen_back = getattr(client, method)(path, body, format="json")
    assert fallen_back.status_code == 200
    assert fallen_back.json() == healthy.json()
    # The read ran twice (replica, then primary); the quota charge and the audit entry were written once.
    assert LookupUsage.objects.get().count - usage == 1
    assert AuditEntry.objects.count() - audits == 1
    assert [r.getMessage().split()[0] for r in caplog.records] == ["event=replica_unavailable"]
