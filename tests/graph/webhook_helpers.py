"""Helpers of the webhook tests: register a platform's webhook, read the events queued for it."""

from __future__ import annotations

import json
from typing import Any

from accounts.actions import do_set_webhook
from graph.models import WebhookDelivery
from tests.conftest import KeyedPlatform

LOCAL_NETWORKS = ["127.0.0.0/8", "::1/128"]
# Never called in the tests that only read the outbox: nothing listens on the discard port.
UNUSED_URL = "https://127.0.0.1:9/exchange-events"


def webhook_on(kp: KeyedPlatform, url: str = UNUSED_URL) -> str:
    """Register the platform's webhook (the test's settings must allow the address); returns the secret."""
    secret = do_set_webhook(kp.platform, url, "test")
    assert secret is not None
    return secret


def events_of(kp: KeyedPlatform, event_type: str | None = None) -> list[dict[str, Any]]:
    rows = WebhookDelivery.objects.filter(platform=kp.platform).order_by("id")
    if event_type:
        rows = rows.filter(event_type=event_type)
    return [json.loads(body) for body in rows.values_list("body", flat=True)]


def types_of(kp: KeyedPlatform) -> list[str]:
    return [event["type"] for event in events_of(kp)]


def clear_outbox() -> None:
    WebhookDelivery.objects.all().delete()
