"""Webhook delivery against a real local HTTPS receiver (tests/webhook_receiver.py: its certificate signed by a
CA made in the test, which the exchange trusts through EXCHANGE_WEBHOOK_CA_FILE). The receiver checks every
signature with the partner client's `verify`. Retries with backoff on errors and timeouts, Retry-After,
no redirects, nothing of the response kept, and no call to an address that is no longer allowed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from accounts.actions import do_remove_webhook, do_rotate_webhook_secret, do_set_webhook
from exchange.client import webhooks as contract
from graph import webhooks
from graph.models import DeliveryStatus, WebhookDelivery
from tests.accounts.test_webhook_registration import every_stored_value
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform
from tests.graph.webhook_helpers import LOCAL_NETWORKS
from tests.webhook_receiver import RESPONSE_CANARY, Answer, Receiver, TlsFiles, make_tls_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path)


@pytest.fixture(autouse=True)
def webhook_settings(settings: Any, tls: TlsFiles) -> None:
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = LOCAL_NETWORKS
    settings.EXCHANGE_WEBHOOK_CA_FILE = str(tls.ca)
    settings.EXCHANGE_WEBHOOK_TIMEOUT = 2
    settings.EXCHANGE_WEBHOOK_CLAIM_TIMEOUT = 60


class Secrets:
    """What the receiver accepts (the test hands it the secret, as an operator hands it to the partner)."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self) -> list[str]:
        return list(self.values)


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


def answering(*answers: Answer) -> Any:
    """Answer the nth delivery with answers[n] (200 after the last)."""
    return lambda event, nth: answers[nth] if nth < len(answers) else Answer()


@pytest.fixture
def receiver(tls: TlsFiles, secrets: Secrets) -> Iterator[Receiver]:
    with Receiver(tls, secrets) as running:
        yield running


def hook(kp: KeyedPlatform, receiver: Receiver, secrets: Secrets, path: str = "/hook") -> str:
    secret = do_set_webhook(kp.platform, receiver.url(path), "test")
    assert secret is not None
    secrets.values.append(secret)
    kp.platform.refresh_from_db()
    return secret


def shared_pair(acme: KeyedPlatform, bazaar: KeyedPlatform, n: int = 1) -> None:
    assert submit(acme.client(), seller(f"acme-{n}", ("email", f"ring{n}@example.com"))).status_code == 201
    assert submit(bazaar.client(), seller(f"bz-{n}", ("email", f"ring{n}@example.com"))).status_code == 201


def row_of(kp: KeyedPlatform) -> WebhookDelivery:
    return WebhookDelivery.objects.get(platform=kp.platform)


def test_events_reach_the_https_receiver_signed_and_each_platform_only_its_own(
    acme, bazaar, receiver, secrets
):
    hook(acme, receiver, secrets, "/acme")
    hook(bazaar, receiver, secrets, "/bazaar?via=exchange")
    shared_pair(acme, bazaar)

    summary = webhooks.send_due_webhooks()

    assert (summary.sent, summary.retried, summary.failed) == (2, 0, 0)
    assert len(receiver.deliveries) == 2 and all(d.verified for d in receiver.deliveries)
    rows = {row.platform_id: row for row in WebhookDelivery.objects.all()}
    for kp, path, own in ((acme, "/acme", "acme-1"), (bazaar, "/bazaar?via=exchange", "bz-1")):
        row = rows[kp.platform.pk]
        assert (row.status, row.attempts, row.response_status, row.last_error) == ("sent", 1, 200, "")
        delivery = next(d for d in receiver.deliveries if d.event_id == row.event_id)
        assert delivery.path == path
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.headers[contract.EVENT_TYPE_HEADER] == "cluster.joined"
        assert receiver.events[row.event_id] == json.loads(row.body)
        assert receiver.events[row.event_id]["data"]["your_sellers"] == [own]
    # Each platform's secret signs its own deliveries only.
    acme_delivery = next(d for d in receiver.deliveries if d.path == "/acme")
    header = acme_delivery.headers[contract.SIGNATURE_HEADER]
    body = rows[acme.platform.pk].body
    contract.verify(body, header, acme.platform.webhook_secret())
    with pytest.raises(contract.WebhookSignatureError):
        contract.verify(body, header, bazaar.platform.webhook_secret())
    assert RESPONSE_CANARY not in every_stored_value()  # the response body is not kept


