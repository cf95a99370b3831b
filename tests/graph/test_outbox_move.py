"""The report outbox moved from accounts to graph (issue 18): its rows, content type and permissions follow it."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("accounts", "0004_login_failure_counter"), ("graph", "0002_pending_merge")]


def migrate(targets: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_rows_and_content_type_survive_the_move_both_ways():
    executor = migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    old_model = old_apps.get_model("accounts", "ReportDelivery")
    assert old_model._meta.db_table == "accounts_reportdelivery"
    old_model.objects.create(
        kind="digest",
        recipient="lead@example.org",
        period_end=timezone.now(),
        subject="s",
        body_text="t",
        body_html="h",
        message_id="<moved@example.org>",
    )
    ContentType.objects.get_or_create(app_label="accounts", model="reportdelivery")
    ContentType.objects.clear_cache()
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor = migrate(latest)
        new_model = executor.loader.project_state(latest).apps.get_model("graph", "ReportDelivery")
        assert [r.message_id for r in new_model.objects.all()] == ["<moved@example.org>"]
        labels = set(ContentType.objects.filter(model="reportdelivery").values_list("app_label", flat=True))
        assert labels == {"graph"}
        with pytest.raises(LookupError):
            executor.loader.project_state(latest).apps.get_model("accounts", "ReportDelivery")

        executor = migrate(BEFORE)  # and back: the table and content type return to accounts
        back = executor.loader.project_state(BEFORE).apps.get_model("accounts", "ReportDelivery")
        assert [r.message_id for r in back.objects.all()] == ["<moved@example.org>"]
        labels = set(ContentType.objects.filter(model="reportdelivery").values_list("app_label", flat=True))
        assert labels == {"accounts"}
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        ContentType.objects.clear_cache()


def test_the_outbox_model_lives_with_its_logic():
    from graph.models import ReportDelivery

    assert ReportDelivery._meta.app_label == "graph"
    assert ReportDelivery._meta.db_table == "graph_reportdelivery"
    import accounts.models

    assert not hasattr(accounts.models, "ReportDelivery")
