"""Cluster-report emails: when they are due, what each section says, retries, the command and the admin.

Django's in-memory email backend and frozen time throughout. Acme and Bazaar each report one seller with the
same email address, which makes a cross-platform cluster.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.template.loader import render_to_string
from django.test import override_settings

import graph.report_admin  # noqa: F401  (to be imported by graph/admin.py; here before the URLconf loads)
from accounts.models import Platform
from graph import reports
from graph.models import ActorCluster, DeliveryStatus, ReportDelivery
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

# Noon (UTC) of the current day: after every `reported_at` the builders produce, so submissions are valid.
NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def reports_on(kp: KeyedPlatform, *recipients: str, cadence: str = "daily") -> Platform:
    kp.platform.report_recipients = list(recipients)
    kp.platform.report_cadence = cadence
    kp.platform.save(update_fields=["report_recipients", "report_cadence"])
    return kp.platform


def shared_pair(acme: KeyedPlatform, bazaar: KeyedPlatform, n: int = 1) -> ActorCluster:
    assert submit(acme.client(), seller(f"acme-{n}", ("email", f"ring{n}@example.com"))).status_code == 201
    assert submit(bazaar.client(), seller(f"bz-{n}", ("email", f"ring{n}@example.com"))).status_code == 201
    return ActorCluster.objects.live().cross_platform().get(members__seller__seller_ref=f"acme-{n}")


def messages_to(address: str) -> list[Any]:
    return [m for m in mail.outbox if address in m.to]


def html_of(message: Any) -> str:
    return next(content for content, mimetype in message.alternatives if mimetype == "text/html")


@pytest.fixture
def clustered(acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller) -> ActorCluster:
    cluster = shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example")
    reports_on(bazaar, "safety@bazaar.example")
    return cluster


# ------------------------------------------------------------------------------------------------ when


def test_first_report_is_due_at_the_first_run_after_switching_on_and_covers_everything(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    cluster = shared_pair(acme, bazaar)
    clock.shift(timedelta(days=3))
    reports_on(acme, "trust@acme.example", "Second@acme.example", "second@ACME.example")

    summary = reports.run_reports()

    assert summary.queued == 2 and summary.sent == 2  # duplicate addresses (any case) get one email
    assert sorted(m.to[0] for m in mail.outbox) == ["Second@acme.example", "trust@acme.example"]
    body = mail.outbox[0].body
    assert "everything until" in body and cluster.ref in body and "acme-1" in body
    row = ReportDelivery.objects.filter(platform=acme.platform).first()
    assert row is not None and row.period_start is None and row.status == DeliveryStatus.SENT
    acme.platform.refresh_from_db()
    assert acme.platform.last_report_at == row.period_end


def test_report_is_not_due_again_before_the_next_period(clustered: ActorCluster, acme: KeyedPlatform) -> None:
    reports.run_reports()
    mail.outbox.clear()
    acme.platform.refresh_from_db()
    assert not reports.report_due("daily", acme.platform.last_report_at, reports.timezone.now())

    assert reports.run_reports().queued == 0
    assert mail.outbox == []


def test_daily_report_is_due_after_midnight_and_weekly_after_monday(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    sent_at = NOON
    assert reports.report_due("daily", None, sent_at)
    assert not reports.report_due("daily", sent_at, sent_at + timedelta(hours=11, minutes=59))
    assert reports.report_due("daily", sent_at, sent_at + timedelta(hours=12, minutes=1))
    monday_noon = sent_at - timedelta(days=sent_at.weekday())
    assert not reports.report_due("weekly", monday_noon, monday_noon + timedelta(days=6, hours=11))
    assert reports.report_due("weekly", monday_noon, monday_noon + timedelta(days=6, hours=13))
    assert not reports.report_due("off", None, sent_at)


def test_cadence_off_or_no_recipients_or_inactive_platform_sends_nothing(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example", cadence="off")
    reports_on(bazaar)  # daily, but nobody to send to
    assert reports.run_reports().queued == 0

    reports_on(acme, "trust@acme.example")
    Platform.objects.filter(pk=acme.platform.pk).update(active=False)
    assert reports.run_reports().queued == 0
    assert mail.outbox == []


def test_an_empty_period_sends_no_email_but_moves_the_period_on(
    clustered: ActorCluster, acme: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))

    assert reports.run_reports().queued == 0
    assert mail.outbox == []
    acme.platform.refresh_from_db()
    assert acme.platform.last_report_at == NOON + timedelta(days=1)


def test_running_twice_writes_one_row_per_recipient_and_period(clustered: ActorCluster) -> None:
    assert reports.queue_due_reports() == 2
    assert reports.queue_due_reports() == 0
    reports.send_due_reports()
    reports.send_due_reports()
    assert len(mail.outbox) == 2
    assert ReportDelivery.objects.count() == 2


# ------------------------------------------------------------------------------------------------ what


def test_report_lists_new_cross_platform_clusters_with_own_sellers_and_other_platforms_as_counts(
    clustered: ActorCluster,
) -> None:
    reports.run_reports()
    (message,) = messages_to("trust@acme.example")

    assert message.subject.startswith("[Exchange] Acme Market: 1 new cross-platform cluster, 0 grown")
    assert message.from_email == "exchange@localhost"
    body = message.body
    assert "NEW CROSS-PLATFORM CLUSTERS (1)" in body
    assert f"* {clustered.ref}: risk {clustered.risk}/100, 2 accounts on 2 platforms" in body
    assert "Your sellers (1): acme-1" in body
    assert "Other platforms: 1 account on 1 platform\n" in body
    assert f"http://localhost:8000/admin/graph/actorcluster/{clustered.ref}/change/" in body
    assert "bz-1" not in body and "Bazaar North" not in body
    html = html_of(message)
    assert f'<a href="http://localhost:8000/admin/graph/actorcluster/{clustered.ref}/change/">' in html
    assert "acme-1" in html and "bz-1" not in html and "Bazaar North" not in html


def test_a_seller_its_platform_detached_with_a_false_positive_is_not_in_its_report(
    clustered: ActorCluster, acme: KeyedPlatform
) -> None:
    assert submit(acme.client(), seller("acme-2", ("email", "ring1@example.com"))).status_code == 201
    body = {"opinion": "false_positive", "seller_ref": "acme-1"}
    assert (
        acme.client().post(f"/api/v1/clusters/{clustered.ref}/opinions/", body, format="json").status_code
        == 201
    )
    reports.run_reports()
    (message,) = messages_to("trust@acme.example")
    assert "Your sellers (1): acme-2" in message.body and "acme-1" not in message.body
    # The other platform still counts both of Acme's accounts.
    (other,) = messages_to("safety@bazaar.example")
    assert "Other platforms: 2 accounts on 1 platform" in other.body


def test_other_platform_names_appear_only_when_the_consortium_reveals_them(clustered: ActorCluster) -> None:
    with override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=True):
        reports.run_reports()
    (message,) = messages_to("trust@acme.example")
    assert "Other platforms: 1 account on 1 platform (Bazaar North)" in message.body
    assert "bz-1" not in message.body


def test_report_lists_clusters_that_grew_or_merged_since_the_last_one(
    clustered: ActorCluster, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    other = shared_pair(acme, bazaar, n=2)
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))
    # A Bazaar seller holding both rings' emails glues the two clusters together.
    glue = seller("bz-glue", ("email", "ring1@example.com"), ("email", "ring2@example.com"))
    assert submit(bazaar.client(), glue).status_code == 201
    survivor = ActorCluster.objects.live().get(members__seller__seller_ref="bz-glue")
    assert survivor.pk in {clustered.pk, other.pk} and survivor.size == 5

    reports.run_reports()
    (message,) = messages_to("trust@acme.example")
    assert "1 grown" in message.subject
    assert "NEW CROSS-PLATFORM CLUSTERS (0)\n\nNone." in message.body
    assert "GREW OR MERGED (1)" in message.body
    assert f"* {survivor.ref}: risk {survivor.risk}/100, 5 accounts on 2 platforms (was 2, merged" in (
        message.body
    )
    assert "Your sellers (2, 1 joined in this period): acme-1, acme-2" in message.body
    assert "Other platforms: 3 accounts on 1 platform" in message.body
    assert "bz-glue" not in message.body


def test_report_lists_retractions_that_touched_shared_clusters(
    clustered: ActorCluster, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))
    response = bazaar.client().post("/api/v1/sellers/bz-1/retract/", {"reason": "appeal won"}, format="json")
    assert response.status_code == 200

    reports.run_reports()
    acme_message = messages_to("trust@acme.example")[0]
    assert "LOST ACCOUNTS: RETRACTED, EXPIRED OR NO LONGER LINKED (1)" in acme_message.body
    assert f"* {clustered.ref}: risk" in acme_message.body and "(was 2, dissolved)" in acme_message.body
    assert "Your reports retracted in this period: 0" in acme_message.body
    assert "bz-1" not in acme_message.body
    bazaar_message = messages_to("safety@bazaar.example")[0]
    assert "Your retracted reports: bz-1" in bazaar_message.body
    assert "acme-1" not in bazaar_message.body


def test_reports_never_carry_cluster_notes(clustered: ActorCluster) -> None:
    ActorCluster.objects.filter(pk=clustered.pk).update(notes="internal: call the bank NOTE-CANARY")
    reports.run_reports()
    assert mail.outbox
    for message in mail.outbox:
        assert "NOTE-CANARY" not in message.body + html_of(message) + message.subject


def test_report_links_use_the_clusters_opaque_ref_and_never_its_numeric_id(
    clustered: ActorCluster, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    """Issue 12, item 6: sequential cluster ids leak the exchange's volume; platforms see refs only."""
    other = shared_pair(acme, bazaar, n=2)
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))
    bazaar.client().post("/api/v1/sellers/bz-2/retract/", {"reason": "appeal"}, format="json")  # lost
    submit(acme.client(), seller("acme-3", ("email", "ring1@example.com")))  # grew
    reports.run_reports()

    assert len(mail.outbox) == 2
    for message in mail.outbox:
        for text in map(str, (message.body, html_of(message), message.subject)):
            assert not re.search(r"/actorcluster/\d+/", text)
            assert f"Cluster {clustered.pk} " not in text and f"#{clustered.pk}" not in text
    acme_message = messages_to("trust@acme.example")[0]
    for text in (acme_message.body, html_of(acme_message)):
        for cluster in (clustered, other):
            assert f"http://localhost:8000/admin/graph/actorcluster/{cluster.ref}/change/" in text


