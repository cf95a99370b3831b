"""No webhook event ever carries another platform's data: the canary world of the report and STIX leak tests
(twelve platforms in randomly overlapping rings; every seller reference, platform name, cluster note and
retraction reason a unique canary), every platform with a webhook, driven through every kind of event:
clusters formed (joined), bridged (merged), bridges retracted (split, left, retracted), lookup matches
retracted, appeals upheld (overturned), opinions of every kind (with canary notes, false positives naming
the giver's seller), clusters confirmed and dismissed. Each platform's events, and its next cluster report's retraction
section, are searched for everything it must not learn."""

from __future__ import annotations

import random
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from exchange.client import webhooks as contract
from exchange.models import Indicator
from graph import reports
from graph.actions import do_update_cluster
from graph.models import ActorCluster, RetractionNotice, WebhookDelivery
from tests.admin_world import decided_by_two_analysts
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform, make_platform
from tests.graph.test_reports import NOON
from tests.graph.test_reports_leak import everything
from tests.graph.webhook_helpers import LOCAL_NETWORKS, webhook_on

pytestmark = pytest.mark.django_db

PLATFORMS = 12
RINGS = 30


def ring_email(ring: int) -> tuple[str, str]:
    return ("email", f"ring{ring}@counterfeit.example")


def build_world(rng: random.Random) -> tuple[list[KeyedPlatform], list[str], list[str]]:
    """Platforms p00..p11 with webhooks and reports on; returns them, every transport hash and every secret."""
    platforms = [make_platform(f"p{n:02d}", f"Mart-p{n:02d}-Canary") for n in range(PLATFORMS)]
    secrets = [webhook_on(kp, f"https://127.0.0.1:9/p{n:02d}") for n, kp in enumerate(platforms)]
    for n, kp in enumerate(platforms):
        kp.platform.report_recipients = [f"contact-p{n:02d}@reports.example"]
        kp.platform.report_cadence = "daily"
        kp.platform.save(update_fields=["report_recipients", "report_cadence"])
    hashes: list[str] = []
    for ring in range(RINGS):
        for n in rng.sample(range(PLATFORMS), rng.choice([1, 2, 2, 3, 4])):
            indicators = [ring_email(ring)]
            if rng.random() < 0.3:
                indicators.append(("store_name", f"Store {ring} of {n}"))
            assert (
                submit(platforms[n].client(), seller(f"CANARY-p{n:02d}-r{ring}-", *indicators)).status_code
                == 201
            )
            hashes += [th(kind, value) for kind, value in indicators]
    ActorCluster.objects.update(notes="NOTECANARY: analyst suspects a freight forwarder")
    return platforms, hashes, secrets


def drive(platforms: list[KeyedPlatform], rng: random.Random) -> None:
    """Bridges merge rings, lookups match them, retractions split and shrink them, analysts decide."""
    bridges = []
    for ring in range(0, RINGS - 1, 4):
        n = rng.randrange(PLATFORMS)
        ref = f"CANARY-p{n:02d}-bridge{ring}-"
        assert (
            submit(platforms[n].client(), seller(ref, ring_email(ring), ring_email(ring + 1))).status_code
            == 201
        )
        bridges.append((n, ref))
    for kp in platforms:
        looked_up = [ring_email(rng.randrange(RINGS)) for _ in range(3)]
        response = kp.client().post(
            "/api/v1/lookups/",
            {"indicators": [{"kind": kind, "hash": th(kind, value)} for kind, value in looked_up]},
            format="json",
        )
        assert response.status_code == 200
    for n, ref in bridges[::2]:
        retract(platforms[n], ref)
    for kp in platforms[:5]:
        first = (
            kp.platform.sellers.filter(retracted_at__isnull=True)
            .order_by("id")
            .values_list("seller_ref", flat=True)
            .first()
        )
        if first:
            retract(kp, first)
    for kp in platforms[5:8]:
        appellant = kp.platform.sellers.filter(retracted_at__isnull=True).order_by("id").first()
        if appellant:
            response = kp.client().post(
                f"/api/v1/sellers/{appellant.seller_ref}/appeals/", {"outcome": "upheld"}, format="json"
            )
            assert response.status_code in (200, 201), response.content
    kinds = ["seen_too", "false_positive", "disputed", "actioned"]
    for number, cluster in enumerate(ActorCluster.objects.live().cross_platform().order_by("id")):
        member = cluster.members.select_related("seller__platform").order_by("seller_id")[0]
        giver = next(kp for kp in platforms if kp.platform.pk == member.seller.platform_id)
        kind = kinds[number % 4]
        fields: dict[str, Any] = {"opinion": kind, "note": f"OPINIONCANARY {member.seller.seller_ref}"}
        if kind == "false_positive":
            fields["seller_ref"] = member.seller.seller_ref
        if kind == "actioned":
            fields["acted_at"] = timezone.now().isoformat()
        response = giver.client().post(f"/api/v1/clusters/{cluster.ref}/opinions/", fields, format="json")
        assert response.status_code == 201, response.content
    for number, cluster in enumerate(ActorCluster.objects.live().cross_platform().order_by("id")):
        if number % 3 == 0:
            do_update_cluster(cluster, "alice", {"status": "investigating"})
            decided_by_two_analysts(cluster, "confirmed")
        elif number % 3 == 1:
            decided_by_two_analysts(cluster, "dismissed")


