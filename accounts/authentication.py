"""API-key authentication, scope permission and per-key throttling for the partner API."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiKey, Platform

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
            self._fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <api key>'.")
        try:
            full_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            self._fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed API key.") from None
        lookup = ApiKey.parse(full_key)
        if lookup is None:
            self._fail(request, "malformed", "-")
            raise exceptions.AuthenticationFailed("Malformed API key.")
        key = ApiKey.objects.select_related("platform").filter(lookup=lookup).first()
        # Compare even when the row is missing, so timing does not tell unknown from wrong keys.
        digest_ok = (key or _DUMMY_KEY).matches(full_key)
        if key is None or not digest_ok:
            self._fail(request, "unknown", f"bax_{lookup}")
            raise exceptions.AuthenticationFailed("Unknown API key.")
        if key.is_revoked:
            self._fail(request, "revoked", key.prefix)
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if not key.platform.active:
            self._fail(request, "platform_inactive", key.prefix)
            raise exceptions.AuthenticationFailed("This API key's platform is inactive.")
        key.touch()
        return Partner(key), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="exchange"'

    @staticmethod
    def _fail(request: Request, reason: str, prefix: str) -> None:
        logger.warning(
            "event=auth_failed reason=%s key_prefix=%s path=%s ip=%s",
            reason,
            prefix,
            request.path,
            _client_ip(request),
        )


_DUMMY_KEY = ApiKey(lookup="0" * 10, digest="0" * 64)


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


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-key request rate (EXCHANGE_API_RATE, default 6000/min)."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.user, Partner):
            return self.cache_format % {"scope": self.scope, "ident": request.user.api_key.pk}
        return None  # unauthenticated requests are refused before they cost anything