def test_subjects_are_not_html_escaped_and_carry_no_newlines(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    """Issue 12, item 14: a subject is plain text; autoescaping made it say 'Harbor &amp; Finch'."""
    Platform.objects.filter(pk=acme.platform.pk).update(name="Harbor & Finch <Ltd>\nBcc: x@evil.example")
    acme.platform.refresh_from_db()
    shared_pair(acme, bazaar)
    reports_on(acme, "trust@acme.example")
    reports.run_reports()

    (message,) = messages_to("trust@acme.example")
    assert message.subject.startswith("[Exchange] Harbor & Finch <Ltd> Bcc: x@evil.example: 1 new")
    assert "&amp;" not in message.subject and "&lt;" not in message.subject
    assert "\n" not in message.subject and "\r" not in message.subject
    assert "Cluster report for Harbor & Finch <Ltd>" in message.body  # plain text is not escaped either
    assert "Cluster report for Harbor &amp; Finch &lt;Ltd&gt;" in html_of(message)  # HTML is


def test_every_count_in_reports_is_pluralised(
    clustered: ActorCluster,
    acme: KeyedPlatform,
    bazaar: KeyedPlatform,
    alice: User,
    clock: time_machine.Traveller,
) -> None:
    """Issue 12, item 14: "1 lost accounts"."""
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))
    bazaar.client().post("/api/v1/sellers/bz-1/retract/", {"reason": "appeal"}, format="json")
    other = shared_pair(acme, bazaar, n=2)
    reports.run_reports()

    acme_message = messages_to("trust@acme.example")[0]
    assert ", 1 cluster lost accounts (" in acme_message.subject
    assert "1 lost accounts" not in acme_message.subject
    for text in (acme_message.body, html_of(acme_message)):
        assert "0 accounts now" in text  # the dissolved cluster
        assert "2 accounts on 2 platforms" in text
        assert "1 accounts" not in text and "1 platforms" not in text and "1 clusters" not in text
    (digest,) = messages_to("alice@example.org")
    assert digest.subject.startswith("[Exchange] Digest: 1 new cross-platform cluster, 0 grown")
    assert other.ref in digest.body

    # Singular phrases where a count is one, in the item lines too.
    shrunk = reports.ClusterItem(
        id=1, ref="ac_x", url="u", risk=5, size=1, platform_count=1, kinds=[], size_before=2, change="shrank"
    )
    grown = reports.ClusterItem(
        id=2, ref="ac_y", url="u", risk=5, size=3, platform_count=2, kinds=[], own_count=1, own_new=1
    )
    grown.other_accounts = grown.other_platforms = 1
    for name in ("_cluster.txt", "_cluster.html"):
        line = render_to_string(f"reports/{name}", {"item": shrunk})
        assert "1 account now" in line and "1 accounts" not in line
        line = render_to_string(f"reports/{name}", {"item": grown, "show_members": True})
        assert "3 accounts on 2 platforms" in line and "1 account on 1 platform" in line


