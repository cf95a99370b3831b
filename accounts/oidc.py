"""Single sign-on through the operator's OpenID Connect provider (mozilla-django-oidc), when configured.

The provider replaces the password, not the second factor: a user signed in through it still passes the
admin's TOTP step when the policy asks it of them. Each login maps one claim (`EXCHANGE_OIDC_ROLE_CLAIM`, a
string or a list of strings) onto the two roles: the value `EXCHANGE_OIDC_EXCHANGE_VALUE` makes an exchange
analyst, `EXCHANGE_OIDC_PARTNER_PREFIX` + a platform slug a partner analyst of that platform. The role is set
again at every login (the provider is the source of truth); a user with no mapped role, with several, or with
an unknown platform is refused. Users are matched by their verified email address.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import AuditEntry, Platform
from accounts.roles import assign_role

EXCHANGE_ROLE = "exchange"


def role_from_claims(claims: dict[str, Any]) -> tuple[str, Platform | None] | None:
    """(EXCHANGE_ROLE, None), ("partner", platform), or None when the claims map onto no single role."""
    raw = claims.get(settings.EXCHANGE_OIDC_ROLE_CLAIM)
    if isinstance(raw, str):
        values = [raw]
    elif isinstance(raw, list):
        values = [value for value in raw if isinstance(value, str)]
    else:
        values = []
    prefix = settings.EXCHANGE_OIDC_PARTNER_PREFIX
    exchange = settings.EXCHANGE_OIDC_EXCHANGE_VALUE in values
    slugs = {value[len(prefix) :] for value in values if value.startswith(prefix)}
    if exchange + len(slugs) != 1:
        return None  # no role, or several: refuse rather than guess
    if exchange:
        return EXCHANGE_ROLE, None
    platform = Platform.objects.filter(slug=slugs.pop(), active=True).first()
    return ("partner", platform) if platform else None


def username_from_claims(email: str, claims: dict[str, Any] | None = None) -> str:
    return email[:150]


class ExchangeOIDCBackend(OIDCAuthenticationBackend):
    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        # mozilla-django-oidc checks signature and nonce; the audience and issuer are checked here.
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("ID token for another client")
        if settings.EXCHANGE_OIDC_ISSUER and payload.get("iss") != settings.EXCHANGE_OIDC_ISSUER:
            raise SuspiciousOperation("ID token from another issuer")
        return payload

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if not claims.get("email") or claims.get("email_verified") is False:
            return False
        if role_from_claims(claims) is None:
            AuditEntry.objects.record("admin_sso_refused", str(claims.get("email", ""))[:150])
            return False
        return True

    def create_user(self, claims: dict[str, Any]) -> User:
        email = str(claims["email"])
        if get_user_model().objects.filter(username=username_from_claims(email)).exists():
            raise SuspiciousOperation("a local account already has this username")
        with transaction.atomic():
            user = get_user_model().objects.create_user(username_from_claims(email), email=email)
            AuditEntry.objects.record("admin_sso_user_created", user.get_username())
            return self.update_user(user, claims)

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        role = role_from_claims(claims)
        assert role is not None  # verify_claims refused the rest
        with transaction.atomic():
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            assign_role(user, role[1])
        return user
