"""The cast of the test suite.

Platforms: Acme Market (``acme``) and Bazaar North (``bazaar``); Third Market (``third``) where a test needs
a third honest member; Mallory Mart (``hostile``) is a member that poisons the data (tests of issue 12's
data-poisoning defences). Each platform has a key with all scopes. People: Alice is an exchange analyst, and
Erin a second one (four-eyes review: one asks, the other approves); Bob is a partner analyst at Acme; Carol is a partner analyst at Bazaar; Dave is staff in the exchange analysts'
group but without an analyst profile (deny by default); root is a superuser. Tests that need other actors
build them for a reason they name (a throwaway platform for schemathesis, a dozen canary platforms).

`client.force_login(user)` is the suite's shortcut for "logged in with password AND second factor": for a
staff user it also marks the session as having passed a TOTP device (see `force_login_passes_second_factor`).
The real two-step login is tested in tests/accounts/test_admin_second_factor.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import ApiKey, Platform
from accounts.roles import EXCHANGE_ANALYST, assign_role


@dataclass
class KeyedPlatform:
    platform: Platform
    key: ApiKey
    secret: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secret}")
        return client


def make_platform(
    slug: str, name: str, scopes: tuple[str, ...] = ("submit", "lookup", "read")
) -> KeyedPlatform:
    platform = Platform.objects.create(slug=slug, name=name, default_region="DE")
    key, secret = ApiKey.generate(platform, list(scopes), name="test")
    return KeyedPlatform(platform, key, secret)


def make_analyst(username: str, platform: Platform | None) -> User:
    user = User.objects.create_user(username, f"{username}@example.org", "correct horse battery staple")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assign_role(user, platform)
    return user


def pytest_configure(config: pytest.Config) -> None:
    """Passwords the suite creates in its own process are hashed with a fast hasher: the admin tests spent most of
    their time in PBKDF2's 1,200,000 iterations. Servers the suite starts as separate processes (tests/live.py,
    tests/reliability) keep the production hashers, and create their users themselves."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Modules whose tests use neither the database nor a server process: what they check cannot depend on
# DATABASE_URL, so `make test` runs them once, in its PostgreSQL pass (its SQLite pass gives
# `--skip-database-free`). A test here that comes to use the database fails the collection; one that starts a
# server must leave this list (it cannot be detected).
DATABASE_FREE = (
    "tests/graph/core/",
    "tests/fixtures/",
    "tests/exchange/test_perceptual.py",
    "tests/exchange/test_documents.py",
    "tests/exchange/test_fuzzy.py",
    "tests/exchange/test_fuzzy_blocking.py",
    "tests/exchange/test_fuzzy_privacy.py",
    "tests/exchange/test_normalization.py",
    "tests/exchange/test_key_index.py",
    "tests/exchange/test_hooks.py",
    "tests/client/test_image_rows.py",
    "tests/client/test_document_rows.py",
    "tests/client/test_webhook_signature.py",
    "tests/bench/test_bench_fuzzy_linking.py",
)
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "live_server",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skip-database-free",
        action="store_true",
        help="deselect the tests of tests/conftest.py's DATABASE_FREE modules (run them in one pass only)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    free = [item for item in items if item.nodeid.startswith(DATABASE_FREE)]
    for item in free:
        if item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(
                f"{item.nodeid} uses the database: take it out of DATABASE_FREE (tests/conftest.py)"
            )
    if free and config.getoption("--skip-database-free"):
        config.hook.pytest_deselected(items=free)
        items[:] = [item for item in items if not item.nodeid.startswith(DATABASE_FREE)]


SUITE_DEVICE = "test suite second factor"


@pytest.fixture(autouse=True)
def fresh_similarity_indexes() -> Iterator[None]:
    """Each test starts with no in-memory similarity index (exchange.similarity): the last test's rows were
    rolled back, and SQLite may give their ids to new rows."""
    from exchange import similarity

    similarity.forget_indexes()
    yield
    similarity.forget_indexes()


@pytest.fixture(autouse=True)
def force_login_passes_second_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.force_login` skips the login form, so it skips the second factor too: a staff user gets a
    confirmed TOTP device and the session records it as verified, as after a real two-step login."""
    force_login = Client.force_login

    def force_login_with_second_factor(self: Client, user: User, backend: str | None = None) -> None:
        force_login(self, user, backend)
        if user.is_staff:
            device, _ = TOTPDevice.objects.get_or_create(user=user, name=SUITE_DEVICE, confirmed=True)
            session = self.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login_with_second_factor)


@pytest.fixture
def acme(db: None) -> KeyedPlatform:
    return make_platform("acme", "Acme Market")


@pytest.fixture
def bazaar(db: None) -> KeyedPlatform:
    return make_platform("bazaar", "Bazaar North")


@pytest.fixture
def third(db: None) -> KeyedPlatform:
    return make_platform("third", "Third Market")


@pytest.fixture
def hostile(db: None) -> KeyedPlatform:
    return make_platform("mallory", "Mallory Mart")


@pytest.fixture
def alice(db: None) -> User:
    return make_analyst("alice", None)


@pytest.fixture
def erin(db: None) -> User:
    """A second exchange analyst: approves what Alice asks for (four-eyes review, graph.actions)."""
    return make_analyst("erin", None)


@pytest.fixture
def bob(acme: KeyedPlatform) -> User:
    return make_analyst("bob", acme.platform)


@pytest.fixture
def carol(bazaar: KeyedPlatform) -> User:
    return make_analyst("carol", bazaar.platform)


@pytest.fixture
def dave(db: None) -> User:
    """Staff, in the exchange analysts' group (so holding its permissions), but without an analyst profile."""
    user = User.objects.create_user("dave", "dave@example.org", "correct horse battery staple", is_staff=True)
    user.groups.add(Group.objects.get(name=EXCHANGE_ANALYST))
    return user


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.org", "correct horse battery staple")


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()
