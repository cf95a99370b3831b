"""Fuzz the partner API with schemathesis, in-process (WSGI), against the project's own OpenAPI schema.

Every operation of the schema is exercised once per role:

- ``owner``: Acme's full key, addressing Acme's own objects (and random ones);
- ``other``: Bazaar's full key, addressing Acme's objects: never a 200 carrying anything of Acme's;
- ``anonymous``: no key: always 401;
- ``scopeless``: a valid key of Acme carrying no scope: always 403.

Checks on every response: no 5xx, the status code is declared in the schema, the content type and body
conform to the schema; for the owner, schemathesis's ``ignored_auth`` replays each request without and with
a wrong key to prove that no endpoint ignores authentication. (Schemathesis's coverage phase itself also
sends requests with the Authorization header removed or mangled; those must be 401 in every role.)

CI runs a bounded number of examples per operation and role (``FUZZ_EXAMPLES``, default 25, derandomised).
A longer run (about 10 minutes on 2 cores; add ``DATABASE_URL=postgres://...`` for PostgreSQL):

    FUZZ_EXAMPLES=500 .venv/bin/python -m pytest -q -s tests/system/test_reliability_fuzz.py

With ``-s`` the module prints ``fuzz: N cases ...``: the number of generated cases per role.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.world import (
    World,
    build_world,
    fuzzed_schema,
    in_process_wsgi,
    scopeless_key,
    use_fuzz_limits,
)

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
schema = fuzzed_schema()
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_EXAMPLES") is None,  # CI: the same cases every run
    # The world fixture is deliberately shared by all examples of one operation (state accumulates).
    suppress_health_check=list(HealthCheck),
    database=None,
)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CASES: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def fuzz_limits(settings: Any) -> None:
    use_fuzz_limits(settings)


@pytest.fixture
def world(acme, bazaar) -> Iterator[World]:
    world = build_world(acme, bazaar)
    with in_process_wsgi():
        yield world


def aim_at(case: Any, world: World) -> bool:
    """Half the time, point a path parameter at a real object of Acme's; True if it did."""
    params = case.path_parameters or {}
    if random.random() < 0.5:
        return False
    if "seller_ref" in params:
        params["seller_ref"] = random.choice(world.refs(world.acme))
        return True
    if "ref" in params:
        params["ref"] = random.choice([world.shared_cluster, world.acme_cluster])
        return True
    return False


def call(case: Any, secret: str | None, checks: list[Any]) -> tuple[Any, bool]:
    """Send the case with `secret` as Bearer key; also says whether the key was actually sent (the coverage
    phase strips or mangles Authorization on purpose)."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else None
    response = case.call_and_validate(headers=headers, checks=checks)
    sent = response.request.headers.get("Authorization", "")
    return response, bool(secret) and sent == f"Bearer {secret}"


def assert_unauthenticated(response: Any) -> None:
    assert response.status_code == 401, (response.request.method, response.request.url, response.status_code)
    assert response.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}


@schema.parametrize()
@FUZZ_SETTINGS
def test_owner_gets_no_server_error_and_schema_conforming_answers(case, world):
    CASES["owner"] += 1
    aim_at(case, world)
    response, keyed = call(case, world.acme.secret, [*CHECKS, ignored_auth])
    if not keyed:
        assert_unauthenticated(response)


@schema.parametrize()
@FUZZ_SETTINGS
def test_other_platform_never_reaches_acmes_objects(case, world):
    CASES["other"] += 1
    aim_at(case, world)
    response, keyed = call(case, world.bazaar.secret, CHECKS)
    if not keyed:
        assert_unauthenticated(response)
    # Bazaar may read the shared cluster (its own seller is in it), but never Acme's seller references nor
    # Acme's own cluster, whatever the method (OPTIONS answers 200 with the view's static description).
    body = response.content.decode(errors="replace")
    for secret_of_acme in [*world.refs(world.acme), world.acme_cluster]:
        assert secret_of_acme not in body, (case.method, case.formatted_path, response.status_code)


@schema.parametrize()
@FUZZ_SETTINGS
def test_anonymous_is_always_refused(case, world):
    CASES["anonymous"] += 1
    aim_at(case, world)
    response, _ = call(case, None, CHECKS)
    assert_unauthenticated(response)


@schema.parametrize()
@FUZZ_SETTINGS
def test_key_without_scope_is_always_refused(case, world):
    CASES["scopeless"] += 1
    aim_at(case, world)
    response, keyed = call(case, scopeless_key(world.acme), CHECKS)
    if keyed:
        assert response.status_code == 403, (case.method, case.formatted_path, response.status_code)
        assert response.json()["error"]["code"] == "permission_denied"
    else:
        assert_unauthenticated(response)


def teardown_module() -> None:
    total = sum(CASES.values())
    print(f"\nfuzz: {total} cases {dict(CASES)}, at most {EXAMPLES} examples per operation and role")
