"""Rate limiting of the admin login: attempts are counted per (username, client address) and per client
address; beyond the limit the login answers 429 until the window has passed.

Counting per username *and* address stops password guessing against one account without letting anyone lock
a colleague out from elsewhere; the per-address limit stops spraying many usernames from one place.

The username is counted as the login form authenticates it: Django's `UsernameField` applies NFKC (so
fullwidth `ａｌｉｃｅ` logs in as `alice`), and we casefold on top so that case variants count as one too.

The counters are rows of `LoginFailureCounter` in the database, in every deployment (with or without
REDIS_URL): all gunicorn workers and machines already share the database, the increment is one atomic
UPDATE on SQLite and PostgreSQL alike, and an attempt is counted *before* the password is checked, so
parallel guesses cannot all slip past the check. We chose this over a cache alias: Django's DatabaseCache
increments by read-then-write (concurrent workers lose counts) and the Redis one exists only with REDIS_URL;
and over django-axes, which has one failure limit for every lockout parameter (we need 5 per account and 30
per address) and brings its own authentication backend and middleware into the admin login, which the
second-factor login (issue 12 item 18) is reworking at the same time.

Counter keys are HMACs (keyed with SECRET_KEY) of the username and address, so the table holds neither,
nor anything a guessed address could be checked against. The client address is REMOTE_ADDR; behind a
reverse proxy, make the proxy set it (X-Forwarded-For is trivially forged).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.crypto import salted_hmac

from accounts.models import AuditEntry, LoginFailureCounter

FAILURES_PER_ACCOUNT = 5  # per username and address
FAILURES_PER_ADDRESS = 30  # per address, all usernames
WINDOW_SECONDS = 15 * 60
USERNAME_MAX_LENGTH = 150  # the login form refuses longer ones

LoginView = Callable[..., HttpResponse]


def normalized_username(raw: str) -> str:
    """The account a login attempt is aimed at: what the login form authenticates (stripped, NFKC, as in
    `AbstractBaseUser.normalize_username`), casefolded."""
    return unicodedata.normalize("NFKC", raw.strip()).strip().casefold()[:USERNAME_MAX_LENGTH]


def _digest(kind: str, value: str) -> str:
    return salted_hmac(f"accounts.login.{kind}", value, algorithm="sha256").hexdigest()


def _keys(request: HttpRequest) -> list[tuple[str, int]]:
    address = str(request.META.get("REMOTE_ADDR", ""))
    username = normalized_username(str(request.POST.get("username", "")))
    return [
        (_digest("account", f"{username}\0{address}"), FAILURES_PER_ACCOUNT),
        (_digest("address", address), FAILURES_PER_ADDRESS),
    ]


def rate_limited(login: LoginView) -> LoginView:
    """Wrap `AdminSite.login`."""

    @wraps(login)
    def view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method != "POST":
            return login(request, extra_context)
        keys = _keys(request)
        window = timedelta(seconds=WINDOW_SECONDS)
        counts = [LoginFailureCounter.objects.charge(key, window) for key, _ in keys]
        if any(count > limit for count, (_, limit) in zip(counts, keys, strict=True)):
            for key, _ in keys:  # a refused attempt checks no password: it is not a failure
                LoginFailureCounter.objects.refund(key)
            username = unicodedata.normalize("NFKC", str(request.POST.get("username", "")).strip())
            AuditEntry.objects.record("admin_login_throttled", username[:USERNAME_MAX_LENGTH])
            response: HttpResponse = TemplateResponse(
                request,
                "admin/login_throttled.html",
                {"title": "Too many attempts", "minutes": WINDOW_SECONDS // 60},
                status=429,
            )
            response["Retry-After"] = str(WINDOW_SECONDS)
            return response
        response = login(request, extra_context)
        (account, _), (address, _) = keys
        if request.user.is_authenticated and response.status_code in (301, 302, 303):
            LoginFailureCounter.objects.clear(account)  # a success clears the account's failures...
            LoginFailureCounter.objects.refund(address)  # ...and is not one for the address
        elif response.status_code != 200:  # not the form coming back with wrong credentials
            for key, _ in keys:
                LoginFailureCounter.objects.refund(key)
        return response

    return view
