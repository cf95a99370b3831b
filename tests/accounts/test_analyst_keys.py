"""Exchange analysts' keys (accounts.models.AnalystKey): made and revoked by operators' commands, audited, and
usable only while their account is an active exchange analyst. What they read is tests/graph/test_advisories.py."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from rest_framework.test import APIClient

from accounts.actions import NotAnExchangeAnalyst, do_create_analyst_key, do_revoke_analyst_key
from accounts.models import ANALYST_KEY_PREFIX, AnalystKey, AuditEntry
from accounts.roles import assign_role

pytestmark = pytest.mark.django_db

TAXII: dict[str, Any] = {"HTTP_ACCEPT": "application/taxii+json;version=2.1"}


def keyed(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def create_key(username: str, *args: str) -> str:
    out = StringIO()
    call_command("create_analyst_key", username, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_the_command_prints_the_key_once_and_stores_only_its_digest(alice):
    secret = create_key("alice", "--name", "OpenCTI")
    assert secret.startswith(ANALYST_KEY_PREFIX)
    key = AnalystKey.objects.get()
    assert (key.user, key.name) == (alice, "OpenCTI")
    assert key.digest == AnalystKey.digest_of(secret) != secret and secret.startswith(key.prefix + "_")
    entry = AuditEntry.objects.get(action="analyst_key_created")
    assert (entry.actor, entry.object_id, entry.platform_id) == ("system", key.prefix, None)
    assert entry.details == {"analyst": "alice"}
    assert secret not in str(entry.details)


@pytest.mark.parametrize("who", ["bob", "dave", "nobody"])
def test_only_an_exchange_analyst_gets_a_key(acme, bob, dave, who):
    with pytest.raises(CommandError, match=r"not an active exchange analyst|no user"):
        create_key(who)
    assert not AnalystKey.objects.exists()
    assert not AuditEntry.objects.filter(action="analyst_key_created").exists()


def test_the_action_refuses_an_inactive_exchange_analyst(alice):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    with pytest.raises(NotAnExchangeAnalyst):
        do_create_analyst_key(alice, "", actor="system")
    assert not AnalystKey.objects.exists()


def test_the_actions_are_durable(alice):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_create_analyst_key(alice, "", actor="system")
    key, _ = AnalystKey.generate(alice)
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_revoke_analyst_key(key, actor="system")
    assert not AnalystKey.objects.filter(revoked_at__isnull=False).exists()
    assert not AuditEntry.objects.filter(action__startswith="analyst_key_").exists()


def test_revoke_api_key_revokes_an_analyst_key_by_prefix_and_audits_it(alice):
    secret = create_key("alice")
    key = AnalystKey.objects.get()
    out = StringIO()
    call_command("revoke_api_key", key.prefix, stdout=out)
    assert "Revoked key" in out.getvalue() and "alice" in out.getvalue()
    key.refresh_from_db()
    assert key.is_revoked
    assert AuditEntry.objects.get(action="analyst_key_revoked").object_id == key.prefix
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_api_key", secret, stdout=StringIO())
    with pytest.raises(CommandError, match="no exchange analyst key"):
        call_command("revoke_api_key", f"{ANALYST_KEY_PREFIX}0000000000", stdout=StringIO())
    assert AuditEntry.objects.filter(action="analyst_key_revoked").count() == 1


def test_the_key_reads_taxii_while_its_account_is_an_exchange_analyst(alice, acme):
    secret = create_key("alice")
    client = keyed(secret)
    assert client.get("/taxii2/", **TAXII).status_code == 200
    # Demoted to partner analyst: the key stops at once.
    assign_role(alice, acme.platform)
    response = client.get("/taxii2/", **TAXII)
    assert (
        response.status_code == 401
        and "no longer an active exchange analyst" in response.json()["description"]
    )
    assign_role(alice, None)
    assert client.get("/taxii2/", **TAXII).status_code == 200
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert client.get("/taxii2/", **TAXII).status_code == 401


def test_a_revoked_or_forged_analyst_key_is_a_401(alice):
    secret = create_key("alice")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert keyed(forged).get("/taxii2/", **TAXII).status_code == 401
    assert keyed(f"{ANALYST_KEY_PREFIX}short").get("/taxii2/", **TAXII).status_code == 401
    AnalystKey.objects.get().revoke()
    response = keyed(secret).get("/taxii2/", **TAXII)
    assert response.status_code == 401 and response.json()["http_status"] == "401"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/api/v1/me/", "/api/v1/clusters/", "/api/v1/sellers/"])
def test_the_partner_api_refuses_an_analyst_key_saying_what_it_is_for(alice, path):
    response = keyed(create_key("alice")).get(path)
    assert response.status_code == 401
    assert "TAXII advisories collection only" in response.json()["error"]["message"]


def test_last_use_is_recorded(alice):
    secret = create_key("alice")
    keyed(secret).get("/taxii2/", **TAXII)
    assert AnalystKey.objects.get().last_used_at is not None
