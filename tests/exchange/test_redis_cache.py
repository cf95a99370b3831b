"""The shared-cache configuration (REDIS_URL), against the real Redis on 127.0.0.1:6379 (database 15).

The README advises REDIS_URL for several workers; without the `redis` package every authenticated API call
was a 500. Redis is a real service on this machine: when it is down these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.cache import BaseCache, caches
from django.test.utils import override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from accounts.authentication import ApiKeyRateThrottle, Partner
from accounts.login import FAILURES_PER_ACCOUNT
from tests.admin_world import PASSWORD
from tests.live import LiveSite, request

REDIS_URL = "redis://127.0.0.1:6379/15"
ROOT = Path(__file__).resolve().parents[2]


def redis_client():  # the real client, for setup and clean-up only
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not answering ({exc}); it is a real service on this machine")
    return client


@pytest.fixture
def redis_caches():
    """The default cache on Redis as REDIS_URL configures it, under a key prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex}"
    client = redis_client()
    config = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    with override_settings(CACHES={"default": {**config, "KEY_PREFIX": prefix}}):
        yield
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def settings_caches(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    code = "import json; from django.conf import settings; print(json.dumps(settings.CACHES))"
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_redis_url_configures_the_redis_cache():
    result = settings_caches({"REDIS_URL": REDIS_URL})
    assert result.returncode == 0, result.stderr
    caches_setting = json.loads(result.stdout.strip().splitlines()[-1])
    assert caches_setting["default"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }


def test_without_redis_url_the_cache_is_per_process():
    result = settings_caches({})
    assert result.returncode == 0, result.stderr
    backend = json.loads(result.stdout.strip().splitlines()[-1])["default"]["BACKEND"]
    assert backend == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "redis://127.0.0.1:6379/x", "redis://127.0.0.1:port/0"],
)
def test_a_malformed_redis_url_is_refused_naming_the_setting(url):
    result = settings_caches({"REDIS_URL": url})
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


@pytest.mark.django_db
def test_an_authenticated_api_call_answers_200_on_the_redis_cache(acme, redis_caches):
    response = acme.client().get("/api/v1/me/")
    assert response.status_code == 200, response.content
    assert caches["default"].__class__.__name__ == "RedisCache"


class ThrottleOn(ApiKeyRateThrottle):
    """The API throttle at `rate`, counting in `cache` (one cache client: one worker process)."""

    def __init__(self, cache: BaseCache, rate: str) -> None:
        self.cache = cache
        self.rate = rate
        super().__init__()


@pytest.mark.django_db
def test_the_api_throttle_is_shared_by_two_cache_clients(acme, redis_caches):
    """Two RedisCache instances, each with its own connection pool, stand in for two worker processes."""
    clients = [caches.create_connection("default"), caches.create_connection("default")]
    assert clients[0] is not clients[1]
    drf_request = Request(APIRequestFactory().get("/api/v1/me/"))
    drf_request.user = Partner(acme.key)  # type: ignore[assignment]  # DRF's user is whatever auth returns
    allowed = [ThrottleOn(clients[n % 2], "4/min").allow_request(drf_request, APIView()) for n in range(5)]
    assert allowed == [True, True, True, True, False]


@pytest.mark.django_db
def test_concurrent_workers_on_redis_let_through_exactly_the_limit(acme, redis_caches):
    """Eight threads with a Redis client each (eight workers) send 200 requests together against 100/min: exactly
    100 pass. Counted by INCR, nothing is lost; DRF's history, read and written back whole by each request,
    let concurrent requests overwrite each other's and passed more than the limit."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    drf_request = Request(APIRequestFactory().get("/api/v1/me/"))
    drf_request.user = Partner(acme.key)  # type: ignore[assignment]  # DRF's user is whatever auth returns
    start = Barrier(8)

    def worker(_: int) -> int:
        throttle_cache = caches.create_connection("default")
        start.wait()
        return sum(
            ThrottleOn(throttle_cache, "100/min").allow_request(drf_request, APIView()) for _ in range(25)
        )

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(worker, range(8))) == 100


@pytest.fixture(scope="module")
def live_site_on_redis(tmp_path_factory):
    client = redis_client()
    for key in client.scan_iter(":1:throttle_api_key_*"):  # what an earlier run of this test left
        client.delete(key)
    site = LiveSite(
        tmp_path_factory.mktemp("redis"), extra_env={"REDIS_URL": REDIS_URL, "EXCHANGE_API_RATE": "4/min"}
    )
    site.start(2)
    yield site
    site.stop()
    for key in client.scan_iter(":1:throttle_api_key_*"):
        client.delete(key)


def test_two_gunicorn_processes_on_redis_answer_and_share_throttle_and_login_limit(live_site_on_redis):
    site = live_site_on_redis
    first, second = site.servers
    auth = {"Authorization": f"Bearer {site.acme_key}"}
    statuses = [
        request((first, second)[n % 2].url, "GET", "/api/v1/me/", headers=auth).status for n in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]
    for attempt in range(FAILURES_PER_ACCOUNT):
        assert site.login((first, second)[attempt % 2], "alice", "wrong") == 200
    assert site.login(second, "alice", PASSWORD) == 429
    assert "No module named" not in site.stderr()
