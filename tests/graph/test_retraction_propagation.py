"""Retraction propagation: every platform that was told about a seller (its cluster, a lookup match) is told
when that seller's report is retracted, by webhook (tests/graph/test_webhook_events.py) and in its next
cluster report, whether or not it has a webhook. Lookup matches are recorded by the lookup itself, on
PostgreSQL in the lookup's one statement."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from accounts.models import Platform
from exchange.models import LookupMatch, Seller
from exchange.retention import purge
from graph import reports
from graph.models import RetractionNotice
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform
from tests.graph.test_reports import NOON, reports_on

pytestmark = pytest.mark.django_db


def lookup(kp: KeyedPlatform, *values: tuple[str, str]) -> list[dict]:
    response = kp.client().post(
        "/api/v1/lookups/",
        {"indicators": [{"kind": kind, "hash": th(kind, value)} for kind, value in values]},
        format="json",
    )
    assert response.status_code == 200, response.content
    return list(response.json()["results"])


def retract(kp: KeyedPlatform, ref: str, reason: str = "appeal upheld") -> None:
    response = kp.client().post(f"/api/v1/sellers/{ref}/retract/", {"reason": reason}, format="json")
    assert response.status_code == 200


def test_a_lookup_records_each_matched_seller_of_another_platform_once(acme, bazaar, third):
    assert submit(acme.client(), seller("acme-1", ("email", "a@example.com"))).status_code == 201
    assert submit(acme.client(), seller("acme-2", ("email", "b@example.com"))).status_code == 201
    assert submit(bazaar.client(), seller("bz-1", ("email", "a@example.com"))).status_code == 201

    results = lookup(third, ("email", "a@example.com"), ("email", "b@example.com"), ("email", "nobody@x.org"))
    assert [r["match"] for r in results] == [True, True, False]
    first = dict(
        LookupMatch.objects.filter(platform=third.platform).values_list(
            "seller__seller_ref", "first_matched_at"
        )
    )
    assert set(first) == {"acme-1", "acme-2", "bz-1"}

    lookup(third, ("email", "a@example.com"))  # again: still one row each, the first time kept
    assert (
        dict(
            LookupMatch.objects.filter(platform=third.platform).values_list(
                "seller__seller_ref", "first_matched_at"
            )
        )
        == first
    )
    lookup(acme, ("email", "a@example.com"))  # its own seller is no match; Bazaar's is
    assert set(
        LookupMatch.objects.filter(platform=acme.platform).values_list("seller__seller_ref", flat=True)
    ) == {"bz-1"}


def test_a_quota_refused_lookup_records_nothing(acme, bazaar, settings):
    assert submit(acme.client(), seller("acme-1", ("email", "a@example.com"))).status_code == 201
    settings.EXCHANGE_LOOKUP_DAILY_QUOTA = 0
    response = bazaar.client().post(
        "/api/v1/lookups/",
        {"indicators": [{"kind": "email", "hash": th("email", "a@example.com")}]},
        format="json",
    )
    assert response.status_code == 429
    assert not LookupMatch.objects.exists()


def test_the_next_report_of_every_platform_told_lists_the_retraction(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
) -> None:
    with time_machine.travel(NOON, tick=False) as clock:
        for kp in (acme, bazaar, third):
            reports_on(kp, f"trust@{kp.platform.slug}.example")
        assert submit(acme.client(), seller("acme-1", ("email", "ring@example.com"))).status_code == 201
        assert submit(bazaar.client(), seller("bz-1", ("email", "ring@example.com"))).status_code == 201
        assert submit(acme.client(), seller("acme-solo", ("phone", "+4930111222"))).status_code == 201
        lookup(third, ("phone", "+4930111222"))
        reports.run_reports()
        mail.outbox.clear()

        clock.shift(timedelta(hours=2))
        retract(bazaar, "bz-1", reason="REASONCANARY")
        retract(acme, "acme-solo")
        clock.shift(timedelta(days=1))
        reports.run_reports()

    bodies = {m.to[0].split("@")[1].split(".")[0]: m.body for m in mail.outbox}
    acme_section = bodies["acme"].split("RETRACTED: REPORTS YOU WERE TOLD ABOUT (1)")[1]
    assert "retracted, a report in cluster ac_" in acme_section and "(one of your clusters)" in acme_section
    third_section = bodies["third"].split("RETRACTED: REPORTS YOU WERE TOLD ABOUT (1)")[1]
    assert "in no cluster; it matched your lookup of" in third_section
    assert (
        "RETRACTED: REPORTS YOU WERE TOLD ABOUT (0)" in bodies["bazaar"]
    )  # the one retracting is not "told"
    for body in bodies.values():
        assert "REASONCANARY" not in body and "bz-1" not in body.replace("Your retracted reports: bz-1", "")
    assert RetractionNotice.objects.count() == 2


def test_a_report_with_only_a_retraction_to_tell_is_sent(acme: KeyedPlatform, bazaar: KeyedPlatform) -> None:
    with time_machine.travel(NOON, tick=False) as clock:
        reports_on(bazaar, "trust@bazaar.example")
        assert submit(acme.client(), seller("acme-solo", ("email", "solo@example.com"))).status_code == 201
        lookup(bazaar, ("email", "solo@example.com"))
        reports.run_reports()
        mail.outbox.clear()
        clock.shift(timedelta(hours=1))
        retract(acme, "acme-solo")
        clock.shift(timedelta(days=1))
        assert reports.run_reports().sent == 1
    assert "Other platforms' reports you were told about, retracted in this period: 1" in mail.outbox[0].body


def test_purging_a_seller_deletes_its_lookup_matches(
    acme: KeyedPlatform, bazaar: KeyedPlatform, settings
) -> None:
    assert submit(acme.client(), seller("acme-solo", ("email", "solo@example.com"))).status_code == 201
    lookup(bazaar, ("email", "solo@example.com"))
    retract(acme, "acme-solo")
    assert LookupMatch.objects.count() == 1
    with time_machine.travel(NOON + timedelta(days=settings.EXCHANGE_PURGE_GRACE_DAYS + 2)):
        assert purge().sellers == 1
    assert not Seller.objects.exists() and not LookupMatch.objects.exists()
    assert Platform.objects.count() == 2