def retract(kp: KeyedPlatform, ref: str) -> None:
    response = kp.client().post(
        f"/api/v1/sellers/{ref}/retract/", {"reason": f"REASONCANARY {ref}"}, format="json"
    )
    assert response.status_code == 200


def events_text(kp: KeyedPlatform) -> str:
    return "\n".join(WebhookDelivery.objects.filter(platform=kp.platform).values_list("body", flat=True))


@pytest.mark.parametrize("reveal", [False, True])
@pytest.mark.parametrize("seed", [3])
def test_no_webhook_event_contains_another_platforms_canary(settings: Any, seed: int, reveal: bool) -> None:
    settings.EXCHANGE_WEBHOOK_ALLOWED_NETWORKS = LOCAL_NETWORKS
    settings.EXCHANGE_HELD_MERGE_DAYS = 0
    rng = random.Random(seed)
    with (
        time_machine.travel(NOON, tick=False) as clock,
        override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=reveal),
    ):
        platforms, hashes, secrets = build_world(rng)
        reports.run_reports()  # the first report; the retractions below fall in the next one
        clock.shift(3600)
        drive(platforms, rng)
        clock.shift(86400)
        mail.outbox.clear()
        reports.run_reports()

    tokens = list(Indicator.objects.values_list("token", flat=True))
    keys = [kp.secret for kp in platforms] + [kp.key.lookup for kp in platforms]
    seen_types: set[str] = set()
    with_own = 0
    for n, kp in enumerate(platforms):
        text = events_text(kp)
        for other in range(PLATFORMS):
            if other != n:
                assert f"CANARY-p{other:02d}-" not in text, (n, other)
        assert "Mart-p" not in text  # events never name a platform, whatever the consortium setting
        assert "NOTECANARY" not in text and "REASONCANARY" not in text and "OPINIONCANARY" not in text
        assert not any(token in text for token in tokens)
        assert not any(h in text for h in hashes)
        assert not any(secret in text for secret in keys + secrets)
        with_own += f"CANARY-p{n:02d}-" in text  # positive control: its own sellers are named
        seen_types.update(
            WebhookDelivery.objects.filter(platform=kp.platform).values_list("event_type", flat=True)
        )
    assert with_own > PLATFORMS // 2  # most platforms share a ring: the test is not vacuous
    assert seen_types >= {
        contract.CLUSTER_JOINED,
        contract.CLUSTER_LEFT,
        contract.CLUSTER_MERGED,
        contract.CLUSTER_SPLIT,
        contract.CLUSTER_CONFIRMED,
        contract.CLUSTER_DISMISSED,
        contract.REPORT_RETRACTED,
        contract.REPORT_OVERTURNED,
        contract.CLUSTER_OPINION_ADDED,
    }

    # The next cluster report tells the same platforms of the retractions, as plainly.
    told = set(RetractionNotice.objects.values_list("platform__slug", flat=True))
    assert told
    for message in mail.outbox:
        slug = message.to[0].split("@")[0].removeprefix("contact-")
        text = everything(message)
        if slug in told:
            assert "RETRACTED: REPORTS YOU WERE TOLD ABOUT (0)" not in message.body
        assert "REASONCANARY" not in text
        for other in range(PLATFORMS):
            if f"p{other:02d}" != slug:
                assert f"CANARY-p{other:02d}-" not in text, (slug, other)