# ------------------------------------------------------------------------------------------------ digest


def test_exchange_analysts_get_a_digest_highest_risk_first_without_seller_refs(
    acme: KeyedPlatform,
    bazaar: KeyedPlatform,
    alice: User,
    bob: User,
    clock: time_machine.Traveller,
) -> None:
    first = shared_pair(acme, bazaar, n=1)
    second = shared_pair(acme, bazaar, n=2)
    ActorCluster.objects.filter(pk=second.pk).update(risk=99)
    ActorCluster.objects.filter(pk=first.pk).update(risk=10)

    reports.run_reports()

    (digest,) = messages_to("alice@example.org")
    assert messages_to("bob@example.org") == []  # partner analysts get no digest
    assert digest.subject.startswith("[Exchange] Digest: 2 new cross-platform clusters, 0 grown")
    assert digest.body.index(second.ref) < digest.body.index(first.ref)
    for text in (digest.body, html_of(digest)):
        assert "acme-1" not in text and "bz-1" not in text and "Acme Market" not in text
    row = ReportDelivery.objects.get(kind="digest")
    assert row.user == alice and row.period_start is None

    mail.outbox.clear()
    assert reports.run_reports().queued == 0  # not again the same day
    clock.shift(timedelta(days=1))
    assert reports.run_reports().queued == 0  # nothing new: no digest


