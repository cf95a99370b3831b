"""A small two-platform world for the reliability tests: every kind of object a partner can address, with
some owned by Acme only, some by Bazaar only and one cluster shared by both.

    acme-1  ~ baz-1                    cross-platform cluster (shared email)
    acme-2  ~ acme-3                   Acme-only cluster (shared tax id)
    baz-2   ~ baz-3                    Bazaar-only cluster (shared phone)
    acme-solo, baz-solo                unclustered sellers
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings

from accounts.models import ApiKey
from graph.models import ActorCluster
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform


@dataclass
class World:
    acme: KeyedPlatform
    bazaar: KeyedPlatform
    shared_cluster: str
    acme_cluster: str
    bazaar_cluster: str

    def refs(self, platform: KeyedPlatform) -> list[str]:
        return list(platform.platform.sellers.order_by("seller_ref").values_list("seller_ref", flat=True))


def build_world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> World:
    for response in (
        submit(
            acme.client(),
            seller("acme-1", ("email", "ring@example.com"), ("phone", "+4930111111")),
            seller("acme-2", ("tax_id", "DE123456789")),
            seller("acme-3", ("tax_id", "DE123456789"), ("store_name", "Acme Knockoffs")),
            seller("acme-solo", ("email", "solo@acme.example")),
        ),
        submit(
            bazaar.client(),
            seller("baz-1", ("email", "ring@example.com")),
            seller("baz-2", ("phone", "+4930222222")),
            seller("baz-3", ("phone", "+4930222222"), ("crypto_wallet", "bc1qbazaarwallet000000")),
            seller("baz-solo", ("email", "solo@bazaar.example")),
        ),
    ):
        assert response.status_code == 201, response.content

    def cluster_of(ref: str) -> str:
        return ActorCluster.objects.live().get(members__seller__seller_ref=ref).ref

    return World(acme, bazaar, cluster_of("acme-1"), cluster_of("acme-2"), cluster_of("baz-2"))


def scopeless_key(platform: KeyedPlatform) -> str:
    """A valid, unrevoked key of `platform` that carries no scope at all (generate() insists on one)."""
    key, secret = ApiKey.generate(platform.platform, ["read"], name="no scopes")
    ApiKey.objects.filter(pk=key.pk).update(scope_read=False)
    return secret


@contextmanager
def in_process_wsgi() -> Iterator[None]:
    """Let schemathesis's in-process WSGI client share the test's database connection. Django's test
    client keeps that connection open across requests (and re-attaches the per-request connection cleanup
    after each); schemathesis's client does not, so the cleanup is detached for the duration."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


SCHEMA_URL = "/api/v1/schema/?format=json"
# The partner API's list limits while schemathesis fuzzes it. They are live settings: the schema states them
# and the serializers read them per request (tests/exchange/test_contract.py). Schemathesis's coverage phase
# builds each limit's boundary cases when the tests are collected, and at the defaults its submissions of 1,000
# and 1,001 sellers took 2.5 minutes of the collection of every test run that included a fuzz module.
FUZZ_LIMITS = {
    "EXCHANGE_MAX_BATCH_SELLERS": 4,  # the world below submits 4 at once
    "EXCHANGE_MAX_SELLER_INDICATORS": 4,
    "EXCHANGE_MAX_LOOKUP_INDICATORS": 4,
}


def fuzzed_schema() -> Any:
    """The project's OpenAPI schema, loaded in-process (WSGI) at the fuzz limits. A module that fuzzes with it
    sets the same limits for its tests (`use_fuzz_limits`)."""
    with override_settings(**FUZZ_LIMITS):
        return schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application())


def use_fuzz_limits(settings: Any) -> None:
    """Set the fuzz limits through pytest-django's `settings` fixture (restored after the test)."""
    for name, value in FUZZ_LIMITS.items():
        setattr(settings, name, value)
