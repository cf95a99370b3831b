"""A cluster's stored facts (platforms, risk and its parts, linking kinds) are the scalar definitions'
(`graph.evidence.link_summary`, `graph.risk.risk_score`) whatever the write phase's vectorised route."""

import random
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from exchange.models import Seller, Sighting
from graph import linking
from graph.clustering import (
    KINDS,
    ClusterFacts,
    _event_platforms,
    _facts,
    _read_full,
    hub_rule,
    recluster_full,
)
from graph.evidence import link_summary
from graph.identity import ClusterChange
from graph.models import ActorCluster, ClusterMember
from graph.risk import risk_score
from tests.builders import seller, submit

pytestmark = pytest.mark.django_db


def scalar_facts(clusters, now, platform_hubs) -> dict[frozenset[int], ClusterFacts]:
    """The definition, one cluster at a time (what the write phase computed before it went column-wise)."""
    sellers = {s.pk: s for s in Seller.objects.all()}
    sightings = defaultdict(list)
    for seller_id, indicator_id, kind in Sighting.objects.filter(indicator__holders__gte=2).values_list(
        "seller_id", "indicator_id", "indicator__kind"
    ):
        if (indicator_id, sellers[seller_id].platform_id) not in platform_hubs:
            platform = sellers[seller_id].platform_id
            sightings[seller_id].append(linking.Sighting(seller_id, platform, kind, str(indicator_id)))
    facts = {}
    for cluster in clusters:
        members = [sellers[m] for m in cluster.members]
        strong, weak, kinds = link_summary(
            [s for m in cluster.members for s in sightings[m]],
            suppressed={(s.kind, str(s.indicator)) for s in cluster.suppressed},
        )
        platforms = len({m.platform_id for m in members})
        score = risk_score(
            platforms=platforms,
            confirmed=sum(1 for m in members if m.status == "confirmed"),
            suspected=sum(1 for m in members if m.status != "confirmed"),
            strong_links=strong,
            weak_links=weak,
            last_reported=max(m.reported_at for m in members),
            now=now,
        )
        facts[cluster.member_set] = ClusterFacts(len(members), platforms, score.total, score.parts, kinds)
    return facts


def test_vectorised_facts_equal_the_scalar_definition(acme, bazaar, third, settings):
    # Small thresholds so that hubs (suppressed for everyone) and platform hubs (one platform's own) occur.
    settings.EXCHANGE_LINK_THRESHOLDS = {"phone": 4, "email": 4, "store_name": 3, "shipping_address": 3}
    settings.EXCHANGE_HUB_PLATFORM_DIVISOR = 2
    rng = random.Random(7)
    pool = {
        "email": [f"e{i}@x.com" for i in range(6)],
        "phone": [f"+49301234{i:03d}" for i in range(6)],
        "store_name": [f"shop {i}" for i in range(3)],
        "shipping_address": [f"{i} harbour street" for i in range(3)],
    }
    now = timezone.now()
    for n in range(45):
        kinds = rng.sample(list(pool), k=rng.randint(1, 3))
        submit(
            rng.choice([acme, bazaar, third]).client(),
            seller(
                f"s{n}",
                *[(k, rng.choice(pool[k])) for k in kinds],
                status=rng.choice(["confirmed", "suspected"]),
                reported_at=now - timedelta(days=rng.uniform(0, 400)),
            ),
        )
    columns = _read_full(now)
    rule = hub_rule()
    result = linking.link_columns(
        columns.seller,
        columns.indicator,
        columns.kind,
        platform=columns.platform,
        kinds=KINDS,
        thresholds=rule.thresholds,
        platform_divisor=rule.platform_divisor,
    )
    assert len(result.clusters) >= 3 and result.suppressed and result.platform_hubs
    facts, platform_of = _facts(result.clusters, now, frozenset(result.platform_hubs))
    assert facts == scalar_facts(result.clusters, now, frozenset(result.platform_hubs))
    assert platform_of == {
        s.pk: s.platform_id
        for s in Seller.objects.filter(id__in=[m for c in result.clusters for m in c.members])
    }


def test_a_rerun_with_nothing_changed_writes_nothing(acme, bazaar):
    submit(acme.client(), seller("a1", ("email", "x@x.com")), seller("a2", ("phone", "+4930111")))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com")), seller("b2", ("phone", "+4930111")))
    recluster_full()
    stored = list(ActorCluster.objects.order_by("id").values())
    members = list(ClusterMember.objects.order_by("seller_id").values())
    summary = recluster_full()
    assert summary.events == {}
    assert list(ActorCluster.objects.order_by("id").values()) == stored
    assert list(ClusterMember.objects.order_by("seller_id").values()) == members


def test_a_rerun_writes_facts_that_changed_without_touching_membership(acme, bazaar):
    submit(acme.client(), seller("a1", ("email", "x@x.com"), status="suspected"))
    submit(bazaar.client(), seller("b1", ("email", "x@x.com"), status="suspected"))
    cluster = ActorCluster.objects.get()
    Seller.objects.filter(seller_ref="a1").update(status="confirmed")  # no recluster queued by this
    recluster_full()
    after = ActorCluster.objects.get()
    assert after.pk == cluster.pk and after.changed_at == cluster.changed_at
    assert after.risk_parts["reports"] > cluster.risk_parts["reports"] and after.risk == sum(
        after.risk_parts.values()
    )


def test_event_platforms_are_the_involved_sellers_platforms() -> None:
    """`_event_platforms` (column-wise) names what the per-event set did: the ascending platforms of the
    members before and after whose platform is known."""
    rng = random.Random(17)
    platform_of = {s: rng.choice([3, 7, 11, 40]) for s in range(1, 60) if rng.random() < 0.8}
    changes = []
    for n in range(200):
        before = frozenset(rng.sample(range(1, 70), rng.choice([0, 0, 1, 3, 8])))
        after = frozenset(rng.sample(range(1, 70), rng.choice([0, 1, 2, 5])))
        changes.append(ClusterChange("created", n, before, after))
    want = [
        sorted({platform_of[m] for m in (c.members_after | c.members_before) if m in platform_of})
        for c in changes
    ]
    assert _event_platforms(changes, platform_of) == want
    assert _event_platforms(changes, {}) == [[] for _ in changes]
    assert _event_platforms([], platform_of) == []
