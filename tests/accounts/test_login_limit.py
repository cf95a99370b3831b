"""The admin login limit counts what Django's login form authenticates, and every process shares the count.

The login form normalises a username with NFKC before authenticating (fullwidth `ａｌｉｃｅ` logs in as
`alice`), so the limiter must count variants as one account. The counters live in the database, so several
gunicorn workers (or machines) count together with or without REDIS_URL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.login import FAILURES_PER_ACCOUNT
from accounts.models import AuditEntry
from tests.admin_world import PASSWORD
from tests.live import LiveSite

VARIANTS = ["ａｌｉｃｅ", "ALICE", "Alice ", "ＡＬＩＣＥ", "ａlice"]


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_usernames_are_normalised_as_the_login_form_does_then_casefolded():
    from accounts.login import normalized_username

    assert normalized_username("ａｌｉｃｅ") == "alice"
    assert normalized_username("ＡＬＩＣＥ") == "alice"
    assert normalized_username("  Alice\t") == "alice"
    assert normalized_username("Straße") == normalized_username("STRASSE")


@pytest.mark.django_db
def test_unicode_and_case_variants_of_a_username_count_against_one_account(alice):
    client = Client()
    answers = []
    for attempt in range(FAILURES_PER_ACCOUNT + 1):
        variant = VARIANTS[attempt % len(VARIANTS)]
        answers.append(client.post("/admin/login/", {"username": variant, "password": "wrong"}).status_code)
    assert answers == [200] * FAILURES_PER_ACCOUNT + [429]
    # The fullwidth form logs in as alice when the password is right, so it must be refused now.
    response = client.post("/admin/login/", {"username": "ａｌｉｃｅ", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action="admin_login_throttled", actor="alice").exists()


@pytest.mark.django_db
def test_the_right_password_after_the_limit_is_refused(alice):
    client = Client()
    for _ in range(FAILURES_PER_ACCOUNT):
        assert client.post("/admin/login/", {"username": "ＡＬＩＣＥ", "password": "x"}).status_code == 200
    for username in ("alice", "ａｌｉｃｅ", "ALICE"):
        response = client.post("/admin/login/", {"username": username, "password": PASSWORD})
        assert response.status_code == 429, username
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_the_count_survives_losing_every_in_process_cache(alice):
    """What one gunicorn worker counted, another (with its own memory) must see."""
    client = Client()
    for _ in range(FAILURES_PER_ACCOUNT):
        assert client.post("/admin/login/", {"username": "alice", "password": "x"}).status_code == 200
        cache.clear()  # as if the next attempt reached a fresh process
    assert client.post("/admin/login/", {"username": "alice", "password": PASSWORD}).status_code == 429


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    site = LiveSite(tmp_path_factory.mktemp("login-limit"))
    site.start(2, threads=4)
    yield site
    site.stop()


def test_two_gunicorn_processes_without_redis_share_the_login_limit(live_site):
    first, second = live_site.servers
    answers = [
        live_site.login((first, second)[attempt % 2], VARIANTS[attempt % len(VARIANTS)], "wrong")
        for attempt in range(FAILURES_PER_ACCOUNT)
    ]
    assert answers == [200] * FAILURES_PER_ACCOUNT
    assert live_site.login(second, "alice", PASSWORD) == 429
    assert live_site.login(first, "ａｌｉｃｅ", PASSWORD) == 429


def test_parallel_guesses_through_two_processes_check_no_more_passwords_than_the_limit(live_site):
    """Each attempt is counted before its password is checked, so a burst cannot all pass the check at once."""
    first, second = live_site.servers
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda n: live_site.login((first, second)[n % 2], "mallory", "x"), range(12))
        )
    assert sorted(statuses) == [200] * FAILURES_PER_ACCOUNT + [429] * (12 - FAILURES_PER_ACCOUNT)
