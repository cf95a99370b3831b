"""Documents through the API (kind `document`, exchange.matching.DocumentMatcher, exchange.similarity): a
falsified letter, edited (another company name, date and number), links its senders across platforms on its
own (a strong kind); different letters on the same template do not; lookups screen an appeal's document and
say how many of the matching sellers were reported for falsified documents; bad input is refused whole."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from exchange.documents import fingerprint_text
from exchange.models import Indicator, Seller, SimilarItem
from fixtures import documents
from graph.models import ClusterMember
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

KEY = bytes(range(32))  # the consortium key the partners share (the exchange never has it)


def document_indicator(text: str) -> dict[str, Any]:
    return {
        "kind": "document",
        "hash": hashlib.sha256(text.encode()).hexdigest(),
        "minhash": fingerprint_text(text, KEY),
    }


def letter(seed: int, edit: int | None = None) -> str:
    doc = documents.document(seed, "authorisation")
    if edit is not None:
        doc = documents.edited(doc, random.Random(edit))
    return documents.render_text(doc)


def with_document(ref: str, text: str, *, reasons: tuple[str, ...] = ("counterfeit",)) -> dict[str, Any]:
    body = seller(ref, reasons=reasons)
    body["indicators"] = [document_indicator(text)]
    return body


def cluster_of(ref: str) -> int | None:
    member = ClusterMember.objects.filter(seller__seller_ref=ref).first()
    return member.cluster_id if member else None


def test_an_edited_copy_of_a_falsified_letter_links_two_platforms_on_its_own(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    assert submit(acme.client(), with_document("acme-1", letter(1))).status_code == 201
    response = submit(bazaar.client(), with_document("bz-1", letter(1, edit=5)))
    assert response.status_code == 201, response.content
    groups = Indicator.objects.filter(kind="document")
    # Two exact indicators (each file's keyed SHA-256) and one near-duplicate group.
    assert groups.count() == 3 and SimilarItem.objects.count() == 2
    assert cluster_of("acme-1") is not None and cluster_of("acme-1") == cluster_of("bz-1")


def test_different_letters_on_the_same_template_do_not_link(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(acme.client(), with_document("acme-1", letter(2)))
    submit(bazaar.client(), with_document("bz-1", letter(3)))
    assert SimilarItem.objects.values("group").distinct().count() == 2
    assert cluster_of("acme-1") is None or cluster_of("acme-1") != cluster_of("bz-1")


def test_the_same_file_twice_is_one_item_and_one_exact_indicator(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(acme.client(), with_document("acme-1", letter(4)))
    submit(bazaar.client(), with_document("bz-1", letter(4)))
    assert SimilarItem.objects.count() == 1 and Indicator.objects.filter(kind="document").count() == 2
    assert cluster_of("acme-1") == cluster_of("bz-1") is not None


def test_nothing_of_the_file_is_stored_as_sent(acme: KeyedPlatform):
    text = letter(5)
    sent = document_indicator(text)
    submit(acme.client(), with_document("acme-1", text))
    tokens = list(Indicator.objects.values_list("token", flat=True))
    assert sent["hash"] not in tokens  # the SHA-256 is keyed like every transport hash
    assert all(sent["hash"] not in str(item.extra) for item in SimilarItem.objects.all())


def test_a_lookup_screens_an_appeal_document_against_letters_reported_as_falsified(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    forged = letter(6)
    submit(acme.client(), with_document("acme-1", forged, reasons=("falsified_documents", "counterfeit")))
    submit(bazaar.client(), with_document("bz-1", letter(6, edit=9)))
    response = third.client().post(
        "/api/v1/lookups/",
        {"indicators": [document_indicator(letter(6, edit=11)), document_indicator(letter(7))]},
        format="json",
    )
    assert response.status_code == 200, response.content
    near, other = response.json()["results"]
    assert near["kind"] == "document" and near["match"] is True and near["other_platforms"] == 2
    assert near["reported_falsified"] == 1  # acme reported its seller for falsified documents
    assert other["match"] is False and other["reported_falsified"] == 0


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"hash": "ab" * 31}, "hash", "SHA-256"),
        ({"hash": None}, "hash", "is required"),
        ({"minhash": "0" * 100}, "minhash", "got 100 characters"),
        ({"minhash": "Z" * 2048}, "minhash", "lowercase hex"),
        ({"minhash": None}, "minhash", "is required"),
        ({"text": "the letter itself"}, "text", "unknown field"),
    ],
)
def test_a_bad_document_indicator_is_refused_naming_the_field_and_nothing_is_stored(
    acme: KeyedPlatform, change: dict[str, Any], field: str, says: str
):
    indicator = {**document_indicator(letter(8)), **change}
    indicator = {k: v for k, v in indicator.items() if v is not None}
    body = seller("acme-bad")
    body["indicators"] = [indicator]
    response = submit(acme.client(), with_document("acme-ok", letter(9)), body)
    assert response.status_code == 400
    errors = response.json()["error"]["details"]
    assert any(says in message for message in errors[f"sellers[1].indicators[0].{field}"]), errors
    assert not Seller.objects.exists() and not SimilarItem.objects.exists() and not Indicator.objects.exists()


def test_the_evidence_chain_names_the_documents_similarity(acme: KeyedPlatform, bazaar: KeyedPlatform):
    from accounts.scoping import EVERYTHING
    from graph.explain import explain
    from graph.models import ActorCluster

    submit(acme.client(), with_document("acme-1", letter(10)))
    submit(bazaar.client(), with_document("bz-1", letter(10, edit=3)))
    cluster = ActorCluster.objects.live().get()
    a, b = (Seller.objects.get(seller_ref=ref).pk for ref in ("acme-1", "bz-1"))
    [step] = explain(cluster, EVERYTHING).chain(a, b)
    [(row, note)] = step.noted
    assert row.kind == "document" and row.strength == "strong"
    assert note.startswith("near-duplicate documents, estimated Jaccard similarity 0.")
    assert note.endswith("(a match is 0.80 or more)")
