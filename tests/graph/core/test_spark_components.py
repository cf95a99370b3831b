"""The Spark engine's component labeller (large-star/small-star on DataFrames, graph.linking.spark) labels
every seller exactly as the in-memory SciPy labeller does, and a full linking run with it is identical.

One local Spark session serves the whole run (tests/graph/conftest.py); several graphs go through one call
as a disjoint union where that loses nothing, because every Spark round costs about a second here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from graph.linking import DEFAULT_THRESHOLDS, component_labels, link_columns
from graph.linking.arrays import IntArray
from graph.linking.spark import SparkComponents, session_conf
from tests.graph.conftest import require_pyspark

pytestmark = [pytest.mark.spark]


def both(spark: Any, n: int, src: IntArray, dst: IntArray) -> tuple[IntArray, IntArray, int]:
    labeller = SparkComponents(spark)
    on_spark = labeller(n, np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64))
    in_memory = component_labels(n, np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64))
    return on_spark, in_memory, labeller.rounds[-1]


def test_without_edges_every_seller_labels_itself_and_spark_runs_nothing(spark):
    empty = np.zeros(0, dtype=np.int64)
    on_spark, in_memory, rounds = both(spark, 5, empty, empty)
    assert on_spark.tolist() == in_memory.tolist() == [0, 1, 2, 3, 4]
    assert rounds == 0


def test_one_edge_joins_its_two_sellers_under_the_smaller(spark):
    on_spark, in_memory, _ = both(spark, 4, np.array([3]), np.array([1]))
    assert on_spark.tolist() == in_memory.tolist() == [0, 1, 2, 1]


def test_a_chain_of_two_thousand_sellers_converges_over_many_checkpointed_rounds(spark):
    # The worst case for large-star/small-star is a long path: about log2(n) rounds, each with a local
    # checkpoint so the plan does not grow with them.
    src = np.arange(1999, dtype=np.int64)
    on_spark, in_memory, rounds = both(spark, 2000, src, src + 1)
    assert (on_spark == 0).all() and (in_memory == 0).all()
    assert rounds >= 5


def test_random_graphs_small_components_self_loops_and_duplicates_label_alike(spark):
    rng = np.random.default_rng(20)
    sources: list[IntArray] = []
    targets: list[IntArray] = []
    offset = 0
    # Disjoint random graphs from sparse (many small components and isolated sellers) to dense (one giant).
    for nodes, edges in [(400, 120), (400, 300), (300, 600), (200, 2000)]:
        sources.append(rng.integers(0, nodes, edges) + offset)
        targets.append(rng.integers(0, nodes, edges) + offset)
        offset += nodes
    pairs = np.arange(offset, offset + 400, 2)  # 200 components of two, given in both directions
    sources += [pairs, pairs + 1]
    targets += [pairs + 1, pairs]
    offset += 400
    src, dst = np.concatenate(sources), np.concatenate(targets)
    loops = rng.integers(0, offset, 50)  # self-loops, some on otherwise isolated sellers
    repeat = rng.integers(0, src.size, 300)  # duplicate edges
    src = np.concatenate([src, loops, src[repeat]])
    dst = np.concatenate([dst, loops, dst[repeat]])
    order = rng.permutation(src.size)
    on_spark, in_memory, _ = both(spark, offset + 10, src[order], dst[order])  # 10 sellers with no edge
    assert on_spark.tolist() == in_memory.tolist()
    assert 100 < np.unique(in_memory).size < offset  # many components, some sellers joined


def test_a_full_linking_run_with_held_merges_is_identical_on_spark(spark):
    # Clusters X (sellers 1, 2: an email) and Y (3, 4: a phone) on platforms 1 and 2, a hub phone on six
    # sellers of several platforms (suppressed, context), and platform 9's fresh seller 9 bridging X and Y:
    # held, so the held-merge passes run their own components too.
    email, phone, hub = 0, 1, 1
    rows = [(1, 100, email, 1), (2, 100, email, 2), (3, 200, phone, 1), (4, 200, phone, 2)]
    rows += [(9, 100, email, 9), (9, 200, phone, 9)]
    rows += [(s, 300, hub, p) for s, p in [(1, 1), (3, 1), (2, 2), (4, 2), (5, 3), (6, 4), (7, 5), (8, 6)]]
    seller, indicator, kind, platform = (
        np.array(column, dtype=np.int64) for column in zip(*rows, strict=True)
    )
    thresholds = {**DEFAULT_THRESHOLDS, "phone": 3}
    memory = link_columns(seller, indicator, kind, platform=platform, thresholds=thresholds, fresh={9})
    on_spark = link_columns(
        seller,
        indicator,
        kind,
        platform=platform,
        thresholds=thresholds,
        fresh={9},
        labeller=SparkComponents(spark),
    )
    assert on_spark == memory
    assert [c.members for c in memory.clusters] == [(1, 2), (3, 4)]
    assert memory.held and memory.suppressed


def test_spark_progress_reports_each_round(spark):
    heard: list[str] = []
    SparkComponents(spark, progress=heard.append)(3, np.array([0, 1]), np.array([1, 2]))
    assert heard and all(line.startswith("spark components: round ") for line in heard)


def test_local_defaults_stay_on_loopback_and_a_cluster_master_gets_none_of_them():
    local = session_conf("local[*]")
    assert local["spark.driver.host"] == "127.0.0.1" and local["spark.ui.enabled"] == "false"
    cluster = session_conf("spark://spark-master:7077", {"spark.executor.memory": "8g"})
    assert "spark.driver.host" not in cluster and "spark.sql.shuffle.partitions" not in cluster
    assert cluster["spark.executor.memory"] == "8g"
    assert cluster["spark.sql.execution.arrow.pyspark.enabled"] == "true"


def test_without_pyspark_the_spark_tests_fail_unless_skipping_is_asked():
    with pytest.raises(pytest.fail.Exception, match="EXCHANGE_SKIP_SPARK_TESTS=1"):
        require_pyspark(installed=False, skip_asked=False)
    with pytest.raises(pytest.skip.Exception):
        require_pyspark(installed=False, skip_asked=True)
    require_pyspark(installed=True, skip_asked=False)  # installed: nothing happens
