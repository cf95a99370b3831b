"""Single sign-on for the admin against a real (small) OpenID Connect provider started on localhost.

The provider runs in a thread: authorization endpoint (the "login" is a query parameter naming the user),
token endpoint (checks the client secret, the redirect URI and PKCE; signs an RS256 ID token), userinfo and
JWKS. The exchange talks to it over HTTP through mozilla-django-oidc, exactly as in production.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.test import Client
from django.urls import clear_url_caches
from jwt.algorithms import RSAAlgorithm

from accounts.models import AnalystProfile, AuditEntry

CLIENT_ID = "exchange-admin"
CLIENT_SECRET = "provider-client-secret-for-tests"
CLUSTERS = "/admin/graph/actorcluster/"


@dataclass
class Provider:
    """A minimal OpenID Connect provider: just what the authorization-code flow with PKCE needs."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    audience: str = CLIENT_ID
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def serve(self) -> ThreadingHTTPServer:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/authorize":
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = {**query, "user": query["login_as"]}
                    target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.answer(302, headers={"Location": target})
                elif parts.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self.answer(200, {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})
                elif parts.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    claims = provider.tokens.get(token)
                    self.answer(200, claims) if claims else self.answer(401, {"error": "invalid_token"})
                else:
                    self.answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                grant = provider.codes.pop(form.get("code", ""), None)
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                ).rstrip(b"=")
                if (
                    self.path != "/token"
                    or grant is None
                    or form.get("client_secret") != CLIENT_SECRET
                    or form.get("redirect_uri") != grant["redirect_uri"]
                    or challenge.decode() != grant.get("code_challenge")
                ):
                    self.answer(400, {"error": "invalid_grant"})
                    return
                claims = provider.users[grant["user"]]
                now = int(time.time())
                id_token = jwt.encode(
                    {
                        "iss": provider.url,
                        "aud": provider.audience,
                        "sub": claims["sub"],
                        "iat": now,
                        "exp": now + 300,
                        "nonce": grant["nonce"],
                    },
                    provider.key,
                    algorithm="RS256",
                    headers={"kid": "k1"},
                )
                access_token = secrets.token_urlsafe(16)
                provider.tokens[access_token] = claims
                self.answer(200, {"id_token": id_token, "access_token": access_token, "token_type": "Bearer"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _reload_urls() -> None:
    import exchange.urls

    importlib.reload(exchange.urls)
    clear_url_caches()


@pytest.fixture
def provider(settings, db) -> Iterator[Provider]:
    provider = Provider()
    server = provider.serve()
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{provider.url}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{provider.url}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{provider.url}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider.url}/jwks"
    settings.EXCHANGE_OIDC_ISSUER = provider.url
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "accounts.oidc.ExchangeOIDCBackend",
    ]
    _reload_urls()
    try:
        yield provider
    finally:
        settings.OIDC_ENABLED = False
        _reload_urls()
        server.shutdown()
        server.server_close()


def sign_in(provider: Provider, login_as: str, next_url: str = CLUSTERS) -> tuple[Client, Any]:
    """The browser's round trip: exchange -> provider (signs in as `login_as`) -> exchange's callback."""
    client = Client()
    start = client.get("/oidc/authenticate/", {"next": next_url})
    assert start.status_code == 302 and start["Location"].startswith(f"{provider.url}/authorize?")
    back = requests.get(f"{start['Location']}&login_as={login_as}", allow_redirects=False, timeout=10)
    assert back.status_code == 302
    callback = urlsplit(back.headers["Location"])
    return client, client.get(callback.path, parse_qs(callback.query))


def claims(sub: str, email: str, *roles: str) -> dict[str, Any]:
    return {"sub": sub, "email": email, "email_verified": True, "roles": list(roles)}


def test_login_page_offers_single_sign_on_only_when_configured(db, provider, settings):
    assert 'href="/oidc/authenticate/' in Client().get("/admin/login/").content.decode()
    settings.OIDC_ENABLED = False
    assert "/oidc/" not in Client().get("/admin/login/").content.decode()


