"""Rate limiting of the admin login: failed attempts are counted per (username, client address) and per
client address in the cache; beyond the limit the login answers 429 until the window has passed.

Counting per username *and* address stops password guessing against one account without letting anyone lock
a colleague out from elsewhere; the per-address limit stops spraying many usernames from one place. The
counters live in the default cache: set REDIS_URL so that all worker processes share them. The client address
is REMOTE_ADDR; behind a reverse proxy, make the proxy set it (X-Forwarded-For is trivially forged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from exchange.models import AuditEntry

FAILURES_PER_ACCOUNT = 5  # per username and address
FAILURES_PER_ADDRESS = 30  # per address, all usernames
WINDOW_SECONDS = 15 * 60

LoginView = Callable[..., HttpResponse]


def _keys(request: HttpRequest) -> list[tuple[str, int]]:
    address = request.META.get("REMOTE_ADDR", "")
    username = str(request.POST.get("username", ""))[:150].strip().lower()
    account = hashlib.sha256(f"{username}\0{address}".encode()).hexdigest()
    by_address = hashlib.sha256(address.encode()).hexdigest()
    return [
        (f"admin-login:account:{account}", FAILURES_PER_ACCOUNT),
        (f"admin-login:addr:{by_address}", FAILURES_PER_ADDRESS),
    ]


def _record_failure(key: str) -> None:
    cache.add(key, 0, WINDOW_SECONDS)  # starts the window on the first failure only
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, WINDOW_SECONDS)


def rate_limited(login: LoginView) -> LoginView:
    """Wrap `AdminSite.login`."""

    @wraps(login)
    def view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method != "POST":
            return login(request, extra_context)
        keys = _keys(request)
        if any((cache.get(key) or 0) >= limit for key, limit in keys):
            AuditEntry.objects.record("admin_login_throttled", str(request.POST.get("username", ""))[:150])
            response: HttpResponse = TemplateResponse(
                request,
                "admin/login_throttled.html",
                {"title": "Too many attempts", "minutes": WINDOW_SECONDS // 60},
                status=429,
            )
            response["Retry-After"] = str(WINDOW_SECONDS)
            return response
        response = login(request, extra_context)
        if request.user.is_authenticated and response.status_code in (301, 302, 303):
            cache.delete(keys[0][0])  # a success clears the account's failures, not the address's
        elif response.status_code == 200:  # the form came back: wrong credentials
            for key, _ in keys:
                _record_failure(key)
        return response

    return view
