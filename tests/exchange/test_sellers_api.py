from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry
from exchange.models import Indicator, Seller, Sighting
from exchange.retention import purge
from tests.builders import seller, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def reported(acme, bazaar):
    submit(
        acme.client(),
        seller("acme-1", ("email", "ring@x.com"), ("phone", "+493012345678")),
        seller("acme-2", ("email", "other@x.com"), status="suspected", reasons=("trademark",)),
    )
    submit(bazaar.client(), seller("baz-1", ("email", "ring@x.com")))


def test_partner_lists_only_its_own_sellers(acme, bazaar, reported):
    body = acme.client().get("/api/v1/sellers/").json()
    assert sorted(s["seller_ref"] for s in body["results"]) == ["acme-1", "acme-2"]
    assert [s["seller_ref"] for s in bazaar.client().get("/api/v1/sellers/").json()["results"]] == ["baz-1"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=suspected", ["acme-2"]),
        ("reason=trademark", ["acme-2"]),
        ("reason=counterfeit", ["acme-1"]),
        ("retracted=false", ["acme-1", "acme-2"]),
        ("retracted=true", []),
    ],
)
def test_seller_list_filters(acme, reported, query, expected):
    body = acme.client().get(f"/api/v1/sellers/?{query}").json()
    assert sorted(s["seller_ref"] for s in body["results"]) == expected


def test_seller_list_rejects_a_bad_filter_value(acme, reported):
    response = acme.client().get("/api/v1/sellers/?status=banned")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["details"]


def test_seller_list_has_no_query_per_row(acme, reported, django_assert_max_num_queries):
    submit(acme.client(), *[seller(f"bulk-{i}", ("email", f"{i}@bulk.x")) for i in range(30)])
    client = acme.client()
    # 8, plus charging the page's one cluster to the quota and its audit entry (5 statements on SQLite).
    with django_assert_max_num_queries(13):
        assert len(client.get("/api/v1/sellers/").json()["results"]) == 32


def test_seller_detail_shows_kinds_never_tokens(acme, reported):
    body = acme.client().get("/api/v1/sellers/acme-1/").json()
    assert body["seller_ref"] == "acme-1" and body["status"] == "confirmed"
    assert sorted(i["kind"] for i in body["indicators"]) == ["email", "phone"]
    tokens = Indicator.objects.values_list("token", flat=True)
    assert not any(token in str(body) for token in tokens)


