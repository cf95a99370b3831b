import json
import re

import pytest

from accounts.models import ApiKey, AuditEntry
from exchange.models import LookupUsage
from tests.builders import seller, submit, th

pytestmark = pytest.mark.django_db


def lookup(client, *indicators):
    return client.post(
        "/api/v1/lookups/",
        {"indicators": [{"kind": k, "hash": th(k, v)} for k, v in indicators]},
        format="json",
    )


@pytest.fixture
def reported(acme, bazaar):
    submit(bazaar.client(), seller("baz-1", ("email", "ring@x.com"), ("phone", "+493012345678")))
    submit(acme.client(), seller("acme-1", ("email", "own@x.com")))


def test_lookup_reports_matches_on_other_platforms(acme, reported):
    response = lookup(
        acme.client(), ("email", "RING@x.com"), ("email", "nobody@x.com"), ("email", "own@x.com")
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["match"] for r in results] == [True, False, False]
    assert results[0]["other_platforms"] == 1 and results[0]["reported_sellers"] == 1
    assert results[0]["matched_kinds"] == ["email"]
    assert "baz-1" not in response.content.decode()


def test_lookup_is_audited_without_hashes(acme, reported):
    lookup(acme.client(), ("email", "ring@x.com"))
    entry = AuditEntry.objects.get(action="lookup")
    # The cluster refs the answer revealed (none: baz-1 is in no cluster), as cluster reads record them.
    assert entry.details == {"indicators": 1, "matches": 1, "refs": []}
    assert entry.actor == acme.key.prefix
    assert th("email", "ring@x.com") not in str(entry.details)


