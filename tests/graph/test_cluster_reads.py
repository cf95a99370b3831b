"""Cluster information a partner obtains through its own submissions is a lookup too (issue 12, item 3).

The probe: Acme submits a seller holding the phone of Bazaar's seller, reads the seller's (or the cluster's)
page to learn whether and how much other platforms hold, and retracts. Every read that reveals a cluster is
charged to the key's daily lookup quota and audited with counts; a retraction soon after the seller's first
report is flagged to exchange analysts in the audit log and the digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEntry
from exchange.models import LookupUsage
from graph import reports
from graph.models import ActorCluster
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TARGET_PHONE = "+493012345678"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def target(bazaar: KeyedPlatform, clock: time_machine.Traveller) -> None:
    """Bazaar's reported seller, whose phone the prober wants to test."""
    assert submit(bazaar.client(), seller("bz-target", ("phone", TARGET_PHONE))).status_code == 201


def usage(kp: KeyedPlatform) -> int:
    row = LookupUsage.objects.filter(api_key=kp.key).first()
    return row.count if row else 0


def retract(kp: KeyedPlatform, ref: str) -> None:
    response = kp.client().post(f"/api/v1/sellers/{ref}/retract/", {"reason": "appeal won"}, format="json")
    assert response.status_code == 200


def assert_quota_exceeded(response: object) -> None:
    assert response.status_code == 429  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "quota_exceeded"
    assert set(error["details"]) == {"quota", "resets_at"}
    assert int(response["Retry-After"]) > 0  # type: ignore[index]


def test_probe_submit_read_retract_is_charged_audited_and_flagged_in_the_next_digest(
    acme: KeyedPlatform, bazaar: KeyedPlatform, alice: User, target: None, clock: time_machine.Traveller
) -> None:
    client = acme.client()
    assert submit(client, seller("probe-1", ("phone", TARGET_PHONE))).status_code == 201
    assert usage(acme) == 0  # submitting reveals nothing

    detail = client.get("/api/v1/sellers/probe-1/")
    assert detail.status_code == 200 and detail.json()["cluster"]["platforms"] == 2
    assert usage(acme) == 1

    (read,) = AuditEntry.objects.filter(action="cluster_read")
    assert (read.actor, read.platform_id) == (acme.key.prefix, acme.platform.pk)
    assert read.details["endpoint"] == "seller_detail"
    assert (read.details["clusters"], read.details["cross_platform"]) == (1, 1)
    cluster = ActorCluster.objects.live().get()
    assert read.details["refs"] == [cluster.ref]
    assert "bz-target" not in str(read.details) and th("phone", TARGET_PHONE) not in str(read.details)

    clock.shift(timedelta(hours=2))
    retract(acme, "probe-1")
    (probe,) = AuditEntry.objects.filter(action="probe_suspected")
    assert (probe.actor, probe.platform_id, probe.object_type) == (
        acme.key.prefix,
        acme.platform.pk,
        "seller",
    )
    assert probe.details == {"cluster_read": True, "hours_after_report": 2.0, "window_hours": 24}

    clock.shift(timedelta(days=1))
    reports.run_reports()
    (digest,) = [m for m in mail.outbox if "alice@example.org" in m.to]
    assert "1 suspected probe" in digest.subject
    assert "Acme Market: 1 retraction within 24 hours of its report (1 after reading its cluster)" in (
        digest.body
    )
    html = next(content for content, kind in digest.alternatives if kind == "text/html")  # type: ignore[attr-defined]
    assert "Acme Market: 1 retraction within 24 hours of its report (1 after reading its cluster)" in html
    assert "probe-1" not in digest.body + html and "bz-target" not in digest.body + html


def test_every_read_that_reveals_clusters_is_charged_per_distinct_cluster(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None
) -> None:
    client = acme.client()
    submit(
        client,
        seller("probe-1", ("phone", TARGET_PHONE)),
        seller("probe-2", ("phone", TARGET_PHONE)),  # the same cluster as probe-1
        seller("lonely", ("email", "nobody@x.com")),  # no cluster: "no match" is an answer too
    )
    ref = client.get("/api/v1/sellers/probe-1/").json()["cluster"]["id"]
    assert usage(acme) == 1
    assert len(client.get("/api/v1/sellers/").json()["results"]) == 3
    assert usage(acme) == 3  # one distinct cluster on the page, and one linkable seller in none
    assert client.get("/api/v1/clusters/").json()["count"] == 1
    assert usage(acme) == 4
    assert client.get(f"/api/v1/clusters/{ref}/").status_code == 200
    assert usage(acme) == 5
    assert client.get("/api/v1/sellers/lonely/").json()["cluster"] is None
    assert usage(acme) == 6  # like a lookup without a match
    client.post("/api/v1/sellers/lonely/retract/", {"reason": "appeal upheld"}, format="json")
    assert client.get("/api/v1/sellers/lonely/").json()["cluster"] is None
    assert usage(acme) == 6  # a retracted seller links nobody: its missing cluster tells nothing

    endpoints = list(
        AuditEntry.objects.filter(action="cluster_read").order_by("id").values_list("details", flat=True)
    )
    assert [(d["endpoint"], d["clusters"], d["unlinked"]) for d in endpoints] == [
        ("seller_detail", 1, 0),
        ("seller_list", 1, 1),
        ("cluster_list", 1, 0),
        ("cluster_detail", 1, 0),
        ("seller_detail", 0, 1),
        ("seller_detail", 0, 0),
    ]


