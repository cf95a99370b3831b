"""`manage.py recluster --engine spark` gives exactly the clusters of the in-memory engine (issue 20): on the
synthetic fixtures (rings on four platforms, hubs, a retraction, and a fresh bridge that is held), the same
linkage from the same database columns, the same clusters, context, held merges and events from a rebuild,
and one engine run after the other changes nothing.

The fixtures go in through the partner client's CSV reading (normalised and hashed as a partner would) and
`exchange.ingest.do_submit`, without HTTP, and without the inline recomputation a submission triggers, so
that each engine builds every cluster from nothing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Platform
from exchange.client.api import seller_payload
from exchange.client.csvinput import SellerReport, read_submission_file
from exchange.client.submission import batched
from exchange.ingest import do_submit
from exchange.models import Seller
from exchange.normalization import STRONG_KINDS
from exchange.retention import do_retract
from fixtures.synthetic import Dataset, generate
from graph import clustering, linking
from graph.linking.spark import SparkComponents
from graph.models import ActorCluster, ClusterEvent, ClusterMember, PendingMerge, PendingMergeSeller

pytestmark = [pytest.mark.spark, pytest.mark.django_db]

SellerKey = tuple[str, str]  # (platform slug, seller_ref): the same whatever ids a run gave


def load_fixtures(out_dir: Path) -> Dataset:
    dataset = generate(seed=20, platforms=4, sellers=400, rings=10, now=datetime.now(UTC), retractions=1)
    dataset.write(out_dir)
    reports: dict[SellerKey, SellerReport] = {}
    with mock.patch("exchange.hooks.announce_change"):  # no inline recomputation: the engines start empty
        for planned in dataset.platforms:
            platform = Platform.objects.create(
                slug=planned.slug, name=planned.name, default_region=planned.default_region
            )
            sellers = read_submission_file(out_dir / f"{planned.slug}.csv", planned.default_region).sellers
            reports.update(((planned.slug, seller.seller_ref), seller) for seller in sellers)
            for number, batch in enumerate(batched(sellers, 500)):
                submit(platform, f"fixtures-{number}", batch)
        for retraction in dataset.truth.retractions:
            seller = Seller.objects.get(platform__slug=retraction.platform, seller_ref=retraction.seller_ref)
            do_retract(seller, retraction.reason, "fixtures")
        plant_bridge(dataset, reports)
    return dataset


def submit(platform: Platform, idempotency_key: str, sellers: Sequence[SellerReport]) -> None:
    payload = {"sellers": [seller_payload(seller) for seller in sellers]}
    do_submit(platform, None, idempotency_key, json.dumps(payload).encode(), payload)


def plant_bridge(dataset: Dataset, reports: dict[SellerKey, SellerReport]) -> None:
    """A fresh seller of one platform holding a strong indicator of each of two rings that have no seller on
    its platform: alone it would glue them, so the rebuild holds it (a held merge)."""
    retracted = {r.key for r in dataset.truth.retractions}
    for planned in dataset.platforms:
        strong = [
            [i for i in reports[member.key].indicators if i.kind in STRONG_KINDS]
            for ring in dataset.truth.rings
            if planned.slug not in ring.platforms and not retracted.intersection(ring.keys)
            for member in ring.members[:1]
        ]
        strong = [indicators[:1] for indicators in strong if indicators]
        if len(strong) >= 2:
            bridge = SellerReport("bridge-1", "suspected", ["counterfeit"], datetime.now(UTC).isoformat())
            bridge.indicators = strong[0] + strong[1]
            submit(Platform.objects.get(slug=planned.slug), "bridge", [bridge])
            return
    raise AssertionError("the fixtures have no two rings to bridge")


def keys() -> dict[int, SellerKey]:
    return {
        pk: (slug, ref) for pk, slug, ref in Seller.objects.values_list("id", "platform__slug", "seller_ref")
    }


def state() -> dict[str, Any]:
    """Everything a rebuild writes, by seller keys (cluster and merge ids differ between two rebuilds)."""
    key = keys()
    members: dict[int, set[SellerKey]] = {}
    for cluster_id, seller_id in ClusterMember.objects.values_list("cluster_id", "seller_id"):
        members.setdefault(cluster_id, set()).add(key[seller_id])
    clusters = {
        frozenset(members[c.pk]): (c.size, c.platform_count, c.risk, c.risk_parts, c.kinds, c.status)
        for c in ActorCluster.objects.live()
    }
    events = sorted(
        (kind, sorted(members.get(cluster_id, ())), before, after, platforms)
        for cluster_id, kind, before, after, platforms in ClusterEvent.objects.values_list(
            "cluster_id", "kind", "members_before", "members_after", "platforms"
        )
    )
    merge_sellers: dict[int, list[tuple[SellerKey, bool]]] = {}
    for merge_id, seller_id, held in PendingMergeSeller.objects.values_list("merge_id", "seller_id", "held"):
        merge_sellers.setdefault(merge_id, []).append((key[seller_id], held))
    merges = sorted(
        (platform, state, sorted(merge_sellers[pk]))
        for pk, platform, state in PendingMerge.objects.live().values_list("pk", "platform__slug", "state")
    )
    return {"clusters": clusters, "events": events, "held merges": merges}


def rebuild(engine: str) -> tuple[str, dict[str, Any]]:
    """A rebuild with `engine`: its output and the state it wrote, then rolled back."""
    saved = transaction.savepoint()
    out = StringIO()
    call_command("recluster", "--engine", engine, stdout=out, stderr=StringIO())
    written = state()
    transaction.savepoint_rollback(saved)
    return out.getvalue(), written


def test_both_engines_link_the_fixture_columns_identically(spark, tmp_path):
    load_fixtures(tmp_path)
    connection.ensure_connection()
    now = timezone.now()
    columns = clustering._read_full(now)
    rule = clustering.hub_rule()

    def run(labeller: linking.ComponentLabeller) -> linking.Linkage[int]:
        return linking.link_columns(
            columns.seller,
            columns.indicator,
            columns.kind,
            platform=columns.platform,
            thresholds=rule.thresholds,
            platform_divisor=rule.platform_divisor,
            overrides=clustering._overrides(),
            fresh=clustering._fresh(now),
            labeller=labeller,
        )

    in_memory = run(linking.component_labels)
    on_spark = run(SparkComponents(spark))
    assert on_spark == in_memory
    # The fixtures exercise what must agree: rings across platforms, hub context, held bridges.
    assert sum(1 for c in in_memory.clusters if len(c.members) > 2) >= 5
    assert in_memory.suppressed and in_memory.held


def test_recluster_engine_spark_rebuilds_what_the_memory_engine_rebuilds_and_changes_nothing_after_it(
    spark, tmp_path
):
    load_fixtures(tmp_path)
    spark_output, by_spark = rebuild("spark")  # from no clusters, then rolled back
    assert "(spark engine)" in spark_output and "spark start" in spark_output
    out = StringIO()
    call_command("recluster", stdout=out, stderr=StringIO())  # from no clusters, kept
    assert "(memory engine)" in out.getvalue()
    by_memory = state()
    assert by_spark == by_memory
    assert by_memory["clusters"] and by_memory["held merges"] and by_memory["events"]

    # The other engine on the memory engine's clusters: same clusters, so no event and every id kept.
    ids = sorted(ClusterMember.objects.values_list("cluster_id", "seller_id"))
    events = ClusterEvent.objects.count()
    out = StringIO()
    call_command("recluster", "--engine", "spark", stdout=out, stderr=StringIO())
    assert "events: none" in out.getvalue()
    assert ClusterEvent.objects.count() == events
    assert sorted(ClusterMember.objects.values_list("cluster_id", "seller_id")) == ids
    assert state() == by_memory


def test_without_pyspark_the_spark_engine_stops_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what an install without the extra sees
    with pytest.raises(CommandError, match=re.escape("pip install '.[spark]'")):
        call_command("recluster", "--engine", "spark", stdout=StringIO(), stderr=StringIO())
    assert not ActorCluster.objects.exists()


def test_master_and_spark_settings_go_with_the_spark_engine_only():
    with pytest.raises(CommandError, match="--engine spark"):
        call_command("recluster", "--master", "spark://spark-master:7077", stdout=StringIO())
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("recluster", "--engine", "spark", "--conf", "spark.executor.memory", stdout=StringIO())
