"""Bad partner input answers a 4xx with the JSON error shape, never a 500, and stores nothing odd (issue 12,
items 10 and 11). Run on PostgreSQL too: most of these used to fail only there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.models import Seller, Sighting, Submission
from tests.builders import NOW, seller, submit

pytestmark = pytest.mark.django_db

NESTED = "[" * 100_000


def body_with_reported_at(value: str) -> dict:
    item = seller("acme-1", ("email", "a@x.com"))
    item["reported_at"] = value
    return {"sellers": [seller("acme-0", ("email", "z@x.com")), item]}


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if field is not None:
        assert field in error["details"], error
    return error


# --- item 10: every timestamp a partner sends is bounded ------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+15:00",  # year 1: spread by LEAST() into first-seen values PostgreSQL can't return
        "1999-12-31T23:59:59Z",  # before the exchange's earliest plausible report
        "2026-05-01T12:00:00+23:00",  # an offset no place on Earth has
        "2026-05-01T12:00:00-14:30",
        "2026-13-01T12:00:00Z",  # month 13
        "2026-02-30T12:00:00Z",
        "9999-12-31T23:59:59+00:00",
    ],
)
def test_implausible_reported_at_is_refused_naming_the_field_and_nothing_is_stored(acme, value):
    response = submit(acme.client(), body=body_with_reported_at(value))
    error = assert_error(response, 400, "sellers[1].reported_at")
    assert error["message"].startswith("sellers[1].reported_at: ")
    assert not Seller.objects.exists() and not Sighting.objects.exists() and not Submission.objects.exists()


def test_reported_at_within_the_bounds_is_accepted_next_to_the_refused_ones(acme):
    for value in (
        "2000-01-01T00:00:00Z",
        "2026-01-01T00:00:00+14:00",
        "2026-01-01T00:00:00-12:00",
        (datetime.now(UTC) + timedelta(minutes=2)).isoformat(),
    ):
        response = submit(acme.client(), body=body_with_reported_at(value))
        assert response.status_code == 201, (value, response.content)
    first = Seller.objects.get(seller_ref="acme-1").first_reported_at
    assert first == datetime(2000, 1, 1, tzinfo=UTC)
    assert acme.client().get("/api/v1/sellers/acme-1/").status_code == 200


def test_reported_at_beyond_the_clock_skew_is_in_the_future(acme):
    response = submit(
        acme.client(), body=body_with_reported_at((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    )
    error = assert_error(response, 400, "sellers[1].reported_at")
    assert "future" in error["details"]["sellers[1].reported_at"][0]


def test_one_function_bounds_a_partner_timestamp():
    from exchange.timestamps import EARLIEST, PartnerTimestampError, parse_partner_timestamp

    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert parse_partner_timestamp("2026-05-01T12:00:00+02:00", now) == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_partner_timestamp(EARLIEST.isoformat(), now) == EARLIEST
    for bad in ("", "yesterday", "2026-05-01T12:00:00", "2026-05-01T12:00:00+14:01", "2026-06-01T00:06:00Z"):
        with pytest.raises(PartnerTimestampError):
            parse_partner_timestamp(bad, now)


# --- item 10/11: the date-time filter parameters ---------------------------------------------------------

FILTERS = [
    ("/api/v1/sellers/", "updated_since"),
    ("/api/v1/sellers/", "reported_after"),
    ("/api/v1/clusters/", "changed_since"),
]


@pytest.mark.parametrize("url,name", FILTERS)
@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59%2B00:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00%2B15:00",
        "2026-05-01T12:00:00%2B23:00",
        "2026-13-01T00:00:00Z",
        "",
        "%00",
    ],
)
def test_implausible_date_time_filter_is_a_400_naming_the_parameter(acme, url, name, value):
    submit(acme.client(), seller("acme-1", ("email", "a@x.com")))
    assert_error(acme.client().get(f"{url}?{name}={value}"), 400, name)


@pytest.mark.parametrize("url,name", FILTERS)
def test_a_plausible_date_time_filter_still_filters(acme, url, name):
    submit(acme.client(), seller("acme-1", ("email", "a@x.com")))
    since = (NOW - timedelta(days=30)).isoformat().replace("+", "%2B")
    response = acme.client().get(f"{url}?{name}={since}")
    assert response.status_code == 200, response.content
    if url == "/api/v1/sellers/":
        assert [s["seller_ref"] for s in response.json()["results"]] == ["acme-1"]


# --- item 11: deep JSON and NUL in paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/submissions/",
        "/api/v1/lookups/",
        "/api/v1/sellers/acme-1/retract/",
        "/api/v1/sellers/acme-1/appeals/",
    ],
)
def test_deeply_nested_json_body_is_a_400(acme, url):
    submit(acme.client(), seller("acme-1", ("email", "a@x.com")))
    response = acme.client().post(url, NESTED, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")
    error = assert_error(response, 400)
    assert error["code"] == "parse_error"
    assert not Seller.objects.filter(retracted_at__isnull=False).exists()


def test_drf_json_parser_refuses_deep_nesting_with_a_400():
    from io import BytesIO

    from rest_framework.exceptions import ParseError
    from rest_framework.views import APIView

    parsers = APIView().get_parsers()  # the configured DEFAULT_PARSER_CLASSES
    assert parsers, "the API parses JSON"
    for parser in parsers:
        with pytest.raises(ParseError):
            parser.parse(BytesIO(NESTED.encode()), "application/json", {})


@pytest.mark.parametrize(
    "method,url",
    [
        ("get", "/api/v1/sellers/%00/"),
        ("get", "/api/v1/sellers/acme%00-1/"),
        ("post", "/api/v1/sellers/%00/retract/"),
        ("post", "/api/v1/sellers/%00/appeals/"),
        ("get", "/api/v1/clusters/ac_%00/"),
        ("get", "/api/v1/clusters/%00/"),
    ],
)
def test_nul_in_a_reference_is_a_404_before_any_query(acme, method, url, django_assert_num_queries):
    submit(acme.client(), seller("acme-1", ("email", "a@x.com")))
    client = acme.client()
    with django_assert_num_queries(0):
        response = client.post(url, {"reason": "x"}, format="json") if method == "post" else client.get(url)
    error = assert_error(response, 404)
    assert error["code"] == "not_found"


def test_a_valid_reference_still_resolves_next_to_the_nul_one(acme):
    submit(acme.client(), seller("acme-1", ("email", "a@x.com")))
    assert acme.client().get("/api/v1/sellers/acme-1/").status_code == 200
    assert acme.client().get("/api/v1/clusters/ac_0123456789abcdef/").status_code == 404


@pytest.mark.parametrize("key", ["k\x00ey", "k\x01ey", "k\ney"])
def test_an_idempotency_key_with_control_characters_is_a_400(acme, key):
    response = submit(acme.client(), seller("acme-1", ("email", "a@x.com")), key=key)
    assert_error(response, 400, "Idempotency-Key")
    assert not Submission.objects.exists() and not Seller.objects.exists()
