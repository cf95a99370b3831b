"""API keys and platforms have one door each (accounts.actions): the admin and the operator commands write the same audit
entry, and the actions refuse to run inside an outer transaction (durable)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from accounts.actions import do_create_api_key, do_revoke_api_key, do_save_platform
from accounts.models import ApiKey, AuditEntry, Platform
from tests.admin_world import logged_in

pytestmark = pytest.mark.django_db


def test_create_command_writes_the_audit_entry_the_admin_writes(acme):
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key",
        acme.platform.slug,
        "--scopes",
        "submit,read",
        "--name",
        "cron",
        stdout=out,
        stderr=err,
    )
    full_key = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get(name="cron")
    assert key.matches(full_key)
    entry = AuditEntry.objects.get(action="api_key_created")
    assert (entry.actor, entry.platform_id, entry.object_type, entry.object_id) == (
        "system",
        acme.platform.pk,
        "api_key",
        key.prefix,
    )
    assert entry.details == {"scopes": ["submit", "read"]}
    assert full_key not in str(entry.details) and full_key not in err.getvalue()


def test_create_command_with_a_bad_scope_writes_nothing(acme):
    with pytest.raises(CommandError, match="unknown scope"):
        call_command(
            "create_api_key", acme.platform.slug, "--scopes", "admin", stdout=StringIO(), stderr=StringIO()
        )
    assert not ApiKey.objects.filter(platform=acme.platform).exclude(pk=acme.key.pk).exists()
    assert not AuditEntry.objects.filter(action="api_key_created").exists()


def test_revoke_command_writes_the_audit_entry_the_admin_writes(acme):
    call_command("revoke_api_key", acme.key.prefix, stdout=StringIO())
    acme.key.refresh_from_db()
    assert acme.key.is_revoked
    entry = AuditEntry.objects.get(action="api_key_revoked")
    assert (entry.actor, entry.platform_id, entry.object_id) == ("system", acme.platform.pk, acme.key.prefix)
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_api_key", acme.key.prefix, stdout=StringIO())
    assert AuditEntry.objects.filter(action="api_key_revoked").count() == 1


def test_admin_create_and_revoke_write_the_same_entries_as_the_commands(acme, alice):
    client = logged_in(alice)
    response = client.post(
        "/admin/accounts/apikey/add/",
        {"platform": acme.platform.pk, "name": "via admin", "scope_lookup": "on"},
    )
    assert response.status_code == 200
    full_key = re.search(r'value="(bax_[^"]+)"', response.content.decode()).group(1)  # type: ignore[union-attr]
    key = ApiKey.objects.get(name="via admin")
    assert key.matches(full_key)
    created = AuditEntry.objects.get(action="api_key_created")
    assert (created.actor, created.object_id, created.details) == (
        "alice",
        key.prefix,
        {"scopes": ["lookup"]},
    )
    response = client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    revoked = AuditEntry.objects.get(action="api_key_revoked")
    assert (revoked.actor, revoked.platform_id, revoked.object_id) == ("alice", acme.platform.pk, key.prefix)


def test_revoking_twice_is_refused_and_audited_once(acme):
    assert do_revoke_api_key(acme.key, "alice") is True
    assert acme.key.revoked_at is not None
    assert do_revoke_api_key(acme.key, "alice") is False
    assert AuditEntry.objects.filter(action="api_key_revoked").count() == 1


def test_the_actions_are_durable(acme):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_create_api_key(acme.platform, ["read"], "nested", "alice")
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_revoke_api_key(acme.key, "alice")
    acme.key.refresh_from_db()
    assert not acme.key.is_revoked
    assert not ApiKey.objects.filter(name="nested").exists()
    assert not AuditEntry.objects.filter(action__startswith="api_key_").exists()


# --- platforms ------------------------------------------------------------------------------------------------


def test_the_platform_command_audits_creation_and_the_fields_an_update_changes(db):
    call_command("create_platform", "north", "--name", "North", stdout=StringIO())
    platform = Platform.objects.get(slug="north")
    created = AuditEntry.objects.get(action="platform_created")
    assert (created.actor, created.platform_id, created.object_id) == (
        "system",
        platform.pk,
        str(platform.pk),
    )
    call_command(
        "create_platform", "north", "--name", "North", "--cadence", "weekly", "--update", stdout=StringIO()
    )
    changed = AuditEntry.objects.get(action="platform_changed")
    assert (changed.actor, changed.details) == ("system", {"fields": ["report_cadence"]})
    call_command(
        "create_platform", "north", "--name", "North", "--cadence", "weekly", "--update", stdout=StringIO()
    )
    assert (
        AuditEntry.objects.filter(action="platform_changed").count() == 1
    )  # nothing changed, nothing audited


def test_the_platform_admin_audits_creation_and_changes(alice):
    client = logged_in(alice)
    form = {
        "name": "South",
        "slug": "south",
        "active": "on",
        "default_region": "",
        "report_recipients": "",
        "report_cadence": "off",
        "stix_tlp": "amber+strict",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
    }
    response = client.post("/admin/accounts/platform/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    platform = Platform.objects.get(slug="south")
    created = AuditEntry.objects.get(action="platform_created")
    assert (created.actor, created.platform_id) == ("alice", platform.pk)
    response = client.post(
        f"/admin/accounts/platform/{platform.pk}/change/", {**form, "report_cadence": "weekly"}
    )
    assert response.status_code == 302
    changed = AuditEntry.objects.get(action="platform_changed")
    assert (changed.actor, changed.details) == ("alice", {"fields": ["report_cadence"]})


def test_the_platform_action_is_durable(db):
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        do_save_platform(Platform(slug="nested", name="Nested"), "alice")
    assert not Platform.objects.filter(slug="nested").exists()
