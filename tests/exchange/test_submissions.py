import hashlib
import hmac
import importlib
import json
import re
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection

from exchange.hashing import keyed_token
from exchange.models import Indicator, Seller, Sighting, Submission
from tests.builders import NOW, seller, submit, th

pytestmark = pytest.mark.django_db(transaction=False)

ALICE_SHOP = seller("acme-1", ("email", "Shady.Seller+x@gmail.com"), ("phone", "+49 30 1234567"))


def test_accepted_submission_stores_only_keyed_tokens(acme, settings):
    response = submit(acme.client(), ALICE_SHOP)
    assert response.status_code == 201, response.content
    assert response.json() == {
        "submission": Submission.objects.get().ref,
        "sellers": 1,
        "sellers_created": 1,
        "indicators": 2,
        "sightings_created": 2,
    }
    email_hash = th("email", "shadyseller@gmail.com")
    stored = set(Indicator.objects.values_list("kind", "token"))
    assert ("email", keyed_token("email", email_hash, settings.EXCHANGE_PEPPERS, 1)) in stored
    assert all(token != email_hash for _, token in stored)
    assert Seller.objects.get().platform == acme.platform
    assert Sighting.objects.count() == 2


def test_no_raw_value_or_transport_hash_is_stored_anywhere(acme):
    raw_email, raw_phone = "canary.person@example.org", "+4930999888777"
    submit(acme.client(), seller("canary-ref", ("email", raw_email), ("phone", raw_phone)))
    hashes = [th("email", raw_email), th("phone", raw_phone)]
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if not t.startswith("sqlite_")]
        dump: list[str] = []
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            dump.extend(str(row) for row in cursor.fetchall())
    text = "\n".join(dump).lower()
    for needle in [raw_email, "canary.person", raw_phone, *hashes]:
        assert needle.lower() not in text


def test_same_idempotency_key_and_body_replays_without_second_effect(acme):
    client = acme.client()
    key = str(uuid.uuid4())
    first = submit(client, ALICE_SHOP, key=key)
    second = submit(client, ALICE_SHOP, key=key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Submission.objects.count() == 1 and Sighting.objects.count() == 2


def test_same_idempotency_key_with_another_body_is_refused(acme):
    client = acme.client()
    key = str(uuid.uuid4())
    submit(client, ALICE_SHOP, key=key)
    response = submit(client, seller("acme-2", ("email", "x@y.com")), key=key)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert not Seller.objects.filter(seller_ref="acme-2").exists()


def test_idempotency_keys_are_per_platform(acme, bazaar):
    key = str(uuid.uuid4())
    assert submit(acme.client(), ALICE_SHOP, key=key).status_code == 201
    assert submit(bazaar.client(), ALICE_SHOP, key=key).status_code == 201


def test_missing_idempotency_key_is_400(acme):
    response = acme.client().post(
        "/api/v1/submissions/", json.dumps({"sellers": [ALICE_SHOP]}), content_type="application/json"
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["details"]


def test_re_reporting_a_seller_adds_to_it(acme):
    client = acme.client()
    submit(client, seller("acme-1", ("email", "a@x.com"), status="suspected", reasons=("trademark",)))
    response = submit(
        client, seller("acme-1", ("email", "a@x.com"), ("phone", "+4930111222"), reasons=("counterfeit",))
    )
    assert response.json()["sellers_created"] == 0 and response.json()["sightings_created"] == 1
    stored = Seller.objects.get()
    assert stored.status == "confirmed" and stored.reasons == ["counterfeit", "trademark"]
    assert Sighting.objects.count() == 2


BAD_ITEMS = [
    ("raw email as hash", {"hash": "someone@example.com"}, "sellers[0].indicators[0].hash", "raw email"),
    ("spaces", {"hash": "ab " * 21 + "a"}, "sellers[0].indicators[0].hash", "whitespace"),
    ("short digits", {"hash": "0301234567"}, "sellers[0].indicators[0].hash", "64 hex characters"),
    ("not hex", {"hash": "z" * 64}, "sellers[0].indicators[0].hash", "hexadecimal"),
    ("upper hex", {"hash": "A" * 64}, "sellers[0].indicators[0].hash", "lowercase"),
    ("unknown kind", {"kind": "shoe_size"}, "sellers[0].indicators[0].kind", "unknown kind"),
]


@pytest.mark.parametrize(("name", "change", "field", "message"), BAD_ITEMS, ids=[b[0] for b in BAD_ITEMS])
def test_bad_indicator_is_400_naming_item_and_field_and_nothing_is_stored(acme, name, change, field, message):
    good = seller("good", ("email", "good@x.com"))
    bad = seller("bad", ("email", "bad@x.com"))
    bad["indicators"][0].update(change)
    response = submit(acme.client(), good, bad)
    assert response.status_code == 400
    error = response.json()["error"]
    field = field.replace("sellers[0]", "sellers[1]")
    assert field in error["details"], error
    assert message in error["details"][field][0]
    assert "someone@example.com" not in response.content.decode()
    assert not Seller.objects.exists() and not Indicator.objects.exists() and not Submission.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"status": "banned"}, "status", "must be one of"),
        ({"reasons": ["ugly"]}, "reasons", "unknown reason"),
        ({"reasons": []}, "reasons", "non-empty"),
        ({"reported_at": (NOW + timedelta(days=2)).isoformat()}, "reported_at", "future"),
        ({"reported_at": "2026-01-01T10:00:00"}, "reported_at", "timezone"),
        ({"reported_at": "yesterday"}, "reported_at", "RFC 3339"),
        ({"seller_ref": "has space"}, "seller_ref", "1-128 characters"),
        ({"platform": 2}, "platform", "server-controlled"),
        ({"cluster": "c1"}, "cluster", "server-controlled"),
        ({"indicators": []}, "indicators", "non-empty"),
    ],
)
def test_bad_seller_field_is_400_and_nothing_is_stored(acme, change, field, message):
    bad = {**seller("bad", ("email", "bad@x.com")), **change}
    response = submit(acme.client(), bad)
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert message in details[f"sellers[0].{field}"][0]
    assert not Seller.objects.exists()


