import re
from io import StringIO

import pytest
import yaml
from django.core.management import call_command

from exchange.contract import OPINION_KINDS, OPINION_NOTE_MAX_LENGTH
from exchange.serializers import NO_NUL
from exchange.timestamps import PARTNER_TIMESTAMP_PATTERN

pytestmark = pytest.mark.django_db


def test_openapi_schema_validates_without_warnings(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path), stderr=StringIO())
    schema = yaml.safe_load(path.read_text())
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/submissions/",
        "/api/v1/sellers/",
        "/api/v1/sellers/{seller_ref}/",
        "/api/v1/sellers/{seller_ref}/retract/",
        "/api/v1/sellers/{seller_ref}/appeals/",
        "/api/v1/lookups/",
    } <= paths
    submission = schema["paths"]["/api/v1/submissions/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in submission["parameters"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_docs_page_loads_its_assets_locally(client):
    html = client.get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html


def live_schema(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path), stderr=StringIO())
    return yaml.safe_load(path.read_text())


def test_schema_says_request_bodies_are_closed_and_reasons_not_blank(tmp_path):
    components = live_schema(tmp_path)["components"]["schemas"]
    requests = [
        name for name, c in components.items() if name.endswith("Request") and c.get("type") == "object"
    ]
    assert set(requests) == {
        "AppealDocumentRequest",
        "AppealRequest",
        "DocumentIndicatorInRequest",
        "FuzzyIndicatorInRequest",
        "ImageIndicatorInRequest",
        "IndicatorInRequest",
        "LookupRequest",
        "OpinionRequest",
        "RetractRequest",
        "SellerReportRequest",
        "SubmissionRequest",
    }
    assert not [name for name in components if "RequestRequest" in name]  # issue 19, item 11
    assert all(components[name]["additionalProperties"] is False for name in requests)
    reason = re.compile(components["RetractRequest"]["properties"]["reason"]["pattern"])
    assert reason.search("appeal upheld") and reason.search(" x ")
    assert not reason.search("   ") and not reason.search("") and not reason.search("appeal\x00upheld")


def test_schema_bounds_the_paging_parameters_the_server_enforces(tmp_path):
    paths = live_schema(tmp_path)["paths"]
    params = {p["name"]: p["schema"] for p in paths["/api/v1/clusters/"]["get"]["parameters"]}
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert params["offset"] == {"type": "integer", "minimum": 0}
    params = {p["name"]: p["schema"] for p in paths["/api/v1/sellers/"]["get"]["parameters"]}
    assert params["page_size"] == {"type": "integer", "minimum": 1, "maximum": 1000}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("/api/v1/clusters/?offset=abc", "offset"),
        ("/api/v1/clusters/?offset=-1", "offset"),
        ("/api/v1/clusters/?limit=-5", "limit"),
        ("/api/v1/clusters/?limit=0", "limit"),
        ("/api/v1/clusters/?limit=1001", "limit"),
        ("/api/v1/clusters/?limit=%EF%BC%95", "limit"),  # fullwidth 5: isdigit() but not ASCII
        ("/api/v1/sellers/?page_size=abc", "page_size"),
        ("/api/v1/sellers/?page_size=0", "page_size"),
        ("/api/v1/sellers/?page_size=", "page_size"),
    ],
)
def test_bad_paging_parameters_are_refused_by_name(acme, query, parameter):
    response = acme.client().get(query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {
        parameter: [response.json()["error"]["details"][parameter][0]]
    }
    assert "whole number" in response.json()["error"]["message"]


def test_good_paging_parameters_still_page(acme):
    assert acme.client().get("/api/v1/clusters/?limit=1000&offset=0").status_code == 200
    assert acme.client().get("/api/v1/sellers/?page_size=1").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"reason": 0}, "reason", "Not a valid string."),
        ({"reason": True}, "reason", "Not a valid string."),
        ({"reason": "   "}, "reason", "This field may not be blank."),
        ({"reason": "appeal", "because": "x"}, "because", "unknown field; the body has only 'reason'"),
    ],
)
def test_a_retraction_reason_is_a_real_string_and_nothing_else_is_accepted(acme, body, field, message):
    import json

    from exchange.models import Seller
    from tests.builders import seller, submit

    assert submit(acme.client(), seller("s-1", ("email", "a@example.com"))).status_code == 201
    response = acme.client().post(
        "/api/v1/sellers/s-1/retract/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {field: [message]}
    assert Seller.objects.get(seller_ref="s-1").retracted_at is None  # nothing half-stored


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("0b7c1a9e-5a1b-4c2f-9d3e-0123456789ab", True),
        ("k" * 255, True),
        ("batch 7 of 9", True),
        ("k" * 256, False),
        ("   ", False),
        ("schlüssel", False),  # printable, but not ASCII: the schema's pattern and the server agree
        ("a\tb", False),
        ("a\x00b", False),
    ],
)
def test_idempotency_key_rule_is_the_contracts_on_both_sides(acme, key, ok):
    from exchange.client.api import ExchangeClient
    from exchange.contract import IDEMPOTENCY_KEY_PATTERN, is_idempotency_key
    from tests.builders import seller, submit

    assert is_idempotency_key(key) is ok
    assert (re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is not None and len(key) <= 255) is ok
    response = submit(acme.client(), seller("s-1", ("email", "a@example.com")), key=key)
    assert response.status_code == (201 if ok else 400), response.content
    if not ok:
        assert "Idempotency-Key" in response.json()["error"]["details"]
        with pytest.raises(ValueError, match="idempotency_key must be 1-255 printable ASCII characters"):
            ExchangeClient("http://127.0.0.1:9", "bax_x_y").submit_batch([], idempotency_key=key)