def test_another_platforms_seller_is_404_on_read_and_retract(acme, bazaar, reported):
    assert acme.client().get("/api/v1/sellers/baz-1/").status_code == 404
    response = acme.client().post("/api/v1/sellers/baz-1/retract/", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Seller.objects.get(seller_ref="baz-1").is_retracted


def test_seller_endpoints_need_keys_and_scopes(acme, anonymous, reported):
    assert anonymous.get("/api/v1/sellers/").status_code == 401
    assert anonymous.get("/api/v1/sellers/acme-1/").status_code == 401
    _, secret = ApiKey.generate(acme.platform, ["lookup"])
    acme.secret = secret
    assert acme.client().get("/api/v1/sellers/").status_code == 403
    assert (
        acme.client().post("/api/v1/sellers/acme-1/retract/", {"reason": "x"}, format="json").status_code
        == 403
    )


def test_retraction_keeps_reason_and_who_and_stops_linking(acme, reported):
    response = acme.client().post(
        "/api/v1/sellers/acme-1/retract/", {"reason": "appeal upheld"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["retracted"] is True
    stored = Seller.objects.get(seller_ref="acme-1")
    assert stored.retraction_reason == "appeal upheld" and stored.retracted_by == acme.key.prefix
    assert not Seller.objects.linkable().filter(pk=stored.pk).exists()
    assert AuditEntry.objects.filter(action="seller_retracted").count() == 1
    again = acme.client().post("/api/v1/sellers/acme-1/retract/", {"reason": "twice"}, format="json")
    assert again.status_code == 200
    assert Seller.objects.get(seller_ref="acme-1").retraction_reason == "appeal upheld"


def test_retraction_needs_a_reason(acme, reported):
    response = acme.client().post("/api/v1/sellers/acme-1/retract/", {}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["details"]


def test_expired_reports_stop_linking(acme, reported, settings):
    later = timezone.now() + timedelta(days=settings.EXCHANGE_RETENTION_DAYS + 1)
    assert not Seller.objects.linkable(later).exists()


def test_purge_deletes_after_grace_and_keeps_audit_without_identifiers(acme, reported, settings):
    acme.client().post("/api/v1/sellers/acme-2/retract/", {"reason": "appeal"}, format="json")
    assert purge().sellers == 0  # still inside the grace period
    later = timezone.now() + timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 1)
    result = purge(now=later)
    assert (result.sellers, result.sightings, result.indicators) == (1, 1, 1)
    assert not Seller.objects.filter(seller_ref="acme-2").exists()
    assert Sighting.objects.count() == 3 and Indicator.objects.count() == 2
    entries = AuditEntry.objects.filter(action="purge")
    assert entries.exists()
    assert "acme-2" not in str(list(entries.values()))


def test_purge_command_dry_run_changes_nothing(acme, reported, settings):
    settings.EXCHANGE_PURGE_GRACE_DAYS = -1  # everything retracted is past its grace period
    acme.client().post("/api/v1/sellers/acme-2/retract/", {"reason": "appeal"}, format="json")
    out = StringIO()
    call_command("purge_reports", "--dry-run", stdout=out)
    assert "Would purge 1 sellers" in out.getvalue()
    assert Seller.objects.filter(seller_ref="acme-2").exists()
    call_command("purge_reports", stdout=out)
    assert not Seller.objects.filter(seller_ref="acme-2").exists()


def test_re_report_after_retraction_reactivates(acme, reported):
    acme.client().post("/api/v1/sellers/acme-2/retract/", {"reason": "appeal"}, format="json")
    submit(acme.client(), seller("acme-2", ("email", "other@x.com")))  # an older report changes nothing
    assert Seller.objects.get(seller_ref="acme-2").is_retracted
    submit(acme.client(), seller("acme-2", ("email", "other@x.com"), reported_at=timezone.now()))
    assert not Seller.objects.get(seller_ref="acme-2").is_retracted


def test_date_filters_accept_real_offsets_and_refuse_impossible_ones(acme, reported):
    # Offsets up to +-14:00 exist; +23:00 does not (and PostgreSQL refuses beyond +-15:59): a 400, not a 500.
    response = acme.client().get("/api/v1/sellers/", {"updated_since": "2020-01-01T00:00:00+14:00"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 2
    response = acme.client().get("/api/v1/sellers/", {"updated_since": "2020-01-01T00:00:00+23:00"})
    assert response.status_code == 400
    assert "updated_since" in response.json()["error"]["details"]


# --- cursors (issue 12, items 6 and 11): opaque, carry no global id, forged ones are a 400 --------------


def next_cursor(url):
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(url).query)["cursor"][0]


def test_seller_list_cursors_are_opaque_and_carry_no_seller_id(acme, reported):
    import base64

    submit(acme.client(), *[seller(f"page-{i}", ("email", f"{i}@page.x")) for i in range(5)])
    client = acme.client()
    first = client.get("/api/v1/sellers/", {"page_size": 3}).json()
    cursor = next_cursor(first["next"])
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"p=" not in decoded
    for pk in Seller.objects.values_list("id", flat=True):
        assert f"p={pk}".encode() not in decoded and base64.b64encode(f"p={pk}".encode()).decode() != cursor

    seen, url = [], "/api/v1/sellers/?page_size=3"
    while url:
        page = client.get(url).json()
        seen += [s["seller_ref"] for s in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(
        Seller.objects.filter(platform=acme.platform).values_list("seller_ref", flat=True)
    )
    assert len(seen) == len(set(seen)) == 7
    second = client.get("/api/v1/sellers/", {"page_size": 3, "cursor": cursor}).json()
    back = client.get(second["previous"]).json()
    assert [s["seller_ref"] for s in back["results"]] == [s["seller_ref"] for s in first["results"]]


@pytest.mark.parametrize(
    "forged",
    [
        "cD1hYmM=",  # base64 of p=abc
        "cD0xZTU=",  # p=1e5
        "cD0xAA==",  # p=1 and a NUL byte
        "\x00",
        "bm90IGEgY3Vyc29y",  # random base64
        "gAAAAABnot-a-real-token",
        "%",
    ],
)
def test_forged_cursors_are_a_400_with_the_json_error_shape(acme, reported, forged):
    response = acme.client().get("/api/v1/sellers/", {"cursor": forged})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and "cursor" in error["details"]


def test_a_tampered_cursor_is_a_400(acme, reported):
    submit(acme.client(), *[seller(f"page-{i}", ("email", f"{i}@page.x")) for i in range(5)])
    cursor = next_cursor(acme.client().get("/api/v1/sellers/", {"page_size": 2}).json()["next"])
    flipped = cursor[:20] + ("A" if cursor[20] != "A" else "B") + cursor[21:]
    assert acme.client().get("/api/v1/sellers/", {"cursor": flipped}).status_code == 400
    assert acme.client().get("/api/v1/sellers/", {"cursor": cursor}).status_code == 200