def test_a_server_error_is_retried_with_backoff_then_delivered_once(acme, bazaar, tls, secrets):
    start = datetime.now(UTC).replace(microsecond=0)
    with (
        time_machine.travel(start, tick=True) as clock,
        Receiver(tls, secrets, answering(Answer(500), Answer(502))) as receiver,
    ):
        hook(acme, receiver, secrets)
        shared_pair(acme, bazaar)

        assert webhooks.send_due_webhooks().retried == 1
        row = row_of(acme)
        assert (row.status, row.attempts, row.response_status, row.last_error) == (
            "pending",
            1,
            500,
            "HTTP 500",
        )
        assert timedelta(seconds=59) < row.next_attempt_at - start < timedelta(seconds=70)
        assert webhooks.send_due_webhooks().sent == 0  # not due yet

        clock.shift(timedelta(minutes=1, seconds=5))
        assert webhooks.send_due_webhooks().retried == 1
        row = row_of(acme)
        assert (row.attempts, row.last_error) == (2, "HTTP 502")
        assert timedelta(minutes=3) < row.next_attempt_at - start < timedelta(minutes=3, seconds=20)

        clock.shift(timedelta(minutes=2, seconds=5))
        assert webhooks.send_due_webhooks().sent == 1
    row = row_of(acme)
    assert (row.status, row.attempts, row.response_status, row.last_error) == ("sent", 3, 200, "")
    assert [d.event_id for d in receiver.deliveries] == [row.event_id] * 3
    assert list(receiver.events) == [row.event_id]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_respected(acme, bazaar, tls, secrets, form):
    start = datetime.now(UTC).replace(microsecond=0)
    later = start + timedelta(hours=2)
    value = "7200" if form == "seconds" else format_datetime(later, usegmt=True)
    with (
        time_machine.travel(start, tick=False),
        Receiver(tls, secrets, answering(Answer(503, {"Retry-After": value}))) as receiver,
    ):
        hook(acme, receiver, secrets)
        shared_pair(acme, bazaar)
        webhooks.send_due_webhooks()
    row = row_of(acme)
    assert (row.status, row.response_status) == ("pending", 503)
    assert row.next_attempt_at == later  # not after the backoff's minute


def test_a_receiver_that_does_not_answer_in_time_is_retried(acme, bazaar, tls, secrets, settings):
    settings.EXCHANGE_WEBHOOK_TIMEOUT = 1
    with Receiver(tls, secrets, answering(Answer(200, delay=3))) as receiver:
        hook(acme, receiver, secrets)
        shared_pair(acme, bazaar)
        assert webhooks.send_due_webhooks().retried == 1
    row = row_of(acme)
    assert (row.status, row.attempts, row.last_error, row.response_status) == (
        "pending",
        1,
        "timed out after 1 s",
        None,
    )


def test_a_certificate_the_exchange_does_not_trust_is_refused(acme, bazaar, receiver, secrets, settings):
    hook(acme, receiver, secrets)
    shared_pair(acme, bazaar)
    settings.EXCHANGE_WEBHOOK_CA_FILE = ""  # the system's CAs: they did not sign the test certificate
    assert webhooks.send_due_webhooks().retried == 1
    row = row_of(acme)
    assert row.status == "pending" and row.last_error.startswith("TLS: certificate verify failed")
    assert receiver.deliveries == []