def test_schema_list_limits_are_the_live_settings(tmp_path, settings):
    settings.EXCHANGE_MAX_LOOKUP_INDICATORS = 7
    settings.EXCHANGE_MAX_BATCH_SELLERS = 50
    components = live_schema(tmp_path)["components"]["schemas"]
    assert components["LookupRequest"]["properties"]["indicators"] | {"items": None} == {
        "type": "array",
        "items": None,
        "minItems": 1,
        "maxItems": 7,
    }
    assert components["SubmissionRequest"]["properties"]["sellers"]["maxItems"] == 50
    assert components["SellerReportRequest"]["properties"]["indicators"]["maxItems"] == 100


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("/api/v1/sellers/?status=", "status"),
        ("/api/v1/sellers/?reason=", "reason"),
        ("/api/v1/sellers/?retracted=null", "retracted"),
        ("/api/v1/sellers/?retracted=yes", "retracted"),
        ("/api/v1/sellers/?retracted=", "retracted"),
        ("/api/v1/clusters/?cross_platform=", "cross_platform"),
        ("/api/v1/clusters/?cross_platform=maybe", "cross_platform"),
        ("/api/v1/clusters/?min_risk=0.5", "min_risk"),
        ("/api/v1/clusters/?min_risk=101", "min_risk"),
        ("/api/v1/clusters/?min_risk=0.0", "min_risk"),
        ("/api/v1/clusters/?min_risk=%2B5", "min_risk"),
        ("/api/v1/clusters/?min_risk=", "min_risk"),
        ("/api/v1/sellers/?cursor=", "cursor"),
    ],
)
def test_filters_refuse_what_the_schema_calls_invalid(acme, query, parameter):
    response = acme.client().get(query)
    assert response.status_code == 400, response.content
    assert parameter in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/sellers/?retracted=true",
        "/api/v1/sellers/?retracted=false&status=confirmed&reason=counterfeit",
        "/api/v1/clusters/?cross_platform=true&min_risk=0",
        "/api/v1/clusters/?min_risk=100",
    ],
)
def test_filters_accept_what_the_schema_allows(acme, query):
    assert acme.client().get(query).status_code == 200


def test_schema_states_the_partner_timestamp_rule_on_every_date_time_a_partner_sends(tmp_path):
    schema = live_schema(tmp_path)
    sent = [schema["components"]["schemas"]["SellerReportRequest"]["properties"]["reported_at"]]
    for operations in schema["paths"].values():
        for operation in operations.values():
            sent += [p for p in operation.get("parameters", []) if p["schema"].get("format") == "date-time"]
    names = {p.get("name") for p in sent}
    assert names == {None, "changed_since", "reported_after", "reported_before", "updated_since"}
    for value in sent:
        rule = value.get("schema", value)
        assert rule["x-not-before"] == "2000-01-01T00:00:00Z"
        assert rule["x-not-after"] == "now"
        assert "not in the future" in value["description"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-05-01T12:00:00Z", True),
        ("2026-05-01t12:00:00.123456789+14:00", True),
        ("1999-12-31T20:00:00-05:00", True),  # 2000-01-01T01:00Z: the bound is on the instant
        ("2026-05-01T12:00:00z", False),  # RFC 3339 allows a lower-case z; the server does not
        ("2026-05-01T12:00:00+14:01", False),
        ("2026-05-01T23:59:60Z", False),  # a leap second
        ("2026-05-01T12:00:00", False),  # no timezone
        ("2026-05-01T12:00:00+\u0661\u0664:00", False),  # Arabic-Indic digits
        ("2026-05-01T12:00Z", False),  # no seconds: ISO 8601 allows it, RFC 3339 not (Django's parser did)
        ("2026-05-01T12:00:00.Z", False),  # a fraction without digits
        ("2026-05-01 12:00:00Z", False),  # a space for the T
    ],
)
def test_timestamp_pattern_and_server_agree(acme, value, ok):
    from exchange.timestamps import PARTNER_TIMESTAMP_PATTERN
    from tests.builders import seller, submit

    assert (re.fullmatch(PARTNER_TIMESTAMP_PATTERN, value) is not None) is ok
    body = seller("s-1", ("email", "a@example.com")) | {"reported_at": value}
    assert submit(acme.client(), body).status_code == (201 if ok else 400)
    assert acme.client().get("/api/v1/sellers/", {"updated_since": value}).status_code == (200 if ok else 400)