def test_token_field_in_indicator_is_refused(acme):
    bad = seller("bad", ("email", "bad@x.com"))
    bad["indicators"][0]["token"] = "f" * 64
    details = submit(acme.client(), bad).json()["error"]["details"]
    assert "sellers[0].indicators[0].token" in details


def test_duplicate_indicator_in_one_seller_is_400(acme):
    response = submit(acme.client(), seller("dup", ("email", "a@x.com"), ("email", "A@X.com ")))
    assert response.status_code == 400
    assert "duplicate" in response.json()["error"]["details"]["sellers[0].indicators[1]"][0]


def test_duplicate_seller_in_one_batch_is_400(acme):
    response = submit(acme.client(), seller("dup", ("email", "a@x.com")), seller("dup", ("email", "b@x.com")))
    assert "duplicate" in response.json()["error"]["details"]["sellers[1].seller_ref"][0]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"sellers": []}, "sellers", "must not be empty"),
        ({}, "sellers", "is required"),
        ([], "body", "JSON object"),
        ({"sellers": [], "platform": 1}, "platform", "unknown field"),
    ],
)
def test_bad_batch_shape_is_400(acme, body, field, message):
    response = submit(acme.client(), body=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["details"][field][0]


def test_batch_over_the_size_limit_is_400(acme, settings):
    settings.EXCHANGE_MAX_BATCH_SELLERS = 3
    response = submit(acme.client(), *[seller(f"s{i}", ("email", f"{i}@x.com")) for i in range(4)])
    assert response.status_code == 400
    assert "at most 3 sellers" in response.json()["error"]["details"]["sellers"][0]


def test_body_over_the_byte_limit_is_413(acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = submit(acme.client(), *[seller(f"s{i}", ("email", f"{i}@x.com")) for i in range(20)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Seller.objects.exists()


def test_malformed_json_is_400(acme):
    response = acme.client().post(
        "/api/v1/submissions/", "{not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "Malformed JSON" in response.json()["error"]["message"]


def test_submission_needs_the_submit_scope(acme, anonymous):
    from accounts.models import ApiKey

    _, secret = ApiKey.generate(acme.platform, ["read", "lookup"])
    acme.secret = secret
    assert submit(acme.client(), ALICE_SHOP).status_code == 403
    assert submit(anonymous, ALICE_SHOP).status_code == 401
    assert not Seller.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_identical_requests_have_exactly_one_effect(acme):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is a PostgreSQL property; SQLite serialises writers")
    key = str(uuid.uuid4())
    body = [seller(f"c{i}", ("email", f"c{i}@x.com"), ("phone", "+493012345678")) for i in range(50)]
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        try:
            barrier.wait()
            statuses.append(submit(acme.client(), *body, key=key).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 8
    assert Submission.objects.count() == 1
    assert Seller.objects.count() == 50 and Sighting.objects.count() == 100


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_neither_duplicate_nor_lose(acme, bazaar):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is a PostgreSQL property; SQLite serialises writers")
    shared = [("phone", "+493012345678"), ("bank_account", "DE89370400440532013000")]
    errors: list[Exception] = []

    def send(platform, offset) -> None:
        try:
            for batch in range(3):
                sellers = [
                    seller(f"p{offset}-{batch}-{i}", *shared, ("email", f"{i}@x.com")) for i in range(30)
                ]
                assert submit(platform.client(), *sellers).status_code == 201
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(p, n)) for n, p in enumerate([acme, bazaar, acme, bazaar])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Seller.objects.count() == 4 * 3 * 30
    assert Indicator.objects.count() == 2 + 30
    assert Sighting.objects.count() == 4 * 3 * 30 * 3


def test_indicator_holders_count_sellers_exactly(acme, bazaar):
    from django.db.models import Count

    submit(acme.client(), seller("a1", ("email", "x@x.com"), ("phone", "+493012345678")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")), seller("b2", ("email", "x@x.com")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com"), ("phone", "+493012345678")))  # re-report
    actual = dict(Indicator.objects.annotate(n=Count("sightings")).values_list("id", "n"))
    assert dict(Indicator.objects.values_list("id", "holders")) == actual
    assert sorted(actual.values()) == [2, 3]


# --- issue 19, item 1: an indicator's first seen comes from its own sightings -------------------------------


def _first_seen(kind: str, value: str):
    from django.conf import settings

    token = keyed_token(kind, th(kind, value), settings.EXCHANGE_PEPPERS, 1)
    return Indicator.objects.get(kind=kind, token=token).first_seen


def test_an_indicators_first_seen_is_its_own_earliest_sighting_not_the_batchs(acme):
    old, recent = NOW - timedelta(days=40), NOW - timedelta(days=2)
    response = submit(
        acme.client(),
        seller("old", ("email", "old@x.com"), ("phone", "+4930111000"), reported_at=old),
        seller("recent", ("email", "recent@x.com"), ("phone", "+4930111000"), reported_at=recent),
    )
    assert response.status_code == 201, response.content
    assert _first_seen("email", "recent@x.com") == recent  # was the batch's earliest report: `old`
    assert _first_seen("email", "old@x.com") == old
    assert _first_seen("phone", "+4930111000") == old  # held by both: the earlier of the two


def test_a_later_batch_moves_a_first_seen_back_never_forward(acme, bazaar):
    d = [NOW - timedelta(days=n) for n in (5, 20, 30, 1)]
    submit(bazaar.client(), seller("b1", ("email", "x@x.com"), reported_at=d[0]))
    assert _first_seen("email", "x@x.com") == d[0]
    # A new holder with an older report: the holder count grows and the first seen moves back, together.
    submit(acme.client(), seller("a1", ("email", "x@x.com"), reported_at=d[1]))
    assert _first_seen("email", "x@x.com") == d[1]
    # The same holder re-reporting, older still: no new holder, the first seen still moves back.
    submit(acme.client(), seller("a1", ("email", "x@x.com"), reported_at=d[2]))
    # A newer report never moves it forward.
    submit(acme.client(), seller("a2", ("email", "x@x.com"), ("phone", "+4930222000"), reported_at=d[3]))
    assert _first_seen("email", "x@x.com") == d[2]
    assert _first_seen("phone", "+4930222000") == d[3]
    assert Indicator.objects.get(kind="email", first_seen=d[2]).holders == 3


# --- issue 12: nothing in a submission row is checkable without the pepper; the reference is opaque -------


def test_stored_body_digest_is_keyed_with_the_pepper_not_a_plain_sha256(acme, settings):
    body = json.dumps({"sellers": [seller("acme-1", ("phone", "+49 30 1234567"))]}).encode()
    response = acme.client().post(
        "/api/v1/submissions/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 201, response.content
    stored = Submission.objects.get()
    plain = hashlib.sha256(body).hexdigest()
    assert stored.body_digest != plain  # a database copy cannot test guessed bodies
    version = max(settings.EXCHANGE_PEPPERS)
    assert stored.digest_version == version
    keyed = hmac.new(settings.EXCHANGE_PEPPERS[version], plain.encode(), hashlib.sha256).hexdigest()
    assert stored.body_digest == keyed


def test_replay_and_conflict_still_work_with_a_keyed_digest_after_a_new_pepper_appears(acme, settings):
    client = acme.client()
    assert submit(client, ALICE_SHOP, key="k-1").status_code == 201
    # A new pepper version is added before a rotation: older digests stay checkable with their own version.
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: b"n" * 32}
    replay = submit(client, ALICE_SHOP, key="k-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert submit(client, seller("acme-2", ("email", "x@y.com")), key="k-1").status_code == 409
    assert Submission.objects.count() == 1


def test_submission_reference_is_opaque_not_a_sequential_id(acme):
    first = submit(acme.client(), ALICE_SHOP).json()["submission"]
    second = submit(acme.client(), seller("acme-2", ("email", "x@y.com"))).json()["submission"]
    for ref in (first, second):
        assert isinstance(ref, str) and re.fullmatch(r"sub_[0-9a-f]{16}", ref), ref
    assert first != second
    assert set(Submission.objects.values_list("ref", flat=True)) == {first, second}


def test_migration_rekeys_an_old_digest_and_gives_the_row_an_opaque_reference(acme, settings):
    from django.apps import apps

    migration = importlib.import_module("exchange.migrations.0005_submission_ref_keyed_digest")
    body = json.dumps({"sellers": [ALICE_SHOP]}).encode()
    old = Submission.objects.create(
        platform=acme.platform,
        idempotency_key="before-the-upgrade",
        body_digest=hashlib.sha256(body).hexdigest(),  # what the exchange stored before: unkeyed
        digest_version=migration.UNKEYED,
        sellers=1,
        response={
            "submission": 41,
            "sellers": 1,
            "sellers_created": 1,
            "indicators": 2,
            "sightings_created": 2,
        },
    )
    migration.key_digests_and_give_refs(apps, None)
    old.refresh_from_db()
    version = max(settings.EXCHANGE_PEPPERS)
    assert old.digest_version == version
    assert old.body_digest == Submission.digest_body(body, version)
    assert re.fullmatch(r"sub_[0-9a-f]{16}", old.ref)
    assert old.response == {
        "submission": old.ref,
        "sellers": 1,
        "sellers_created": 1,
        "indicators": 2,
        "sightings_created": 2,
    }
    # A retry of that batch after the upgrade replays it instead of storing it again or answering 409.
    replay = acme.client().post(
        "/api/v1/submissions/",
        body,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="before-the-upgrade",
    )
    assert replay.status_code == 201 and replay.json()["submission"] == old.ref
    assert not Seller.objects.exists()


def test_openapi_documents_the_opaque_reference_and_a_201_replay():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = schema["paths"]["/api/v1/submissions/"]["post"]["responses"]
    assert "200" not in responses
    assert "Idempotent-Replayed" in responses["201"]["headers"]
    submission = schema["components"]["schemas"]["SubmissionResponse"]["properties"]["submission"]
    assert submission["type"] == "string"