def test_digest_can_be_switched_off(
    acme: KeyedPlatform, bazaar: KeyedPlatform, alice: User, clock: Any
) -> None:
    shared_pair(acme, bazaar)
    with override_settings(EXCHANGE_DIGEST_CADENCE="off"):
        assert reports.run_reports().queued == 0


# ------------------------------------------------------------------------------------------------ retries


class RefusingBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError("no SMTP server")


def test_a_failed_delivery_is_retried_with_backoff_and_finally_marked_failed(
    clustered: ActorCluster, clock: time_machine.Traveller
) -> None:
    reports_on(KeyedPlatform(Platform.objects.get(slug="bazaar"), None, ""))  # type: ignore[arg-type]
    with override_settings(EMAIL_BACKEND="tests.graph.test_reports.RefusingBackend"):
        summary = reports.run_reports()
        assert (summary.queued, summary.retried, summary.failed) == (1, 1, 0)
        row = ReportDelivery.objects.get()
        assert row.status == DeliveryStatus.PENDING and row.attempts == 1
        assert row.next_attempt_at == NOON + timedelta(minutes=5)
        assert "ConnectionRefusedError: no SMTP server" in row.last_error
        assert reports.send_due_reports().retried == 0  # not due before the backoff has passed

        delays = []
        for _ in range(reports.MAX_ATTEMPTS - 1):
            row.refresh_from_db()
            delays.append(row.next_attempt_at - reports.timezone.now())
            clock.move_to(row.next_attempt_at)
            reports.send_due_reports()
    assert delays == [timedelta(minutes=m) for m in (5, 10, 20, 40, 80)]
    row.refresh_from_db()
    assert row.status == DeliveryStatus.FAILED and row.attempts == reports.MAX_ATTEMPTS
    assert mail.outbox == []

    reports.send_due_reports()  # a failed row stays failed until someone retries it
    assert mail.outbox == []


# ------------------------------------------------------------------------------------------------ command


def test_command_queues_sends_and_prints_a_summary(clustered: ActorCluster) -> None:
    out = StringIO()
    call_command("send_cluster_reports", stdout=out)
    assert "Reports: queued 2, sent 2, to retry 0, failed 0" in out.getvalue()
    assert len(mail.outbox) == 2


