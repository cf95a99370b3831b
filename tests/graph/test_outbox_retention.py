"""The retention purge and the outboxes: a report email or a webhook event names the platform's sellers, so the
exchange keeps its copy of a message for the purge's grace period, then clears it (`graph.outbox.
clear_contents`, run by `exchange.retention.purge` through `exchange.hooks.announce_purge`). A purged report
does not live on in a stored message about it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from django.apps import apps
from django.db import models
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import Platform
from exchange.models import Seller
from exchange.retention import purge
from graph import outbox, reports
from graph.clustering import refresh_expired
from graph.models import DeliveryStatus, ReportDelivery, WebhookDelivery
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform
from tests.graph.test_reports import NOON, reports_on
from tests.graph.webhook_helpers import LOCAL_NETWORKS, webhook_on

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def report_row(platform: Platform, created: datetime, status: str, name: str) -> ReportDelivery:
    return ReportDelivery.objects.create(
        kind="platform",
        platform=platform,
        recipient=f"{name}@example.com",
        period_start=created - DAY,
        period_end=created,
        subject="[Exchange] a report",
        body_text=f"Your sellers: {name}",
        body_html=f"<p>Your sellers: {name}</p>",
        message_id=f"<{name}@exchange.example>",
        status=status,
        created_at=created,
    )


def webhook_row(platform: Platform, created: datetime, status: str, name: str) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        platform=platform,
        event_id=f"evt_{name}",
        event_type="cluster.joined",
        body=f'{{"sellers": ["{name}"]}}',
        status=status,
        created_at=created,
    )


def test_the_purge_clears_finished_messages_older_than_the_grace_period(
    acme: KeyedPlatform, settings
) -> None:
    now = timezone.now()
    old, recent = now - timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 1), now - DAY
    platform = acme.platform
    cleared = [
        report_row(platform, old, DeliveryStatus.SENT, "old-sent"),
        webhook_row(platform, old, DeliveryStatus.SENT, "old-sent"),
        webhook_row(platform, old, DeliveryStatus.FAILED, "old-failed"),
    ]
    kept = [
        report_row(platform, recent, DeliveryStatus.SENT, "recent-sent"),
        webhook_row(platform, recent, DeliveryStatus.SENT, "recent-sent"),
        webhook_row(
            platform, old, DeliveryStatus.PENDING, "old-pending"
        ),  # still to be sent: it keeps its body
    ]
    purge(now=now)
    for row in cleared:
        row.refresh_from_db()
        assert row.cleared_at is not None
        assert all(getattr(row, name) == "" for name in row.CONTENT_FIELDS)
    for row in kept:
        before = {name: getattr(row, name) for name in row.CONTENT_FIELDS}
        row.refresh_from_db()
        assert row.cleared_at is None and {name: getattr(row, name) for name in row.CONTENT_FIELDS} == before
    # What the row was stays: the admin still lists the message's kind, recipient, status and times.
    assert ReportDelivery.objects.get(recipient="old-sent@example.com").status == DeliveryStatus.SENT
    purge(now=now + DAY)  # a second run clears nothing more, and nothing twice
    assert ReportDelivery.objects.filter(cleared_at__isnull=False).count() == 1


def test_a_dry_run_clears_nothing(acme: KeyedPlatform, settings) -> None:
    old = timezone.now() - timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 1)
    row = webhook_row(acme.platform, old, DeliveryStatus.SENT, "dry")
    purge(dry_run=True)
    row.refresh_from_db()
    assert row.cleared_at is None and row.body == '{"sellers": ["dry"]}'


def test_a_cleared_message_is_never_sent_again(acme: KeyedPlatform, settings) -> None:
    old = timezone.now() - timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 1)
    failed = webhook_row(acme.platform, old, DeliveryStatus.FAILED, "failed")
    waiting = webhook_row(acme.platform, old, DeliveryStatus.FAILED, "waiting")
    purge()
    WebhookDelivery.objects.filter(pk=waiting.pk).update(cleared_at=None, body='{"kept": true}')
    assert outbox.retry_now(WebhookDelivery.objects.all()) == 1  # the one whose message is still there
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.FAILED


def places_holding(text: str) -> list[str]:
    """Every model field (text, or JSON as text) of the database that holds `text`."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.CharField | models.TextField | models.JSONField):
                continue
            rows = model._default_manager.annotate(_as_text=Cast(field.name, models.TextField()))
            if rows.filter(_as_text__contains=text).exists():
                found.append(f"{model._meta.label}.{field.name}")
    return found


def test_no_stored_message_outlives_a_purged_report(
    acme: KeyedPlatform, bazaar: KeyedPlatform, settings
) -> None:
    """End to end: a seller reported, linked, named in its platform's webhook events and cluster reports,
    retracted, then purged after the grace period: its reference is nowhere in the database any more (the
    check reads every text and JSON column of every model), while it was in the messages before."""
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = LOCAL_NETWORKS
    canary = "CANARYREF7731"
    with time_machine.travel(NOON, tick=False) as clock:
        webhook_on(acme)
        reports_on(acme, "trust@acme.example")
        assert submit(acme.client(), seller(canary, ("email", "ring@example.com"))).status_code == 201
        assert submit(bazaar.client(), seller("bz-1", ("email", "ring@example.com"))).status_code == 201
        reports.run_reports()
        WebhookDelivery.objects.update(status=DeliveryStatus.SENT, sent_at=timezone.now())
        clock.shift(timedelta(hours=2))
        response = acme.client().post(f"/api/v1/sellers/{canary}/retract/", {"reason": "x"}, format="json")
        assert response.status_code == 200
        clock.shift(DAY)
        reports.run_reports()  # "your retracted reports" names it once more
        WebhookDelivery.objects.update(status=DeliveryStatus.SENT, sent_at=timezone.now())
        holding = places_holding(canary)
        assert "graph.WebhookDelivery.body" in holding and "graph.ReportDelivery.body_text" in holding
        clock.shift(timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 1))
        refresh_expired()
        assert purge().sellers == 1
    assert not Seller.objects.filter(seller_ref=canary).exists()
    assert places_holding(canary) == []
