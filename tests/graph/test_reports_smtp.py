"""Report emails through a real SMTP server on localhost (aiosmtpd): the raw message as a mail client sees it."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.test import override_settings

from graph import reports
from graph.models import DeliveryStatus, ReportDelivery
from tests.conftest import KeyedPlatform
from tests.graph.test_reports import NOON, reports_on, shared_pair


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


class Inbox:
    """Keeps every message the server accepted; can be told to refuse the next ones."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.refuse = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with override_settings(
            EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=port,
            EMAIL_USE_TLS=False,
            EMAIL_HOST_USER="",
            EMAIL_HOST_PASSWORD="",
            DEFAULT_FROM_EMAIL="Exchange reports <reports@exchange.example>",
        ):
            yield inbox
    finally:
        controller.stop()


def test_report_arrives_over_smtp_as_multipart_alternative_with_the_stored_message_id(
    smtp: Inbox, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    cluster = shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example")

    summary = reports.run_reports()

    assert summary.sent == 1
    (message,) = smtp.messages
    row = ReportDelivery.objects.get()
    assert smtp.envelopes[0].mail_from == "reports@exchange.example"
    assert smtp.envelopes[0].rcpt_tos == ["trust@acme.example"]
    assert message["Subject"] == row.subject
    assert message["Subject"].startswith("[Exchange] Acme Market: 1 new cross-platform cluster, 0 grown")
    assert message["From"] == "Exchange reports <reports@exchange.example>"
    assert message["To"] == "trust@acme.example"
    assert message["Message-ID"] == row.message_id
    assert row.message_id.endswith("@exchange.example>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain" and html_part.get_content_type() == "text/html"
    text, html = text_part.get_content(), html_part.get_content()
    assert "Cluster report for Acme Market" in text and cluster.ref in text and "acme-1" in text
    assert "<html" not in text  # readable as plain text
    assert f'<a href="http://localhost:8000/admin/graph/actorcluster/{cluster.ref}/change/">' in html
    assert "bz-1" not in message.as_string() and "Bazaar North" not in message.as_string()
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SENT and row.sent_at is not None


def test_a_temporary_smtp_refusal_is_retried_and_delivered_once(
    smtp: Inbox, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example")
    smtp.refuse = 1

    assert reports.run_reports().retried == 1
    row = ReportDelivery.objects.get()
    assert row.status == DeliveryStatus.PENDING and "451" in row.last_error
    clock.move_to(row.next_attempt_at)
    assert reports.send_due_reports().sent == 1
    assert [m["Message-ID"] for m in smtp.messages] == [row.message_id]


def test_an_unreachable_smtp_server_leaves_the_report_waiting(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example")
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=free_port(),  # nothing listens there
        EMAIL_USE_TLS=False,
    ):
        assert reports.run_reports().retried == 1
    row = ReportDelivery.objects.get()
    assert row.status == DeliveryStatus.PENDING and row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error