def test_schema_says_a_batch_reports_each_seller_once_and_a_cursor_is_issued(tmp_path):
    schema = live_schema(tmp_path)
    sellers = schema["components"]["schemas"]["SubmissionRequest"]["properties"]["sellers"]
    assert sellers["x-unique-by"] == "seller_ref"
    assert "distinct" in sellers["description"]
    params = {p["name"]: p for p in schema["paths"]["/api/v1/sellers/"]["get"]["parameters"]}
    assert "`next`" in params["cursor"]["description"]


def test_schema_links_chain_sellers_and_clusters(tmp_path):
    paths = live_schema(tmp_path)["paths"]
    ids = {op["operationId"] for ops in paths.values() for op in ops.values()}
    links = {
        (path, method, name): link
        for path, ops in paths.items()
        for method, op in ops.items()
        for response in op["responses"].values()
        for name, link in response.get("links", {}).items()
    }
    assert (
        {link["operationId"] for link in links.values()}
        == {
            "sellers_retrieve",
            "sellers_retract_create",
            "sellers_appeals_create",
            "clusters_retrieve",
            "clusters_opinions_create",
        }
        <= ids
    )
    appealed = links[("/api/v1/sellers/{seller_ref}/", "get", "RecordSellersAppeal")]
    assert appealed == {
        "operationId": "sellers_appeals_create",
        "parameters": {"seller_ref": "$response.body#/seller_ref"},
    }
    submitted = links[("/api/v1/submissions/", "post", "RetractReportedSeller")]
    assert submitted["parameters"] == {"seller_ref": "$request.body#/sellers/0/seller_ref"}
    assert links[("/api/v1/lookups/", "post", "GetMatchedCluster")]["parameters"] == {
        "ref": "$response.body#/results/0/cluster"
    }
    # An opinion on a lookup match, and on a cluster of one's own sellers.
    assert links[("/api/v1/lookups/", "post", "GiveOpinionOnMatch")]["parameters"] == {
        "ref": "$response.body#/results/0/cluster"
    }
    assert links[("/api/v1/clusters/{ref}/", "get", "GiveOpinionOnCluster")]["parameters"] == {
        "ref": "$response.body#/id"
    }


def test_schema_says_what_each_lookup_result_field_holds(tmp_path):
    result = live_schema(tmp_path)["components"]["schemas"]["LookupResult"]
    assert set(result["required"]) == set(result["properties"]) >= {"matched_kinds", "cluster_kinds"}
    undocumented = [name for name, p in result["properties"].items() if not p.get("description")]
    assert undocumented == []
    assert "this request" in result["properties"]["matched_kinds"]["description"]
    assert "linking" in result["properties"]["cluster_kinds"]["description"]


# --- issue 19, item 11: the API description links to a hashing spec the server serves --------------------


def test_hashing_spec_is_served_as_markdown_without_a_key(client):
    from django.conf import settings

    response = client.get("/api/v1/hashing-spec/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    spec = (settings.BASE_DIR / "docs" / "hashing-spec.md").read_text(encoding="utf-8")
    assert response.content.decode() == spec and "# " in spec
    assert client.post("/api/v1/hashing-spec/").status_code == 405


def test_hashing_spec_missing_from_the_install_is_a_404_not_a_500(client, monkeypatch, tmp_path):
    from exchange import views

    monkeypatch.setattr(views, "HASHING_SPEC", tmp_path / "absent.md")
    response = client.get("/api/v1/hashing-spec/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_every_link_in_the_schema_text_is_a_url_the_server_serves(tmp_path, client):
    text = yaml.safe_dump(live_schema(tmp_path))
    assert "docs/hashing-spec.md" not in text  # a path in the repository, which no partner can open
    targets = set(re.findall(r"\]\((/[^)\s]*)\)", text))
    assert "/api/v1/hashing-spec/" in targets
    assert {t: client.get(t).status_code for t in targets} == dict.fromkeys(targets, 200)


def test_schema_states_the_opinion_request_and_what_it_leaves_to_its_description(tmp_path):
    schema = live_schema(tmp_path)
    request = schema["components"]["schemas"]["OpinionRequest"]
    properties = request["properties"]
    assert request["required"] == ["opinion"] and request["additionalProperties"] is False
    kinds = properties["opinion"]["allOf"][0]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][kinds]["enum"] == list(OPINION_KINDS)
    assert properties["note"]["maxLength"] == OPINION_NOTE_MAX_LENGTH
    assert properties["note"]["pattern"] == NO_NUL
    assert properties["acted_at"]["pattern"] == PARTNER_TIMESTAMP_PATTERN
    assert properties["acted_at"]["x-not-after"] == "now"
    assert properties["acted_at"]["description"].startswith("With `actioned` only, and required with it")
    # The rules across fields (JSON Schema 3.0 cannot say them) are the component's description.
    assert "`acted_at` goes with `actioned` only" in request["description"]
    operation = schema["paths"]["/api/v1/clusters/{ref}/opinions/"]["post"]
    assert set(operation["responses"]) >= {"200", "201", "400", "404"}
