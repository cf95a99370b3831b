"""A generated set of partner reports goes through the reference client and the real HTTP API; the clusters
are compared with the planted truth."""

from datetime import UTC, datetime

import pytest

from accounts.models import ApiKey, Platform
from fixtures.loader import load_dataset
from fixtures.synthetic import expected_clusters, find_glued_clusters, generate, pairwise_precision_recall
from graph.clustering import recluster_full
from graph.models import ClusterMember


def predicted() -> list[list[tuple[str, str]]]:
    members: dict[int, list[tuple[str, str]]] = {}
    for cluster_id, slug, ref in ClusterMember.objects.values_list(
        "cluster_id", "seller__platform__slug", "seller__seller_ref"
    ):
        members.setdefault(cluster_id, []).append((slug, ref))
    return list(members.values())


@pytest.mark.django_db(transaction=True)
def test_generated_rings_are_recovered_through_client_and_api(live_server, tmp_path):
    dataset = generate(seed=11, platforms=4, sellers=900, rings=14, now=datetime.now(UTC), retractions=1)
    keys = {}
    for p in dataset.platforms:
        platform = Platform.objects.create(slug=p.slug, name=p.name, default_region=p.default_region)
        keys[p.slug] = ApiKey.generate(platform, ["submit", "lookup", "read"])[1]
    summary = load_dataset(dataset, tmp_path, live_server.url, keys)
    assert summary.ok and summary.rejected_rows == 0
    assert summary.sellers == 900

    incremental = sorted(sorted(c) for c in predicted())
    recluster_full()
    clusters = predicted()
    assert sorted(sorted(c) for c in clusters) == incremental  # incremental during ingest == full rebuild

    truth = expected_clusters(dataset.truth, after_retractions=True)
    precision, recall = pairwise_precision_recall(clusters, truth)
    print(f"pairwise precision {precision:.3f} recall {recall:.3f} over {len(truth)} rings")
    assert precision >= 0.95 and recall >= 0.95
    assert find_glued_clusters(clusters, truth) == []
    retracted = {r.key for r in dataset.truth.retractions}
    assert not any(key in retracted for cluster in clusters for key in cluster)