def test_reading_clusters_beyond_the_quota_gets_429(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None, settings: object
) -> None:
    settings.EXCHANGE_LOOKUP_DAILY_QUOTA = 2  # type: ignore[attr-defined]
    client = acme.client()
    submit(client, seller("probe-1", ("phone", TARGET_PHONE)))
    ref = client.get("/api/v1/sellers/probe-1/").json()["cluster"]["id"]
    assert client.get(f"/api/v1/clusters/{ref}/").status_code == 200
    assert usage(acme) == 2

    for path in (
        "/api/v1/sellers/probe-1/",
        "/api/v1/sellers/",
        "/api/v1/clusters/",
        f"/api/v1/clusters/{ref}/",
    ):
        assert_quota_exceeded(client.get(path))
    assert usage(acme) == 2
    # Lookups and cluster reads share the one quota.
    lookup = {"indicators": [{"kind": "phone", "hash": th("phone", TARGET_PHONE)}]}
    assert_quota_exceeded(client.post("/api/v1/lookups/", lookup, format="json"))
    # A page that reveals no cluster costs nothing and still answers.
    assert client.get("/api/v1/sellers/?retracted=true").status_code == 200


def test_a_quick_retraction_without_a_read_is_flagged_without_cluster_read(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None, clock: time_machine.Traveller
) -> None:
    submit(acme.client(), seller("probe-1", ("phone", TARGET_PHONE)))
    clock.shift(timedelta(minutes=30))
    retract(acme, "probe-1")
    (probe,) = AuditEntry.objects.filter(action="probe_suspected")
    assert probe.details == {"cluster_read": False, "hours_after_report": 0.5, "window_hours": 24}


def test_a_read_through_the_seller_list_counts_as_reading_the_sellers_cluster(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None
) -> None:
    submit(acme.client(), seller("probe-1", ("phone", TARGET_PHONE)))
    acme.client().get("/api/v1/sellers/")
    retract(acme, "probe-1")
    assert AuditEntry.objects.get(action="probe_suspected").details["cluster_read"] is True


def test_a_normal_late_retraction_is_not_flagged(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None, clock: time_machine.Traveller
) -> None:
    submit(acme.client(), seller("appealed", ("phone", TARGET_PHONE)))
    acme.client().get("/api/v1/sellers/appealed/")
    clock.shift(timedelta(hours=25))
    retract(acme, "appealed")
    assert AuditEntry.objects.filter(action="seller_retracted").count() == 1
    assert not AuditEntry.objects.filter(action="probe_suspected").exists()

    assert reports.digest(None, timezone.now()).probes == []


def test_the_probe_window_is_a_setting(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None, clock: time_machine.Traveller, settings: object
) -> None:
    settings.EXCHANGE_PROBE_WINDOW_HOURS = 48  # type: ignore[attr-defined]
    submit(acme.client(), seller("probe-1", ("phone", TARGET_PHONE)))
    clock.shift(timedelta(hours=30))
    retract(acme, "probe-1")
    assert AuditEntry.objects.get(action="probe_suspected").details["window_hours"] == 48


@pytest.mark.parametrize("raw", ["-1", "soon"])
def test_a_malformed_probe_window_is_refused_at_startup(raw: str) -> None:
    from tests.exchange.test_settings_parsing import PRODUCTION_ENV, _manage

    result = _manage({**PRODUCTION_ENV, "EXCHANGE_PROBE_WINDOW_HOURS": raw}, "check")
    assert result.returncode != 0
    assert "EXCHANGE_PROBE_WINDOW_HOURS" in result.stderr


def test_the_digest_counts_probes_per_platform_in_plural_too(
    acme: KeyedPlatform, bazaar: KeyedPlatform, target: None, clock: time_machine.Traveller
) -> None:
    submit(acme.client(), seller("probe-1", ("phone", TARGET_PHONE)), seller("probe-2", ("email", "a@x.com")))
    acme.client().get("/api/v1/sellers/probe-1/")
    retract(acme, "probe-1")
    retract(acme, "probe-2")
    content = reports.digest(None, timezone.now())
    assert [(p.platform, p.retractions, p.after_cluster_read) for p in content.probes] == [
        ("Acme Market", 2, 1)
    ]
    subject, text, html = reports.render_email("digest", {"digest": content})
    assert ", 2 suspected probes (" in subject
    for body in (text, html):
        assert (
            "Acme Market: 2 retractions within 24 hours of their reports (1 after reading their clusters)"
            in body
        )
