"""The OpenAPI contract says exactly what the server accepts (issue 18): schemathesis, in-process, on a
throwaway platform's key (it retracts that platform's sellers; no other platform's data is in reach).

- NEGATIVE data with ``negative_data_rejection``: a request the schema calls invalid is refused with a 4xx.
- POSITIVE data with ``positive_data_acceptance`` and every other default check (no 5xx, declared status
  codes, content types, response schemas and headers, authentication not ignored): a request the schema calls
  valid is accepted, or answered 404 (an unknown seller or cluster) or 409 (an Idempotency-Key reused with
  another body), as the schema documents.
- The STATEFUL phase: schemathesis follows the schema's OpenAPI links (a submission's sellers -> the seller
  -> its retraction or its appeal; a lookup's or a listing's cluster -> the cluster), with all checks, the stateful ones
  (``use_after_free``, ``ensure_resource_availability``) included.

Five documented rules JSON Schema cannot state are respected by the generation below, each named where it
is implemented: a partner timestamp is not in the future (``x-not-after: now``), the seller_refs of one batch
are distinct (``x-unique-by: seller_ref``), a cursor is one the server issued, an opinion's `acted_at` goes with
`actioned` only (and `seller_ref` with `false_positive`), and an action is not before the first signal.

CI runs ``FUZZ_EXAMPLES`` examples per operation (default 25, derandomised) and ``FUZZ_STEPS`` stateful
scenarios; a long run:
    FUZZ_EXAMPLES=300 FUZZ_STEPS=200 .venv/bin/python -m pytest -q tests/exchange/test_contract_fuzz.py
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import register_string_format, unregister_string_format

from exchange.contract import is_seller_ref
from exchange.fuzzy import is_fuzzy_encoding
from exchange.timestamps import EARLIEST, MAX_OFFSET
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform, make_platform
from tests.reliability.world import FUZZ_LIMITS, fuzzed_schema, in_process_wsgi, use_fuzz_limits

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_EXAMPLES") is None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
CHECKS = [not_a_server_error, status_code_conformance, negative_data_rejection]

negative = fuzzed_schema()
positive = fuzzed_schema()
negative.config.generation.update(modes=[GenerationMode.NEGATIVE], with_security_parameters=False)
positive.config.generation.update(modes=[GenerationMode.POSITIVE], with_security_parameters=False)
# Valid data is accepted (2xx), or refused only for what the schema documents and data cannot know: 404 for a
# seller or cluster that does not exist, 409 for an Idempotency-Key already used with another body. Not 429:
# the throwaway key's quota is far beyond a run's lookups.
positive.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "404", "409"]


THROWAWAY_KEY: list[str] = []  # the secret of the running test's throwaway key
ISSUED_CURSORS: list[str] = []  # a cursor the server issued to it (a `next` link's)


@pytest.fixture(autouse=True)
def fuzz_limits(settings: Any) -> None:
    use_fuzz_limits(settings)


@pytest.fixture
def throwaway(db: None) -> Iterator[KeyedPlatform]:
    platform = make_platform("throwaway", "Throwaway Test Market")
    # Two sellers sharing a phone: a cluster for the links to reach, and a second page for a cursor.
    for ref in ("t-1", "t-2"):
        reported = seller(ref, ("email", f"{ref}@example.com"), ("phone", "+4930999999"))
        assert submit(platform.client(), reported).status_code == 201
    page = platform.client().get("/api/v1/sellers/?page_size=1").json()
    ISSUED_CURSORS[:] = parse_qs(urlsplit(page["next"]).query)["cursor"]
    THROWAWAY_KEY[:] = [platform.secret]
    try:
        # No Django test client request from here on: it re-attaches the connection cleanup that
        # in_process_wsgi() detaches, and the next schemathesis request would close the test's connection.
        with in_process_wsgi():
            yield platform
    finally:
        THROWAWAY_KEY.clear()
        ISSUED_CURSORS.clear()


@positive.auth(refresh_interval=None)
class ThrowawayKey:
    """The positive and stateful tests authenticate as schemathesis's configured auth, so its `ignored_auth`
    check knows the key is a real one and replays each accepted request without it and with a wrong one."""

    def get(self, case: Any, context: Any) -> str | None:
        return THROWAWAY_KEY[0] if THROWAWAY_KEY else None

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# --- The documented rules JSON Schema cannot state, as the generation of valid data ---------------------------


def partner_timestamps() -> st.SearchStrategy[str]:
    """Implements the documented rule of every date-time a partner sends (`x-not-before`, `x-not-after: now`
    and the description; the pattern says the syntax): an instant from 2000-01-01T00:00:00Z up to now, written
    with `Z` or an offset within +-14:00. The local time may fall before 2000 (2000-01-01T00:00Z at -05:00)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    instants = st.datetimes(min_value=EARLIEST.replace(tzinfo=None), max_value=now)
    most = int(MAX_OFFSET.total_seconds() // 60)
    offsets = st.none() | st.integers(-most, most)
    return st.builds(render_timestamp, instants, offsets, st.booleans())


def render_timestamp(instant: datetime, offset_minutes: int | None, fraction: bool) -> str:
    local = instant + timedelta(minutes=offset_minutes or 0)
    text = f"{local:%Y-%m-%dT%H:%M:%S}" + (f".{local:%f}" if fraction else "")
    if offset_minutes is None:
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


@pytest.fixture
def partner_date_times() -> Iterator[None]:
    """Valid date-times follow `partner_timestamps` while a positive test runs (the format registry is
    schemathesis's global: the other fuzz modules keep the plain RFC 3339 generator)."""
    register_string_format("date-time", partner_timestamps())
    try:
        yield
    finally:
        unregister_string_format("date-time")


def not_after_now(schema: dict[str, Any]) -> set[str]:
    """The query parameters the schema marks `x-not-after: now` (partner timestamps)."""
    return {
        parameter["name"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["schema"].get("x-not-after") == "now"
    }


TIMESTAMP_PARAMETERS = not_after_now(positive.raw_schema)


def is_partner_timestamp(value: Any) -> bool:
    """The documented rule (`x-not-before`, `x-not-after: now`): from 2000-01-01T00:00:00Z up to now."""
    try:
        instant = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return instant.tzinfo is not None and EARLIEST <= instant <= datetime.now(UTC)


# Case hooks: schemathesis applies them to the coverage phase's cases too (drawn from the pattern alone,
# e.g. the year 3039) as well as to the generated ones.
@positive.hook
def filter_case(context: Any, case: Any) -> bool:
    """Implements two documented rules: every partner timestamp is from 2000-01-01T00:00:00Z up to now
    (`x-not-after: now`), and the seller_refs of one submission are distinct (`x-unique-by: seller_ref`)."""
    query = case.query or {}
    if not all(is_partner_timestamp(query[name]) for name in TIMESTAMP_PARAMETERS & set(query)):
        return False
    body = case.body
    if case.operation.path in ("/api/v1/submissions/", "/api/v1/lookups/") and not fuzzy_bits_in_range(body):
        return False
    if case.operation.path == OPINIONS and isinstance(body, dict):
        return opinion_follows_its_rules(body)
    if case.operation.path == "/api/v1/submissions/" and isinstance(body, dict):
        sellers = [item for item in body.get("sellers", []) if isinstance(item, dict)]
        if not all(is_partner_timestamp(item.get("reported_at")) for item in sellers):
            return False
        refs = [item.get("seller_ref") for item in sellers]
        return len(refs) == len(set(refs)) and all(map(indicators_are_distinct, sellers))
    return True


OPINIONS = "/api/v1/clusters/{ref}/opinions/"
BITS_SET = positive.raw_schema["components"]["schemas"]["FuzzyIndicatorInRequest"]["properties"]["encoding"][
    "x-bits-set"
]


def fuzzy_bits_in_range(body: Any) -> bool:
    """Implements the documented rule of a fuzzy encoding (`x-bits-set`): between its minimum and maximum of
    the 1,024 bits set (an all-zero encoding is pattern-valid and refused)."""
    reports = body.get("sellers", [body]) if isinstance(body, dict) else []
    for report in reports:
        items = report.get("indicators", []) if isinstance(report, dict) else []
        for item in items if isinstance(items, list) else []:
            encoding = item.get("encoding") if isinstance(item, dict) else None
            if (
                isinstance(encoding, str)
                and is_fuzzy_encoding(encoding)
                and not BITS_SET["minimum"] <= int(encoding, 16).bit_count() <= BITS_SET["maximum"]
            ):
                return False
    return True


def indicators_are_distinct(seller: dict[str, Any]) -> bool:
    """Implements the documented rule of a seller's indicators (`x-unique-by: [kind, hash]`): uniqueItems
    alone lets one photo through twice with another quality."""
    keys = [
        (item.get("kind"), item.get("hash"))
        for item in seller.get("indicators", [])
        if isinstance(item, dict)
    ]
    return len(keys) == len(set(keys))


def opinion_follows_its_rules(body: dict[str, Any]) -> bool:
    """Implements the opinion's documented rule of `seller_ref` (OpinionRequest's description): one of the
    caller's sellers in that cluster, which no generator knows (`map_case` leaves it out), so `false_positive`,
    which needs one, is left to tests/graph/test_opinions.py. (`acted_at` is `map_case`'s.)"""
    return body.get("opinion") != "false_positive"


@positive.hook
def map_case(context: Any, case: Any) -> Any:
    """Implements the documented rule of the seller listing's `cursor`: only a value from a page's `next` or
    `previous` link (they are encrypted and authenticated; no generator can make one). The coverage phase's
    cases are made at collection, before the server has issued any: those ask for the first page instead."""
    if case.query and "cursor" in case.query:
        if ISSUED_CURSORS:
            case.query["cursor"] = ISSUED_CURSORS[0]
        else:
            del case.query["cursor"]
    # The documented rules of `acted_at`: with `actioned` only and always with it, and not before the first signal
    # the caller had about the actor (its lookup or its report, which no generator knows): a valid time of action
    # is now. And `seller_ref`, optional, must be one of the caller's sellers in that very cluster
    # (`opinion_follows_its_rules`): none a generator knows.
    if case.operation.path == OPINIONS and isinstance(case.body, dict):
        if case.body.get("opinion") == "actioned":
            case.body["acted_at"] = datetime.now(UTC).isoformat()
        else:
            case.body.pop("acted_at", None)
        case.body.pop("seller_ref", None)
    return appeal_an_existing_seller(case)


APPEALS = "/api/v1/sellers/{seller_ref}/appeals/"


def appeal_an_existing_seller(case: Any) -> Any:
    """An appeal of a generated seller_ref is a 404 before its body is read: so that the bodies are what is
    fuzzed, appeals address the fixture's seller t-2 (a negative case's invalid seller_ref, for which the 404
    is right, stays as it is)."""
    ref = (case.path_parameters or {}).get("seller_ref")
    if case.operation.path == APPEALS and is_seller_ref(ref):
        case.path_parameters["seller_ref"] = "t-2"
    return case


@negative.hook("map_case")
def negative_map_case(context: Any, case: Any) -> Any:
    return appeal_an_existing_seller(case)


# --- The tests ---------------------------------------------------------------------------------------------------

STATUSES: Counter[tuple[str, int]] = Counter()


@negative.parametrize()
@FUZZ_SETTINGS
def test_invalid_requests_are_refused(case, throwaway):
    if case.headers and "Authorization" in case.headers:
        return  # the coverage phase's own authentication probes are the isolation suite's business
    response = case.call_and_validate(headers={"Authorization": f"Bearer {throwaway.secret}"}, checks=CHECKS)
    STATUSES[("negative", response.status_code)] += 1


@positive.parametrize()
@FUZZ_SETTINGS
def test_valid_requests_are_accepted(case, throwaway, partner_date_times):
    key = f"Bearer {throwaway.secret}"
    if case.headers and case.headers.get("Authorization", key) != key:
        return  # the coverage phase's own authentication probes are the isolation suite's business
    # The coverage phase's cases are made at collection, before the key exists: the call adds it.
    response = case.call_and_validate(headers={"Authorization": key})  # every default check
    STATUSES[("positive", response.status_code)] += 1


STEPS = int(os.environ.get("FUZZ_STEPS", "20"))


def test_linked_operations_keep_the_contract(throwaway, partner_date_times):
    reached: Counter[tuple[str, str, int]] = Counter()

    class Partner(positive.as_state_machine()):  # type: ignore[misc]
        # Every scenario starts from the fixture's data: one that retracted the sellers (and so dissolved
        # their cluster) must not change what the next one, or Hypothesis's replay of it, is answered.
        def setup(self) -> None:
            super().setup()
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)
            super().teardown()

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            STATUSES[("stateful", response.status_code)] += 1
            reached[(case.method, case.operation.path, response.status_code)] += 1

    # Only a followed link finds a seller or a cluster that exists (generated references are random).
    followed = {("GET", "/api/v1/sellers/{seller_ref}/"), ("POST", "/api/v1/sellers/{seller_ref}/retract/")}
    followed.add(("GET", "/api/v1/clusters/{ref}/"))
    followed.add(("POST", OPINIONS))  # an opinion on the cluster a link found: 201 (or 200, one that stands)

    def missed() -> set[tuple[str, str]]:
        return followed - {(method, path) for method, path, status in reached if status in (200, 201)}

    # Whether a run chains a listing or a submission into a retraction is chance: the partner timestamps
    # are drawn up to the current time, so even a derandomized run differs from one day to the next, and 20
    # scenarios sometimes never followed that link (about half of the runs under load; a seller's indicators
    # are now one of four shapes, so fewer generated submissions chain on). Up to ten runs, the first
    # derandomized and the later ones longer: every call of every run is checked against the contract all
    # the same.
    for attempt in range(10):
        Partner.run(
            settings=settings(
                max_examples=STEPS * (1 + attempt // 3),
                stateful_step_count=6,
                deadline=None,
                derandomize=attempt == 0 and os.environ.get("FUZZ_STEPS") is None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
        )
        if not missed():
            break
    assert not missed(), reached


def teardown_module() -> None:
    print(
        f"\ncontract fuzz: {sum(STATUSES.values())} cases, by mode and status: {dict(sorted(STATUSES.items()))}"
    )


def test_the_fuzzed_schema_states_the_small_limits() -> None:
    """The coverage phase's boundary cases (the limit, one over it) were built from these limits."""
    for schema in (negative, positive):
        components = schema.raw_schema["components"]["schemas"]
        limits = FUZZ_LIMITS
        assert (
            components["SubmissionRequest"]["properties"]["sellers"]["maxItems"]
            == limits["EXCHANGE_MAX_BATCH_SELLERS"]
        )
        indicators = limits["EXCHANGE_MAX_SELLER_INDICATORS"]
        assert components["SellerReportRequest"]["properties"]["indicators"]["maxItems"] == indicators
        assert (
            components["LookupRequest"]["properties"]["indicators"]["maxItems"]
            == limits["EXCHANGE_MAX_LOOKUP_INDICATORS"]
        )
