"""Server-controlled fields injected into every write of the partner API are never applied.

Submissions and lookups refuse any field they do not know with a 400 naming it (and store nothing);
retraction ignores everything but ``reason``. After each attempt the database shows no effect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.models import AuditEntry
from exchange.models import Indicator, Seller, Sighting, Submission
from graph.models import ActorCluster
from tests.builders import seller, submit, th

pytestmark = pytest.mark.django_db

EPOCH = "2001-01-01T00:00:00Z"
# Field -> a value an attacker would like the server to take: another platform, a chosen cluster or token,
# back-dated or never-expiring times, a forged retraction.
SERVER_CONTROLLED: dict[str, Any] = {
    "id": 999_999,
    "pk": 999_999,
    "platform": "bazaar",
    "platform_id": 2,
    "cluster": "ac_0000000000000000",
    "cluster_id": 1,
    "token": "f" * 64,
    "key_version": 99,
    "linking": "include",
    "created_at": EPOCH,
    "updated_at": EPOCH,
    "first_reported_at": EPOCH,
    "expires_at": "2999-01-01T00:00:00Z",
    "retracted": True,
    "retracted_at": EPOCH,
    "retracted_by": "someone-else",
    "retraction_reason": "forged",
    "risk": 100,
    "api_key": 1,
    "submission": 1,
    "idempotency_key": "forged",
    "sightings": [],
}


def state() -> tuple[Any, ...]:
    return (
        list(Seller.objects.order_by("id").values()),
        list(Sighting.objects.order_by("id").values()),
        list(Indicator.objects.order_by("id").values()),
        list(Submission.objects.order_by("id").values_list("id", "platform_id", "idempotency_key")),
        list(ActorCluster.objects.order_by("id").values_list("id", "ref", "size", "risk")),
    )


def post(client: Any, url: str, body: Any, **headers: str) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def reported(acme, bazaar):
    assert submit(acme.client(), seller("acme-1", ("email", "a@x.com"))).status_code == 201
    assert submit(bazaar.client(), seller("baz-1", ("email", "a@x.com"))).status_code == 201


@pytest.mark.parametrize("field", sorted(SERVER_CONTROLLED))
def test_submission_refuses_server_controlled_fields_anywhere(field, acme, reported):
    value = SERVER_CONTROLLED[field]
    before = state()
    item = seller("acme-2", ("email", "b@x.com"))
    placements = {
        "batch": {"sellers": [item], field: value},
        "seller": {"sellers": [item | {field: value}]},
        "indicator": {"sellers": [item | {"indicators": [item["indicators"][0] | {field: value}]}]},
    }
    for where, body in placements.items():
        response = submit(acme.client(), body=body)
        assert response.status_code == 400, (where, field, response.content)
        error = response.json()["error"]
        assert any(field in name for name in error["details"]), (where, error)
        assert state() == before, f"{field} in the {where} changed the database"


@pytest.mark.parametrize("field", sorted(SERVER_CONTROLLED))
def test_lookup_refuses_server_controlled_fields(field, acme, reported):
    value = SERVER_CONTROLLED[field]
    indicator = {"kind": "email", "hash": th("email", "a@x.com")}
    audit = AuditEntry.objects.count()
    for body in ({"indicators": [indicator], field: value}, {"indicators": [indicator | {field: value}]}):
        response = post(acme.client(), "/api/v1/lookups/", body)
        assert response.status_code == 400, (field, response.content)
    assert AuditEntry.objects.count() == audit  # refused before anything was charged or audited


def test_retraction_refuses_everything_but_the_reason(acme, bazaar, reported):
    """Server-controlled fields in a retraction are refused by name (like submissions and lookups), and
    nothing is retracted; the reason alone retracts and sets only what the server controls."""
    before = state()
    response = post(
        acme.client(), "/api/v1/sellers/acme-1/retract/", {"reason": "appeal upheld", **SERVER_CONTROLLED}
    )
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]) == set(SERVER_CONTROLLED)
    assert state() == before

    others = state()[0][1:]
    started = datetime.now(UTC)
    response = post(acme.client(), "/api/v1/sellers/acme-1/retract/", {"reason": "appeal upheld"})
    assert response.status_code == 200, response.content
    retracted = Seller.objects.get(seller_ref="acme-1")
    assert retracted.platform_id == acme.platform.pk
    assert retracted.retracted_by == acme.key.prefix
    assert retracted.retraction_reason == "appeal upheld"
    assert retracted.retracted_at is not None and retracted.retracted_at >= started
    assert retracted.expires_at.year < 2999 and retracted.first_reported_at.year > 2001
    assert retracted.pk != 999_999 and retracted.status == "confirmed"
    assert state()[0][1:] == others  # Bazaar's seller untouched
    assert Seller.objects.get(seller_ref="baz-1").retracted_at is None


def test_retraction_through_another_platforms_reference_is_404(acme, bazaar, reported):
    before = state()
    response = post(bazaar.client(), "/api/v1/sellers/acme-1/retract/", {"reason": "x", "platform": "acme"})
    assert response.status_code == 404
    assert state() == before


def test_a_replayed_idempotency_key_cannot_carry_injected_fields(acme, reported):
    body = {"sellers": [seller("acme-9", ("email", "c@x.com"))]}
    assert submit(acme.client(), body=body, key="k-1").status_code == 201
    before = state()
    body["sellers"][0]["platform"] = "bazaar"
    assert submit(acme.client(), body=body, key="k-1").status_code in {400, 409}
    assert state() == before


def test_query_parameters_cannot_widen_a_list_to_another_platform(acme, bazaar, reported):
    for query in ("platform=bazaar", f"platform={bazaar.platform.pk}", f"platform_id={bazaar.platform.pk}"):
        sellers = acme.client().get(f"/api/v1/sellers/?{query}").json()["results"]
        assert [s["seller_ref"] for s in sellers] == ["acme-1"], query