def test_command_loop_stops_cleanly_on_sigterm(clustered: ActorCluster) -> None:
    out, err = StringIO(), StringIO()
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    call_command("send_cluster_reports", "--loop", "--interval", "0.05", stdout=out, stderr=err)
    timer.join()
    assert "stopping after the current email" in err.getvalue()
    assert "Reports: queued 2, sent 2" in out.getvalue()
    assert signal.getsignal(signal.SIGTERM) == previous


# ------------------------------------------------------------------------------------------------ admin


def test_outbox_admin_shows_failed_rows_and_retries_them(
    clustered: ActorCluster, client: Any, bob: User, admin_user: User
) -> None:
    reports.queue_due_reports()
    ReportDelivery.objects.update(status=DeliveryStatus.FAILED, attempts=6, last_error="SMTPDataError: 554")

    client.force_login(bob)
    assert client.get("/admin/graph/reportdelivery/").status_code == 403  # partners never see the outbox

    client.force_login(admin_user)
    page = client.get("/admin/graph/reportdelivery/?status=failed")
    assert page.status_code == 200 and b"SMTPDataError: 554" in page.content
    row = ReportDelivery.objects.first()
    assert row is not None
    assert client.get(f"/admin/graph/reportdelivery/{row.pk}/change/").status_code == 200
    response = client.post(
        "/admin/graph/reportdelivery/",
        {"action": "retry_now", "_selected_action": [r.pk for r in ReportDelivery.objects.all()]},
    )
    assert response.status_code == 302
    assert set(ReportDelivery.objects.values_list("status", "attempts")) == {(DeliveryStatus.PENDING, 0)}
    assert reports.send_due_reports().sent == 2


def test_embedded_default_writes_report_emails_to_the_outbox_folder(
    clustered: ActorCluster, tmp_path: Any
) -> None:
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(tmp_path)
    ):
        lines = reports.write_demo_reports()
    assert lines == ["reports: queued 2, sent 2, to retry 0, failed 0", f"emails written to {tmp_path}"]
    written = "".join(path.read_text() for path in tmp_path.iterdir())
    for row in ReportDelivery.objects.all():
        assert f"Message-ID: {row.message_id}" in written


def test_a_platform_that_retracted_nothing_reads_why_its_shared_cluster_lost_an_account(
    clustered: ActorCluster, acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    """Issue 19, item 12: Acme's report said "lost accounts" though Acme had retracted nothing. Its shared
    cluster did lose another platform's account; the report says that it may be someone else's retraction,
    an expiry or an unlink, and counts Acme's own retractions apart (none)."""
    reports.run_reports()
    mail.outbox.clear()
    clock.shift(timedelta(days=1))
    bazaar.client().post("/api/v1/sellers/bz-1/retract/", {"reason": "appeal"}, format="json")
    reports.run_reports()

    acme_message = messages_to("trust@acme.example")[0]
    assert (
        "Shared clusters that lost accounts (retracted, expired or no longer linked): 1" in acme_message.body
    )
    assert "Your reports retracted in this period: 0" in acme_message.body
    assert "bz-1" not in acme_message.body + html_of(acme_message)  # whose account it was stays Bazaar's


def test_reports_name_the_similarity_kinds_that_link_a_cluster(
    acme: KeyedPlatform, bazaar: KeyedPlatform, clock: time_machine.Traveller
) -> None:
    """Issue 13: a cluster held by a near-duplicate document group, and one by a photo group beside a store name,
    are reported like any other, their kinds named in "Linked by"; nothing of the hashes is in the email."""
    from tests.exchange.test_document_indicators import letter, with_document
    from tests.exchange.test_images import image_indicator, photo, with_images

    assert submit(acme.client(), with_document("acme-doc", letter(21))).status_code == 201
    assert submit(bazaar.client(), with_document("bz-doc", letter(21, edit=4))).status_code == 201
    sent = image_indicator(photo(31))
    assert submit(acme.client(), with_images("acme-img", sent, store="Lotus Outlet")).status_code == 201
    edited = image_indicator(photo(31, "edited"))
    assert submit(bazaar.client(), with_images("bz-img", edited, store="Lotus Outlet")).status_code == 201
    reports_on(acme, "trust@acme.example")
    reports.run_reports()
    (message,) = messages_to("trust@acme.example")
    body = message.body
    assert "NEW CROSS-PLATFORM CLUSTERS (2)" in body, body
    assert "Linked by: document\n" in body
    assert "Linked by: image, store_name\n" in body
    assert sent["hash"] not in body and edited["hash"] not in body
