"""Sellers' appeals (POST /api/v1/sellers/{seller_ref}/appeals/, exchange/appeals.py): recorded and updated,
upheld = the report retracted, documents keyed and checked against those other platforms reported falsified
(counts only, charged to the lookup quota), the attention flag, the admin's list and the pepper rotation.

    acme-1 ~email~ baz-1        a cross-platform cluster
    acme-2, baz-2, third-1      sellers of their own
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange.appeals import document_tokens
from exchange.client import ExchangeClient, file_sha256
from exchange.hashing import keyed_token
from exchange.models import APPEAL_DOCUMENT_DOMAIN, Appeal, AppealDocument, LookupUsage, Seller
from graph.models import ActorCluster
from tests.admin_world import logged_in
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

LETTER = hashlib.sha256(b"%PDF-1.4 a bank letter, doctored").hexdigest()
LICENCE = hashlib.sha256(b"%PDF-1.4 a business licence").hexdigest()
INVOICE = hashlib.sha256(b"%PDF-1.4 an invoice from a brand").hexdigest()


@pytest.fixture
def reported(acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform) -> None:
    for platform, sellers in (
        (acme, [seller("acme-1", ("email", "ring@example.com")), seller("acme-2", ("phone", "+4930111111"))]),
        (bazaar, [seller("baz-1", ("email", "ring@example.com")), seller("baz-2", ("phone", "+4930222222"))]),
        (third, [seller("third-1", ("phone", "+4930333333"))]),
    ):
        assert submit(platform.client(), *sellers).status_code == 201


def appeal(platform: KeyedPlatform, ref: str, body: Any = None, **fields: Any) -> Any:
    payload = body if body is not None else fields
    return platform.client().post(
        f"/api/v1/sellers/{ref}/appeals/", json.dumps(payload), content_type="application/json"
    )


def document(sha256: str, falsified: bool | None = None) -> dict[str, Any]:
    return {"sha256": sha256} if falsified is None else {"sha256": sha256, "falsified": falsified}


def reject_as_falsified(platform: KeyedPlatform, ref: str, *hashes: str) -> None:
    """`platform` rejects its seller's appeal and reports the documents falsified."""
    response = appeal(platform, ref, outcome="rejected", documents=[document(h, True) for h in hashes])
    assert response.status_code in (200, 201), response.content


# --- recording and updating -----------------------------------------------------------------------------------


def test_an_appeal_is_recorded_then_updated_by_a_later_request(acme, reported):
    first = appeal(acme, "acme-2", outcome="pending", note="Seller sent papers.")
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["seller_ref"], body["outcome"], body["note"], body["documents"]) == (
        "acme-2",
        "pending",
        "Seller sent papers.",
        0,
    )
    assert body["decided_at"] is None and body["needs_attention"] is False and body["retracted"] is False

    second = appeal(acme, "acme-2", outcome="rejected", documents=[document(LICENCE)])
    assert second.status_code == 200, second.content
    body = second.json()
    assert (body["outcome"], body["note"], body["documents"]) == ("rejected", "Seller sent papers.", 1)
    assert body["decided_at"] is not None
    assert appeal(acme, "acme-2", outcome="rejected", note="").json()["note"] == ""  # blank removes it
    assert Appeal.objects.get().outcome == "rejected"
    assert Seller.objects.get(seller_ref="acme-2").retracted_at is None  # a rejection keeps the ban

    entries = AuditEntry.objects.filter(action__in=["appeal_recorded", "appeal_updated"]).order_by("id")
    assert [(e.action, e.details["from"], e.details["to"]) for e in entries] == [
        ("appeal_recorded", "", "pending"),
        ("appeal_updated", "pending", "rejected"),
        ("appeal_updated", "rejected", "rejected"),
    ]
    assert all(e.platform_id == acme.platform.pk and e.actor == acme.key.prefix for e in entries)
    logged = json.dumps([e.details for e in entries])
    assert "acme-2" not in logged and "papers" not in logged and LICENCE not in logged


def test_the_seller_page_shows_its_appeal(acme, reported):
    assert acme.client().get("/api/v1/sellers/acme-2/").json()["appeal"] is None
    appeal(acme, "acme-2", outcome="pending")
    shown = acme.client().get("/api/v1/sellers/acme-2/").json()["appeal"]
    assert (shown["outcome"], shown["needs_attention"]) == ("pending", False)