def test_partner_role_claim_signs_in_a_partner_analyst_of_that_platform(provider, acme, bazaar):
    provider.users["dana"] = claims("u-dana", "dana@acme.example", "partner-analyst:acme")
    client, response = sign_in(provider, "dana")
    assert response.status_code == 302 and response["Location"] == CLUSTERS
    profile = AnalystProfile.objects.get(user__email="dana@acme.example")
    assert profile.platform == acme.platform and profile.user.is_staff
    assert profile.user.groups.get().name == "Partner analyst"
    assert client.get(CLUSTERS).status_code == 200  # partner analysts: no second factor by default


def test_exchange_role_claim_signs_in_an_exchange_analyst_who_still_needs_the_second_factor(provider):
    provider.users["erin"] = claims("u-erin", "erin@exchange.example", "exchange-analyst", "unrelated")
    client, response = sign_in(provider, "erin")
    assert response.status_code == 302
    user = User.objects.get(email="erin@exchange.example")
    assert user.analyst.platform is None
    # Single sign-on stands in for the password only: the admin still asks for the TOTP step.
    to_login = client.get(CLUSTERS)
    assert to_login.status_code == 302 and to_login["Location"].startswith("/admin/login/")
    assert client.get(to_login["Location"])["Location"].startswith("/admin/second-factor/")


@pytest.mark.parametrize(
    "roles",
    [(), ("partner-analyst:nowhere",), ("exchange-analyst", "partner-analyst:acme"), ("viewer",)],
    ids=["no-role", "unknown-platform", "two-roles", "unmapped"],
)
def test_users_without_exactly_one_mapped_role_are_refused(provider, acme, roles):
    provider.users["mallory"] = claims("u-m", "mallory@example.org", *roles)
    client, response = sign_in(provider, "mallory")
    assert response.status_code == 302 and response["Location"] == "/admin/login/?sso=refused"
    assert not User.objects.filter(email="mallory@example.org").exists()
    assert client.get(CLUSTERS).status_code == 302
    assert AuditEntry.objects.filter(action="admin_sso_refused").exists()
    assert "did not give this account a role" in client.get(response["Location"]).content.decode()


def test_role_follows_the_provider_at_every_login(provider, acme, bazaar):
    provider.users["dana"] = claims("u-dana", "dana@acme.example", "partner-analyst:acme")
    sign_in(provider, "dana")
    provider.users["dana"] = claims("u-dana", "dana@acme.example", "partner-analyst:bazaar")
    sign_in(provider, "dana")
    assert AnalystProfile.objects.get(user__email="dana@acme.example").platform == bazaar.platform
    provider.users["dana"] = claims("u-dana", "dana@acme.example")
    _, response = sign_in(provider, "dana")
    assert response["Location"] == "/admin/login/?sso=refused"


def test_an_id_token_for_another_client_is_refused(provider, acme):
    provider.audience = "someone-else"
    provider.users["dana"] = claims("u-dana", "dana@acme.example", "partner-analyst:acme")
    client, response = sign_in(provider, "dana")
    assert response.status_code == 400
    assert client.get(CLUSTERS).status_code == 302


def test_half_configured_single_sign_on_is_refused_at_start_up():
    from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

    result = _manage({**PRODUCTION_ENV, "OIDC_RP_CLIENT_ID": CLIENT_ID}, "check")
    assert result.returncode != 0
    assert "OIDC_RP_CLIENT_ID is set, so these must be set too: OIDC_RP_CLIENT_SECRET" in result.stderr
    endpoints = {
        f"OIDC_OP_{name}_ENDPOINT": f"http://idp.example/{name.lower()}"
        for name in ("AUTHORIZATION", "TOKEN", "USER", "JWKS")
    }
    result = _manage(
        {**PRODUCTION_ENV, "OIDC_RP_CLIENT_ID": CLIENT_ID, "OIDC_RP_CLIENT_SECRET": "s", **endpoints}, "check"
    )
    assert result.returncode != 0 and "OIDC endpoints must use https://" in result.stderr
    https = {name: url.replace("http://", "https://") for name, url in endpoints.items()}
    result = _manage(
        {**PRODUCTION_ENV, "OIDC_RP_CLIENT_ID": CLIENT_ID, "OIDC_RP_CLIENT_SECRET": "s", **https},
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stderr
