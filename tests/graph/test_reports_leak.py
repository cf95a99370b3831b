"""No platform's report ever carries another platform's data.

Many generated platforms report sellers into randomly overlapping rings (plus single-platform clusters and
retractions). Every seller reference, platform name and cluster note is a unique canary; no report may contain
another platform's canary, any cluster note, any token or transport hash, or any API key.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.test import override_settings

from accounts.models import Platform
from exchange.models import Indicator
from graph import reports
from graph.models import ActorCluster
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform, make_platform
from tests.graph.test_reports import NOON

PLATFORMS = 12
RINGS = 40


def build_world(rng: random.Random) -> tuple[list[KeyedPlatform], list[str]]:
    """Platforms p00..p11 named "Mart-pNN-Canary"; returns them and every transport hash used."""
    platforms = [make_platform(f"p{n:02d}", f"Mart-p{n:02d}-Canary") for n in range(PLATFORMS)]
    batches: dict[int, list[dict[str, Any]]] = defaultdict(list)
    hashes: list[str] = []
    for ring in range(RINGS):
        members = rng.sample(range(PLATFORMS), rng.choice([1, 2, 2, 3, 4]))
        for n in members:
            indicators = [("email", f"ring{ring}@counterfeit.example")]
            if rng.random() < 0.3:
                indicators.append(("store_name", f"Store {ring} of {n}"))  # unshared: never links
            batches[n].append(seller(f"CANARY-p{n:02d}-r{ring}-", *indicators))
            hashes += [th(kind, value) for kind, value in indicators]
    for n, sellers in batches.items():
        assert submit(platforms[n].client(), *sellers).status_code == 201
    for n, kp in enumerate(platforms):
        kp.platform.report_recipients = [f"contact-p{n:02d}@reports.example"]
        kp.platform.report_cadence = "daily"
        kp.platform.save(update_fields=["report_recipients", "report_cadence"])
    for cluster in ActorCluster.objects.all():
        cluster.notes = f"NOTECANARY-{cluster.pk}: analyst suspects a freight forwarder"
        cluster.save(update_fields=["notes"])
    return platforms, hashes


def everything(message: Any) -> str:
    return "\n".join(
        [
            message.subject,
            message.body,
            *(content for content, _ in message.alternatives),
            str(message.message()),
        ]
    )


def assert_no_leaks(platforms: list[KeyedPlatform], hashes: list[str], reveal: bool) -> None:
    tokens = list(Indicator.objects.values_list("token", flat=True))
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert len(by_recipient) == len(mail.outbox)
    for n, kp in enumerate(platforms):
        message = by_recipient.get(f"contact-p{n:02d}@reports.example")
        if message is None:
            continue
        text = everything(message)
        for other in range(PLATFORMS):
            if other != n:
                assert f"CANARY-p{other:02d}-" not in text, (n, other)
                if not reveal:
                    assert f"Mart-p{other:02d}-Canary" not in text, (n, other)
        assert "NOTECANARY" not in text
        assert not any(token in text for token in tokens)
        assert not any(h in text for h in hashes)
        assert kp.secret not in text and kp.key.lookup not in text
    digests = [m for m in mail.outbox if m.to == ["alice@example.org"]]
    assert len(digests) == 1
    text = everything(digests[0])
    assert "CANARY-" not in text and "NOTECANARY" not in text
    # Exchange analysts see every platform; their digest names one only where it is the finding (a held merge
    # or suspected probes), never beside a cluster.
    named = [line for line in text.splitlines() if "Mart-p" in line]
    assert all(("merge" in line and "waiting" in line) or "retraction" in line for line in named), named


@pytest.mark.parametrize("reveal", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_no_report_contains_another_platforms_canary(seed: int, reveal: bool, alice: User) -> None:
    rng = random.Random(seed)
    with (
        time_machine.travel(NOON, tick=False) as clock,
        override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=reveal),
    ):
        platforms, hashes = build_world(rng)
        reports.run_reports()
        first = len(mail.outbox)
        assert first > PLATFORMS // 2  # most platforms share a ring: the test is not vacuous
        # Positive control: each report names its own sellers (so the absence of others' means something).
        for message in mail.outbox[:-1]:
            slug = message.to[0].split("@")[0].removeprefix("contact-")
            assert f"CANARY-{slug}-" in message.body
        assert_no_leaks(platforms, hashes, reveal)

        # A day later: rings grow and merge across platforms, some reports are retracted.
        mail.outbox.clear()
        clock.shift(86400)
        for ring in range(0, RINGS, 5):
            n = rng.randrange(PLATFORMS)
            glue = seller(
                f"CANARY-p{n:02d}-glue{ring}-",
                ("email", f"ring{ring}@counterfeit.example"),
                ("email", f"ring{ring + 1}@counterfeit.example"),
            )
            assert submit(platforms[n].client(), glue).status_code == 201
        for kp in platforms[:4]:
            ref = kp.platform.sellers.order_by("id").values_list("seller_ref", flat=True).first()
            if ref:
                assert kp.client().post(
                    f"/api/v1/sellers/{ref}/retract/", {"reason": "appeal"}, format="json"
                )
        ActorCluster.objects.update(notes="NOTECANARY again")
        reports.run_reports()
        assert any(
            "GREW OR MERGED" in m.body and "(0)" not in m.body.split("GREW OR MERGED")[1][:5]
            for m in mail.outbox
        )
        assert any(
            "LOST ACCOUNTS: RETRACTED, EXPIRED OR NO LONGER LINKED (0)" not in m.body
            for m in mail.outbox[:-1]
        )
        assert_no_leaks(platforms, hashes, reveal)
        if reveal:  # names are the consortium's choice; references never are
            assert any("Mart-p" in m.body.split("Other platforms")[-1] for m in mail.outbox[:-1])
    assert Platform.objects.count() == PLATFORMS