def test_redirects_are_not_followed(acme, bazaar, tls, secrets):
    with Receiver(tls, secrets, answering(Answer(302, {"Location": "/elsewhere"}))) as receiver:
        hook(acme, receiver, secrets)
        shared_pair(acme, bazaar)
        webhooks.send_due_webhooks()
    row = row_of(acme)
    assert (row.status, row.response_status) == ("pending", 302)
    assert row.last_error == "HTTP 302 (redirects are not followed)"
    assert [d.path for d in receiver.deliveries] == ["/hook"]


def test_after_the_last_attempt_the_event_fails_and_stays_visible(acme, bazaar, tls, secrets):
    with Receiver(tls, secrets, lambda event, nth: Answer(500)) as receiver:
        hook(acme, receiver, secrets)
        shared_pair(acme, bazaar)
        WebhookDelivery.objects.update(attempts=webhooks.RETRIES.max_attempts - 1)
        summary = webhooks.send_due_webhooks()
    assert summary.failed == 1
    row = row_of(acme)
    assert (row.status, row.attempts, row.last_error) == ("failed", webhooks.RETRIES.max_attempts, "HTTP 500")
    assert len(receiver.deliveries) == 1


def test_the_backoff_doubles_up_to_six_hours() -> None:
    delays = [webhooks.RETRIES.delay(n) for n in range(1, 13)]
    assert delays[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert max(delays) == delays[-1] == timedelta(hours=6)


def test_events_of_a_removed_webhook_fail_at_once_and_nothing_is_sent(acme, bazaar, receiver, secrets):
    hook(acme, receiver, secrets)
    shared_pair(acme, bazaar)
    do_remove_webhook(acme.platform, "test")
    assert webhooks.send_due_webhooks().failed == 1
    row = row_of(acme)
    assert (row.status, row.last_error) == ("failed", "the platform has no webhook any more")
    assert receiver.deliveries == []


def test_an_address_no_longer_allowed_is_not_called(acme, bazaar, receiver, secrets, settings):
    """The check runs again at every delivery: a URL whose host now resolves to a private address (DNS
    rebinding, or the allowance was withdrawn) is not called."""
    hook(acme, receiver, secrets)
    shared_pair(acme, bazaar)
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = []
    assert webhooks.send_due_webhooks().retried == 1
    row = row_of(acme)
    assert row.status == "pending" and "127.0.0.1, which is not a public address" in row.last_error
    assert row.last_error.startswith("not sent:")
    assert receiver.deliveries == []


def test_a_rotated_secret_signs_from_then_on(acme, bazaar, receiver, secrets):
    old = hook(acme, receiver, secrets)
    shared_pair(acme, bazaar)
    new = do_rotate_webhook_secret(acme.platform, "test")
    assert webhooks.send_due_webhooks().retried == 1  # the receiver knows only the old one: 400
    assert row_of(acme).last_error == "HTTP 400"
    secrets.values = [new]
    WebhookDelivery.objects.update(next_attempt_at=datetime.now(UTC))
    assert webhooks.send_due_webhooks().sent == 1
    assert receiver.deliveries[-1].verified and old != new


def test_the_command_sends_and_summarises(acme, bazaar, receiver, secrets):
    hook(acme, receiver, secrets)
    hook(bazaar, receiver, secrets)
    shared_pair(acme, bazaar)
    out = StringIO()
    call_command("send_webhooks", stdout=out)
    assert out.getvalue().strip().endswith("Webhooks: sent 2, to retry 0, failed 0")
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert len(receiver.events) == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the Procrastinate worker needs PostgreSQL")
def test_the_workers_periodic_task_sends_them(acme, bazaar, receiver, secrets):
    from graph.tasks import send_due_webhooks

    hook(acme, receiver, secrets)
    shared_pair(acme, bazaar)
    send_due_webhooks(timestamp=0)
    assert row_of(acme).status == DeliveryStatus.SENT and len(receiver.events) == 1