def test_lookup_quota_gives_429_with_reset_time(acme, reported, settings):
    settings.EXCHANGE_LOOKUP_DAILY_QUOTA = 3
    client = acme.client()
    assert lookup(client, ("email", "a@x.com"), ("email", "b@x.com")).status_code == 200
    response = lookup(client, ("email", "c@x.com"), ("email", "d@x.com"))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and "resets_at" in error["details"]
    assert int(response["Retry-After"]) > 0
    assert LookupUsage.objects.get().count == 2
    assert lookup(client, ("email", "c@x.com")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"indicators": []}, "indicators"),
        ({"indicators": [{"kind": "email", "hash": "x@y.com"}]}, "indicators[0].hash"),
        ({"indicators": [{"kind": "nope", "hash": "a" * 64}]}, "indicators[0].kind"),
        ({"hashes": []}, "body"),
    ],
)
def test_bad_lookup_is_400_naming_the_field(acme, body, field):
    response = acme.client().post("/api/v1/lookups/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_lookup_needs_the_lookup_scope(acme, anonymous):
    _, secret = ApiKey.generate(acme.platform, ["read"])
    acme.secret = secret
    assert lookup(acme.client(), ("email", "a@x.com")).status_code == 403
    assert lookup(anonymous, ("email", "a@x.com")).status_code == 401


def test_lookup_of_an_indicator_held_only_by_retracted_or_own_sellers_runs_the_same_queries_as_an_unknown_one(
    acme, bazaar
):
    """Timing (issue 12, item 4): the work must not depend on whether the exchange stores the indicator
    when no other platform's live seller holds it. tests/bench/bench_lookup_timing.py measures it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    submit(bazaar.client(), seller("baz-gone", ("email", "gone@x.com")))
    bazaar.client().post("/api/v1/sellers/baz-gone/retract/", {"reason": "appeal"}, format="json")
    submit(acme.client(), seller("acme-own", ("email", "own@x.com")))
    client = acme.client()
    lookup(client, ("email", "warmup@x.com"))

    shapes = {}
    for case, value in [("unknown", "never@x.com"), ("retracted", "gone@x.com"), ("own", "own@x.com")]:
        with CaptureQueriesContext(connection) as queries:
            response = lookup(client, ("email", value))
        assert response.json()["results"][0]["match"] is False
        # The statements with their values (and savepoint names) masked.
        shapes[case] = [
            re.sub(r"'(?:[^']|'')*'|\b\d+\b|\"s\d+_x\d+\"", "?", q["sql"]) for q in queries.captured_queries
        ]
    assert len(shapes["unknown"]) == len(shapes["retracted"]) == len(shapes["own"])
    assert shapes["unknown"] == shapes["retracted"] == shapes["own"]


def probed_indexes(plan: dict) -> list[tuple[str, str]]:
    """(relation, index) of every scan node the executor ran, in plan order."""
    found = []
    if plan.get("Actual Loops", 0) and "Relation Name" in plan:
        found.append((plan["Relation Name"], plan.get("Index Name", "")))
    for child in plan.get("Plans", []):
        found += probed_indexes(child)
    return found


def test_lookup_plan_starts_from_the_tokens_and_probes_the_same_indexes_whatever_is_stored(acme, bazaar):
    """On PostgreSQL the lookup is one chain of per-token index probes (issue 12, item 4): an unknown token and
    one only retracted or own sellers hold run the same scans, and none starts from the sellers table (the
    plan the planner picked without statistics, which scanned every live seller on each lookup)."""
    from django.db import connection
    from django.utils import timezone

    from exchange.hashing import keyed_tokens
    from exchange.lookups import LIVE_HOLDERS_SQL

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    submit(bazaar.client(), *[seller(f"baz-{n}", ("email", f"live{n}@x.com")) for n in range(50)])
    submit(bazaar.client(), seller("baz-gone", ("email", "gone@x.com")))
    bazaar.client().post("/api/v1/sellers/baz-gone/retract/", {"reason": "appeal"}, format="json")
    submit(acme.client(), seller("acme-own", ("email", "own@x.com")))

    from django.conf import settings

    scans = {}
    for case, value in [("unknown", "never@x.com"), ("retracted", "gone@x.com"), ("own", "own@x.com")]:
        [token] = keyed_tokens([("email", th("email", value))], settings.EXCHANGE_PEPPERS, 1)
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + LIVE_HOLDERS_SQL,
                {"tokens": [token], "now": timezone.now(), "platform": acme.platform.pk},
            )
            (raw,) = cursor.fetchone()
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        scans[case] = [relation for relation, _ in probed_indexes(plan)]
    assert scans["unknown"][:3] == ["exchange_indicator", "exchange_sighting", "exchange_seller"]
    assert scans["unknown"] == scans["retracted"] == scans["own"]


# --- issue 19, item 3: matched_kinds are the kinds that matched, the cluster's own are cluster_kinds ------


def test_matched_kinds_are_the_request_kinds_that_hit_the_cluster_not_the_clusters_kinds(acme, bazaar):
    # b1 and b2 are linked by their email alone; the phone is b1's only.
    submit(
        bazaar.client(),
        seller("b1", ("email", "ring@x.com"), ("phone", "+493012345678")),
        seller("b2", ("email", "ring@x.com")),
    )
    submit(bazaar.client(), seller("b3", ("bank_account", "DE89370400440532013000")))  # in no cluster
    phone_only = lookup(acme.client(), ("phone", "+49 30 12345678")).json()["results"][0]
    assert phone_only["cluster"] is not None
    assert phone_only["matched_kinds"] == ["phone"]  # was the cluster's kinds: ["email"]
    assert phone_only["cluster_kinds"] == ["email"]
    results = lookup(
        acme.client(),
        ("phone", "+493012345678"),
        ("email", "ring@x.com"),
        ("bank_account", "DE89370400440532013000"),
        ("email", "nobody@x.com"),
    ).json()["results"]
    assert [r["matched_kinds"] for r in results] == [
        ["email", "phone"],
        ["email", "phone"],
        ["bank_account"],
        [],
    ]
    assert [r["cluster_kinds"] for r in results] == [["email"], ["email"], [], []]
    assert results[0]["cluster"] == results[1]["cluster"] and results[2]["cluster"] is None


def test_the_apps_postgresql_connection_runs_without_jit():
    """The lookup's plan must not depend on the planner's estimates (issue 17): with JIT on, a lookup right
    after a bulk load (no statistics) compiled its plan on every execution (p50 67 ms instead of 12 ms in
    tests/bench/bench_all.py under load). exchange/config.py turns JIT off on the app's connections."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("JIT is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


def test_the_key_read_and_the_lookup_run_as_prepared_statements(acme, reported):
    """Every partner request reads its key, and every lookup charges, reads and audits, in one statement each
    that the connection prepares once and then only binds and executes (issue 17). Django turns psycopg's
    preparing off unless the settings say otherwise, which made `prepare=True` a no-op: each lookup parsed and
    planned its CTE again (exchange/config.py). Read from PostgreSQL's own view of the session."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (SQLite runs the ORM's queries)")
    client = acme.client()
    for n in range(8):
        assert lookup(client, ("email", "ring@x.com"), ("email", f"nobody{n}@x.com")).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE NOT from_sql"
        )
        prepared = cursor.fetchall()
    lookups = [(generic, custom) for text, generic, custom in prepared if "exchange_lookupusage" in text]
    key_reads = [generic + custom for text, generic, custom in prepared if "accounts_apikey" in text]
    assert len(key_reads) == 1 and key_reads[0] >= 8, prepared
    # After PostgreSQL's five custom plans, the lookup runs its generic plan: planned once per connection, not
    # per lookup. (Right after a 250,000-row submission its DISTINCT over the platform and time parameters
    # made the generic plan look dearer than the custom ones, which PostgreSQL then kept planning: README.)
    assert lookups == [(3, 5)], prepared
