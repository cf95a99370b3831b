"""The audit log moved from exchange to accounts (issue 18): its rows, content type, permissions and admin
history follow it."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.graph.test_outbox_move import migrate

BEFORE = [("exchange", "0006_analyst_lookup_usage"), ("accounts", "0006_remove_reportdelivery_state")]


def labels() -> set[str]:
    ContentType.objects.clear_cache()
    return set(ContentType.objects.filter(model="auditentry").values_list("app_label", flat=True))


def auditor_permissions() -> set[tuple[str, str]]:
    group = Group.objects.get(name="auditors")
    return set(group.permissions.values_list("content_type__app_label", "codename"))


@pytest.mark.django_db(transaction=True)
def test_rows_permissions_and_history_survive_the_move_both_ways():
    executor = migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    old_model = old_apps.get_model("exchange", "AuditEntry")
    assert old_model._meta.db_table == "exchange_auditentry"
    platform = old_apps.get_model("accounts", "Platform").objects.create(name="Acme", slug="acme")
    old_entry = old_model.objects.create(
        action="api_key_revoked", actor="alice", platform_id=platform.pk, details={"count": 1}
    )
    content_type, _ = ContentType.objects.get_or_create(app_label="exchange", model="auditentry")
    view, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="view_auditentry", defaults={"name": "Can view audit entry"}
    )
    Group.objects.create(name="auditors").permissions.add(view)
    user = User.objects.create_user("admin-log-writer")
    LogEntry.objects.create(
        user=user,
        content_type=content_type,
        object_id=str(old_entry.pk),
        object_repr="e",
        action_flag=ADDITION,
    )
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor = migrate(latest)
        new_apps = executor.loader.project_state(latest).apps
        new_model = new_apps.get_model("accounts", "AuditEntry")
        assert new_model._meta.db_table == "accounts_auditentry"
        assert list(new_model.objects.values_list("pk", "action", "platform_id", "details")) == [
            (old_entry.pk, "api_key_revoked", platform.pk, {"count": 1})
        ]
        assert new_model.objects.create(action="lookup", actor="system").pk > old_entry.pk  # ids go on
        with pytest.raises(LookupError):
            new_apps.get_model("exchange", "AuditEntry")
        assert labels() == {"accounts"}
        assert ("accounts", "view_auditentry") in auditor_permissions()
        history = LogEntry.objects.filter(object_id=str(old_entry.pk))
        assert list(history.values_list("content_type__app_label", flat=True)) == ["accounts"]

        executor = migrate(BEFORE)  # and back: the table and content type return to exchange
        back = executor.loader.project_state(BEFORE).apps.get_model("exchange", "AuditEntry")
        assert sorted(back.objects.values_list("action", flat=True)) == ["api_key_revoked", "lookup"]
        assert labels() == {"exchange"}
        assert ("exchange", "view_auditentry") in auditor_permissions()
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        ContentType.objects.clear_cache()


def test_the_audit_log_lives_in_the_lowest_app():
    import exchange.models
    from accounts.models import AuditEntry

    assert (AuditEntry._meta.app_label, AuditEntry._meta.db_table) == ("accounts", "accounts_auditentry")
    assert not hasattr(exchange.models, "AuditEntry")