BAD_BODIES = [
    ({}, "outcome"),
    ({"outcome": "won"}, "outcome"),
    ({"outcome": 1}, "outcome"),
    ({"outcome": True}, "outcome"),
    ({"outcome": "pending", "verdict": "x"}, "verdict"),
    ({"outcome": "pending", "documents": "x"}, "documents"),
    ({"outcome": "pending", "documents": []}, "documents"),
    ({"outcome": "pending", "documents": [document(LETTER)] * 21}, "documents"),
    ({"outcome": "pending", "documents": [{"sha256": "jane@example.com"}]}, "documents[0].sha256"),
    ({"outcome": "pending", "documents": [{"sha256": LETTER.upper()}]}, "documents[0].sha256"),
    ({"outcome": "pending", "documents": [{}]}, "documents[0].sha256"),
    ({"outcome": "pending", "documents": [{"sha256": LETTER, "falsified": "yes"}]}, "documents[0].falsified"),
    ({"outcome": "pending", "documents": [{"sha256": LETTER, "file": "a.pdf"}]}, "documents[0].file"),
    ({"outcome": "pending", "note": 5}, "note"),
    ({"outcome": "pending", "note": "x" * 1001}, "note"),
    ({"outcome": "pending", "note": "a\x00b"}, "note"),
    (["pending"], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(acme, reported, body, field):
    response = appeal(acme, "acme-2", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["details"], error
    assert "jane@example.com" not in response.content.decode()  # a raw value is never echoed
    assert not Appeal.objects.exists() and not AppealDocument.objects.exists()
    assert not LookupUsage.objects.exists()


def test_malformed_json_is_a_400(acme, reported):
    response = acme.client().post(
        "/api/v1/sellers/acme-2/appeals/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "parse_error"


def test_another_platforms_seller_or_an_unknown_one_is_a_404(acme, bazaar, reported):
    for ref in ("baz-1", "nobody"):
        response = appeal(acme, ref, outcome="upheld", documents=[document(LETTER, True)])
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
    assert not Appeal.objects.exists() and not LookupUsage.objects.exists()
    assert Seller.objects.get(seller_ref="baz-1").retracted_at is None


def test_documents_need_the_lookup_scope(acme, reported):
    _, secret = ApiKey.generate(acme.platform, ["submit"])
    submit_only = KeyedPlatform(acme.platform, acme.key, secret)
    response = appeal(submit_only, "acme-2", outcome="pending", documents=[document(LETTER)])
    assert response.status_code == 403 and "lookup" in response.json()["error"]["message"]
    assert not Appeal.objects.exists()
    assert appeal(submit_only, "acme-2", outcome="pending").status_code == 201


# --- upheld: the ban is lifted ----------------------------------------------------------------------------------


def test_an_upheld_appeal_retracts_the_report_and_the_cluster_changes(acme, bazaar, reported):
    ring = ActorCluster.objects.live().get(members__seller__seller_ref="acme-1")
    assert ring.cross_platform
    response = appeal(acme, "acme-1", outcome="upheld", note="Papers check out.")
    assert response.status_code == 201, response.content
    assert response.json()["retracted"] is True
    retracted = Seller.objects.get(seller_ref="acme-1")
    assert (retracted.retraction_reason, retracted.retracted_by) == ("appeal upheld", acme.key.prefix)
    # Through the one retraction door: its audit entry, and the seller no longer links.
    assert AuditEntry.objects.filter(action="seller_retracted", object_id=str(retracted.pk)).exists()
    assert not ActorCluster.objects.live().filter(members__seller=retracted, cross_platform=True).exists()
    lookup = bazaar.client().post(
        "/api/v1/lookups/",
        {
            "indicators": [
                {"kind": "email", "hash": seller("x", ("email", "ring@example.com"))["indicators"][0]["hash"]}
            ]
        },
        format="json",
    )
    assert lookup.json()["results"][0]["match"] is False  # Acme's retracted seller is no longer a holder


def test_an_upheld_appeal_stays_upheld_while_the_report_is_retracted(acme, reported):
    assert appeal(acme, "acme-2", outcome="upheld").status_code == 201
    response = appeal(acme, "acme-2", outcome="rejected")
    assert response.status_code == 409 and response.json()["error"]["code"] == "appeal_upheld"
    assert Appeal.objects.get().outcome == "upheld"
    assert appeal(acme, "acme-2", outcome="upheld", note="again").status_code == 200  # harmless
    # Reported again (a report newer than the retraction reactivates the seller): a new appeal may start.
    again = seller("acme-2", ("phone", "+4930111111"), reported_at=timezone.now())
    assert submit(acme.client(), again).status_code == 201
    assert Seller.objects.get(seller_ref="acme-2").retracted_at is None
    assert appeal(acme, "acme-2", outcome="pending").status_code == 200


# --- documents: keyed, checked, counted -------------------------------------------------------------------------


def test_document_hashes_are_stored_keyed_never_as_sent(acme, settings, reported):
    appeal(acme, "acme-2", outcome="pending", documents=[document(LETTER), document(LETTER)])
    stored = AppealDocument.objects.get()  # sent twice, stored once
    assert stored.token != LETTER
    assert stored.token == keyed_token(APPEAL_DOCUMENT_DOMAIN, LETTER, settings.EXCHANGE_PEPPERS, 1)
    everything = json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))
    assert LETTER not in everything


def test_a_document_reported_falsified_elsewhere_is_answered_with_counts_only(acme, bazaar, third, reported):
    reject_as_falsified(bazaar, "baz-2", LETTER)
    reject_as_falsified(third, "third-1", LETTER, INVOICE)

    response = appeal(
        acme,
        "acme-2",
        outcome="pending",
        documents=[document(LICENCE), document(LETTER), document(INVOICE)],
        note="Three papers.",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["document_checks"] == [
        {"index": 0, "falsified_elsewhere": False, "other_platforms": 0},
        {"index": 1, "falsified_elsewhere": True, "other_platforms": 2},
        {"index": 2, "falsified_elsewhere": True, "other_platforms": 1},
    ]
    assert body["needs_attention"] is True and body["attention_since"] is not None
    text = response.content.decode()
    for secret in (
        "baz-2",
        "third-1",
        "Bazaar",
        "bazaar",
        "Third",
        "third",
        bazaar.key.prefix,
        third.key.prefix,
    ):
        assert secret not in text, secret
    assert set(body) == {
        "seller_ref",
        "outcome",
        "note",
        "documents",
        "falsified_documents",
        "document_checks",
        "needs_attention",
        "attention_since",
        "retracted",
        "created_at",
        "updated_at",
        "decided_at",
    }
    entry = AuditEntry.objects.get(action="appeal_recorded", platform=acme.platform)
    assert (entry.details["documents"], entry.details["matches"]) == (3, 2)
    # The flag stays, and the seller page shows it.
    assert acme.client().get("/api/v1/sellers/acme-2/").json()["appeal"]["needs_attention"] is True


@pytest.mark.parametrize(
    "how_bazaar_said_it",
    ["pending appeal", "not flagged", "seller retracted", "appeal upheld", "own platform"],
)
def test_only_a_rejected_appeals_flagged_document_of_a_live_report_elsewhere_counts(
    acme, bazaar, reported, how_bazaar_said_it
):
    if how_bazaar_said_it == "pending appeal":
        appeal(bazaar, "baz-2", outcome="pending", documents=[document(LETTER, True)])
    elif how_bazaar_said_it == "not flagged":
        appeal(bazaar, "baz-2", outcome="rejected", documents=[document(LETTER)])
    elif how_bazaar_said_it == "seller retracted":
        reject_as_falsified(bazaar, "baz-2", LETTER)
        bazaar.client().post("/api/v1/sellers/baz-2/retract/", {"reason": "our mistake"}, format="json")
    elif how_bazaar_said_it == "appeal upheld":
        appeal(bazaar, "baz-2", outcome="upheld", documents=[document(LETTER, True)])
    else:
        reject_as_falsified(acme, "acme-1", LETTER)  # Acme's own report is not "elsewhere"
    body = appeal(acme, "acme-2", outcome="pending", documents=[document(LETTER)]).json()
    assert body["document_checks"] == [{"index": 0, "falsified_elsewhere": False, "other_platforms": 0}]
    assert body["needs_attention"] is False


def test_a_later_falsified_report_marks_the_other_platforms_appeal_for_attention(acme, bazaar, reported):
    assert (
        appeal(acme, "acme-2", outcome="pending", documents=[document(LETTER)]).json()["needs_attention"]
        is False
    )
    answer = appeal(bazaar, "baz-2", outcome="rejected", documents=[document(LETTER, True)]).json()
    # Bazaar learns nothing of Acme's appeal (no match is answered to the one who reports).
    assert answer["document_checks"] == [{"index": 0, "falsified_elsewhere": False, "other_platforms": 0}]
    assert answer["needs_attention"] is False
    acme_appeal = Appeal.objects.get(seller__seller_ref="acme-2")
    assert acme_appeal.needs_attention and acme_appeal.attention_since is not None
    alert = AuditEntry.objects.get(action="appeal_attention")
    assert (alert.platform_id, alert.actor, alert.details) == (acme.platform.pk, "system", {"appeals": 1})


def test_document_checks_count_against_the_lookup_quota(acme, bazaar, reported, settings):
    settings.EXCHANGE_LOOKUP_DAILY_QUOTA = 3
    reject_as_falsified(bazaar, "baz-2", LETTER)
    first = appeal(acme, "acme-2", outcome="pending", documents=[document(LICENCE), document(LICENCE)])
    assert first.status_code == 201
    assert LookupUsage.objects.get(api_key=acme.key).count == 1  # one distinct document, one unit
    second = appeal(acme, "acme-2", outcome="rejected", documents=[document(LETTER), document(INVOICE)])
    assert second.status_code == 200
    assert LookupUsage.objects.get(api_key=acme.key).count == 3
    refused = appeal(acme, "acme-1", outcome="upheld", documents=[document(LETTER)])
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "quota_exceeded"
    assert "Retry-After" in refused
    # Refused whole: no appeal, no document, no retraction, no answer about the letter.
    assert not Appeal.objects.filter(seller__seller_ref="acme-1").exists()
    assert AppealDocument.objects.filter(appeal__seller__platform=acme.platform).count() == 3
    assert Seller.objects.get(seller_ref="acme-1").retracted_at is None
    # Without documents an appeal reveals nothing and costs nothing.
    assert appeal(acme, "acme-1", outcome="pending").status_code == 201


def test_document_tokens_follow_a_pepper_rotation(acme, bazaar, reported, settings):
    reject_as_falsified(bazaar, "baz-2", LETTER)
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: b"second-pepper-version-32-bytes-long!!"}
    out = StringIO()
    call_command("rotate_pepper", stdout=out, stderr=StringIO())
    assert "1 appeal documents" in out.getvalue()
    assert AppealDocument.objects.get().token == document_tokens([LETTER], 2)[0]
    body = appeal(acme, "acme-2", outcome="pending", documents=[document(LETTER)]).json()
    assert body["document_checks"][0]["falsified_elsewhere"] is True


def test_an_appeal_and_its_documents_go_with_the_purged_report(acme, reported):
    appeal(acme, "acme-2", outcome="upheld", documents=[document(LETTER, True)])
    Seller.objects.filter(seller_ref="acme-2").update(retracted_at=timezone.now() - timedelta(days=365))
    call_command("purge_reports", stdout=StringIO())
    assert not Seller.objects.filter(seller_ref="acme-2").exists()
    assert not Appeal.objects.exists() and not AppealDocument.objects.exists()


# --- the admin --------------------------------------------------------------------------------------------------


def test_partner_analysts_see_their_platforms_appeals_and_filter_those_needing_attention(
    acme, bazaar, reported, alice, bob
):
    reject_as_falsified(bazaar, "baz-2", LETTER)
    appeal(acme, "acme-2", outcome="pending", documents=[document(LETTER)])
    appeal(acme, "acme-1", outcome="pending")
    theirs = Appeal.objects.get(seller__seller_ref="baz-2")

    partner = logged_in(bob)
    listed = partner.get("/admin/exchange/appeal/").content.decode()
    assert "acme-2" in listed and "acme-1" in listed and "baz-2" not in listed
    attention = partner.get("/admin/exchange/appeal/?needs_attention__exact=1").content.decode()
    assert "acme-2" in attention and "acme-1" not in attention
    assert partner.get(f"/admin/exchange/appeal/{theirs.pk}/change/").status_code == 404
    mine = Appeal.objects.get(seller__seller_ref="acme-2")
    page = partner.get(f"/admin/exchange/appeal/{mine.pk}/change/").content.decode()
    assert "Bazaar" not in page and LETTER not in page

    everything = logged_in(alice).get("/admin/exchange/appeal/?needs_attention__exact=1").content.decode()
    assert "acme-2" in everything and "baz-2" not in everything
    assert "baz-2" in logged_in(alice).get("/admin/exchange/appeal/").content.decode()


# --- the reference client against the real API -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_reference_client_sends_an_appeals_documents_as_hashes(live_server, tmp_path, acme, bazaar):
    for kp, ref in ((acme, "acme-2"), (bazaar, "baz-2")):
        assert submit(kp.client(), seller(ref, ("phone", f"+49301{kp.platform.pk:06d}"))).status_code == 201
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(b"%PDF-1.4 a bank letter, doctored")
    assert file_sha256(letter) == LETTER
    ExchangeClient(live_server.url, bazaar.secret).appeal("baz-2", "rejected", [(file_sha256(letter), True)])
    answer = ExchangeClient(live_server.url, acme.secret).appeal(
        "acme-2", "pending", [(file_sha256(letter), None)], note="sent a bank letter"
    )
    assert answer["document_checks"] == [{"index": 0, "falsified_elsewhere": True, "other_platforms": 1}]
    assert answer["needs_attention"] is True
