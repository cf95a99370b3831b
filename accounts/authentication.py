"""API-key authentication, scope permission and per-key throttling for the partner API, and the exchange
analysts' keys that read the TAXII advisories collection (graph/taxii.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from django.db import connection
from django.db.models import Model
from psycopg import sql
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ANALYST_KEY_PREFIX, AnalystKey, ApiKey, HashedKey, Platform
from accounts.scoping import scope_of

logger = logging.getLogger("exchange.auth")


@dataclass(frozen=True)
class Partner:
    """The authenticated caller of the partner API: one key of one platform (DRF's ``request.user``)."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False

    @property
    def platform(self) -> Platform:
        return self.api_key.platform

    @property
    def platform_id(self) -> int:
        return self.api_key.platform_id

    def __str__(self) -> str:
        return f"{self.platform.slug}:{self.api_key.prefix}"


def _client_ip(request: Request) -> str:
    return str(request.META.get("REMOTE_ADDR", "-"))


def _fail(request: Request, reason: str, prefix: str) -> None:
    """Log a refused key with its public prefix only, never its secret part."""
    logger.warning(
        "event=auth_failed reason=%s key_prefix=%s path=%s ip=%s",
        reason,
        prefix,
        request.path,
        _client_ip(request),
    )


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer bax_<lookup>_<secret>``.

    Failures are logged with the key's public prefix only, never its secret part.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Partner, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None  # no credentials: the permission check answers 401
        if header[0].lower() != self.keyword.lower().encode() or len(header) != 2:
            _fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <api key>'.")
        try:
            full_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            _fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed API key.") from None
        if full_key.startswith(ANALYST_KEY_PREFIX):
            _fail(request, "analyst_key", "-")
            raise exceptions.AuthenticationFailed(
                "This is an exchange analyst's key: it reads the TAXII advisories collection only."
            )
        lookup = ApiKey.parse(full_key)
        if lookup is None:
            _fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed API key.")
        key = _matching_key(request, _api_key_with_platform, lookup, full_key, _DUMMY_KEY, f"bax_{lookup}")
        if not key.platform.active:
            _fail(request, "platform_inactive", key.prefix)
            raise exceptions.AuthenticationFailed("This API key's platform is inactive.")
        key.touch()
        return Partner(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="exchange"'


_DUMMY_KEY = ApiKey(lookup="0" * 10, digest="0" * 64)


@cache
def _key_with_platform_sql() -> tuple[str, list[str], list[str]]:
    """The statement that reads an API key and its platform by lookup, from the models' own columns, and the
    two models' field names in its column order (built once per process)."""
    key_fields, platform_fields = ApiKey._meta.concrete_fields, Platform._meta.concrete_fields
    columns = [sql.Identifier("k", str(f.column)) for f in key_fields]
    columns += [sql.Identifier("p", str(f.column)) for f in platform_fields]
    statement = sql.SQL(
        "SELECT {columns} FROM {keys} k JOIN {platforms} p ON p.id = k.platform_id WHERE k.lookup = %s"
    ).format(
        columns=sql.SQL(", ").join(columns),
        keys=sql.Identifier(ApiKey._meta.db_table),
        platforms=sql.Identifier(Platform._meta.db_table),
    )
    # Rendered once (identifiers quoted): a Composed would be rendered again at every execution.
    return statement.as_string(None), [f.attname for f in key_fields], [f.attname for f in platform_fields]


def _api_key_with_platform(lookup: str) -> ApiKey | None:
    """The API key with this lookup, its platform loaded with it (the primary, like every key check).

    On PostgreSQL one prepared statement: every partner request runs it, and compiling the ORM's query
    (`ApiKey.objects.select_related("platform").filter(lookup=...).first()`) cost about 0.7 ms of CPU per
    request against 0.15 ms for the whole prepared read. Elsewhere the ORM."""
    if connection.vendor != "postgresql":
        return ApiKey.objects.select_related("platform").filter(lookup=lookup).first()
    statement, key_names, platform_names = _key_with_platform_sql()
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, [lookup], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    key = _from_row(ApiKey, key_names, row[: len(key_names)])
    key.platform = _from_row(Platform, platform_names, row[len(key_names) :])
    return key


def _from_row[M: Model](model: type[M], names: list[str], values: tuple[Any, ...]) -> M:
    """A model instance from its concrete fields' column values, each converted as the ORM converts it (a
    JSON field's text decoded)."""
    converted = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(model._meta.concrete_fields, values, strict=True)
    ]
    return model.from_db(connection.alias, names, converted)


def _matching_key[K: HashedKey](
    request: Request, find: Callable[[str], K | None], lookup: str, full_key: str, dummy: K, shown: str
) -> K:
    """The unrevoked key whose lookup and secret `full_key` carries (`find` reads it by its lookup), or
    AuthenticationFailed (logged as `shown`, the key's non-secret part). The digest is compared even when no
    row matches, so the time taken does not tell an unknown key from a wrong secret."""
    key = find(lookup)
    digest_ok = (key or dummy).matches(full_key)
    if key is None or not digest_ok:
        _fail(request, "unknown", shown)
        raise exceptions.AuthenticationFailed("Unknown API key.")
    if key.is_revoked:
        _fail(request, "revoked", key.prefix)
        raise exceptions.AuthenticationFailed("This API key has been revoked.")
    return key


@dataclass(frozen=True)
class ExchangeReader:
    """An exchange analyst reading through their key (DRF's ``request.user`` on the TAXII views)."""

    analyst_key: AnalystKey

    is_authenticated = True
    is_anonymous = False

    @property
    def username(self) -> str:
        return str(self.analyst_key.user.get_username())

    def __str__(self) -> str:
        return f"{self.username}:{self.analyst_key.prefix}"


class AnalystKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer baxa_<lookup>_<secret>``: an exchange analyst's key. Any other credentials are
    left to the next authentication class (a partner's key). The key works only while its account is an
    active exchange analyst who may use the admin (`accounts.scoping.scope_of`), checked on every request."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ExchangeReader, AnalystKey] | None:
        header = get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != self.keyword.lower().encode():
            return None
        if not header[1].startswith(ANALYST_KEY_PREFIX.encode()):
            return None
        full_key = header[1].decode("ascii", errors="replace")
        lookup = AnalystKey.parse(full_key)
        if lookup is None:
            _fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed exchange analyst key.")
        key = _matching_key(
            request,
            _analyst_key,
            lookup,
            full_key,
            _DUMMY_ANALYST_KEY,
            f"{ANALYST_KEY_PREFIX}{lookup}",
        )
        if not scope_of(key.user).everything:
            _fail(request, "not_exchange_analyst", key.prefix)
            raise exceptions.AuthenticationFailed(
                "This key's account is no longer an active exchange analyst."
            )
        key.touch()
        return ExchangeReader(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="exchange"'


_DUMMY_ANALYST_KEY = AnalystKey(lookup="0" * 10, digest="0" * 64)


def _analyst_key(lookup: str) -> AnalystKey | None:
    return AnalystKey.objects.select_related("user__analyst").filter(lookup=lookup).first()


class HasApiKeyScope(BasePermission):
    """Deny by default: the caller needs a valid key carrying the view's ``required_scope``.

    Views declare ``required_scope`` (a string, or a dict by HTTP method). A view without one is
    refused, so a new endpoint cannot be exposed by forgetting to think about access.
    """

    message = "This API key does not have the scope this endpoint requires."

    def has_permission(self, request: Request, view: Any) -> bool:
        partner = request.user
        if not isinstance(partner, Partner):
            raise exceptions.NotAuthenticated("An API key is required: 'Authorization: Bearer <api key>'.")
        scope = getattr(view, "required_scope", None)
        if isinstance(scope, dict):
            scope = scope.get(request.method or "", None)
        if not scope:
            return False
        if not partner.api_key.has_scope(scope):
            self.message = f"This API key lacks the '{scope}' scope."
            logger.warning(
                "event=scope_denied scope=%s key_prefix=%s path=%s",
                scope,
                partner.api_key.prefix,
                request.path,
            )
            return False
        return True


class TaxiiReaderPermission(HasApiKeyScope):
    """The TAXII views: a partner's key with the view's scope (HasApiKeyScope), or an exchange analyst's key
    (AnalystKeyAuthentication: which collections it reaches is the views' business)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.user, ExchangeReader):
            return True
        return super().has_permission(request, view)


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-key request rate (EXCHANGE_API_RATE, default 6000/min), for partner and exchange analyst keys.

    A sliding-window counter rather than DRF's history of request times: the key's count in the current window
    and in the one before, that one weighted by the share of it still within one window of now (the usual
    approximation of a sliding window, as in Cloudflare's and Redis's rate limiters). Two integers per key,
    incremented atomically in the cache (shared through Redis with REDIS_URL). DRF's history was a list of every
    request time within the window, read and written back whole by every request: 12,000 times per key at
    200 requests/s under a high limit (a third of a millisecond per request to unpickle and pickle), and two
    workers writing it back at once lost each other's requests. A refused request does not count, as in DRF."""

    scope = "api_key"
    num_requests: int  # set by SimpleRateThrottle.__init__ from the rate (its stubs leave them out)
    duration: int
    _refused: tuple[int, int, float]  # a refused request's: the count, the window before's, seconds into it

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        window, limit, now = self.duration, self.num_requests, self.timer()
        index = int(now // window)
        current = f"{key}:{index}"
        # Created within its window with twice its length to live, so it cannot expire while it is counted.
        self.cache.add(current, 0, timeout=2 * window + 1)
        count = self.cache.incr(current)
        before = int(self.cache.get(f"{key}:{index - 1}", 0))
        elapsed = now - index * window
        if before * (1 - elapsed / window) + count <= limit:
            return True
        self.cache.decr(current)
        self._refused = (count - 1, before, elapsed)
        return False

    def wait(self) -> float | None:
        """Seconds until one more request fits: the previous window's weight decays within this window, and a
        full current window waits for the next one, where it becomes the previous."""
        counted, before, elapsed = self._refused
        window, limit = self.duration, self.num_requests
        room = limit - 1 - counted
        if room >= 0 and before > 0:
            return max(0.0, window * (1 - room / before) - elapsed)
        return window - elapsed + (window * max(0.0, 1 - (limit - 1) / counted) if counted else 0.0)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.user, Partner):
            return self.cache_format % {"scope": self.scope, "ident": request.user.api_key.pk}
        if isinstance(request.user, ExchangeReader):
            ident = f"analyst-{request.user.analyst_key.pk}"
            return self.cache_format % {"scope": self.scope, "ident": ident}
        return None  # unauthenticated requests are refused before they cost anything
