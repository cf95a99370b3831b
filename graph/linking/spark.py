"""Connected components of the link graph on Spark DataFrames: the same labels as the in-memory engine, for
a graph that outgrows one machine (``manage.py recluster --engine spark``; docs/scaling.md).

The linking core still decides the edges (star edges over dense seller codes, :func:`_link_edges`); only the
components move to Spark, computed by the published large-star/small-star algorithm (Kiveris, Lattanzi,
Mirrokni, Rastogi, Vassilvitskii: "Connected Components in MapReduce and Beyond", SoCC 2014) on DataFrames.
Both operations keep every component's connectivity and move each node's edges towards the component's
smallest node; alternated until a round changes nothing, every component is a star around its smallest node,
which is exactly the label :data:`~graph.linking.components.ComponentLabeller` promises. No Python UDF runs
on the executors (JVM-only column expressions), so a cluster's executors need Java, not this Python
environment.

PySpark is an optional extra (``pip install '.[spark]'``, and Java 17+ on PATH): it is imported only when a
session is started, so the pure core imports without it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graph.linking.arrays import IntArray

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "pip install '.[spark]' (PySpark; it also needs Java 17+ on PATH)"
DEFAULT_MASTER = "local[*]"
# Local mode on one machine: no web UI, nothing beyond loopback, few shuffle partitions (the default 200
# would cost a task each per shuffle), modest memory beside the web and worker processes, and the JVM's quick
# compiler only: a local run is short and small, and C2's warm-up doubled the start and the first queries
# (measured: session 17 s -> 9 s, a 2,000-seller chain's first labelling 36-42 s -> 17-19 s).
LOCAL_CONF = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "1g",
}
COMMON_CONF = {
    # Arrow moves the edge columns in and the labels out without a per-row Python cost; fail loudly rather
    # than silently fall back to pickling millions of rows.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # progress bars on stderr; the rounds are reported instead
}
# Spark's own log lines on stderr at start-up, before setLogLevel can be called: errors only.
_LOG4J2 = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
"""


def _pyspark_sql() -> Any:
    try:
        from pyspark import sql
    except ImportError as exc:
        raise ImportError(f"the Spark engine needs PySpark, an optional extra: {INSTALL_HINT}") from exc
    return sql


def require_pyspark() -> None:
    """Raise ImportError, naming the extra to install, when PySpark is missing."""
    _pyspark_sql()


def session_conf(master: str, conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """The configuration :func:`spark_session` starts with: the local defaults only for a ``local`` master (a
    cluster's executors must reach the driver, so it must not bind to loopback there), then ``conf``."""
    base = {**COMMON_CONF, **(LOCAL_CONF if master.startswith("local") else {})}
    return {**base, **(conf or {})}


@contextmanager
def spark_session(
    master: str = DEFAULT_MASTER, conf: Mapping[str, str] | None = None, app_name: str = "exchange-recluster"
) -> Iterator[SparkSession]:
    """A Spark session: a local one by default, or on the cluster at ``master`` (``spark://host:7077``,
    ``yarn``, ``k8s://...``), stopped afterwards. A session already active in this process (a test suite's)
    is used as it is and left running."""
    sql = _pyspark_sql()
    active = sql.SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    with tempfile.TemporaryDirectory(prefix="exchange-spark-") as scratch:
        log_config = Path(scratch) / "log4j2.properties"
        log_config.write_text(_LOG4J2)
        settings = session_conf(master, conf)
        java_options = settings.get("spark.driver.extraJavaOptions", "")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={log_config} {java_options}"
        if master.startswith("local"):
            settings.setdefault("spark.local.dir", scratch)  # shuffle files go away with the session
            # Spark resolves the host name before reading its configuration; loopback keeps it local.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = sql.SparkSession.builder.master(master).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        logging.getLogger("py4j").setLevel(logging.WARNING)  # a line per gateway connection otherwise
        try:
            yield session
        finally:
            session.stop()


class SparkComponents:
    """A :data:`~graph.linking.components.ComponentLabeller` on Spark: ``labeller(n_sellers, src, dst)``
    returns each seller's smallest component member, like the in-memory SciPy one.

    ``progress`` hears one line per round (long chains take more rounds; each round truncates the lineage
    with a local checkpoint, so the plan stays one round deep).
    """

    def __init__(self, session: SparkSession, *, progress: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.progress = progress or (lambda _: None)
        self.rounds: list[int] = []  # rounds per call, for the benchmark and the tests

    def __call__(self, n_sellers: int, src: IntArray, dst: IntArray) -> IntArray:
        labels = np.arange(n_sellers, dtype=np.int64)
        linked = src != dst  # a self-loop connects nothing
        if not linked.any():
            self.rounds.append(0)
            return labels
        node, root = self._stars(src[linked], dst[linked])
        labels[node] = root
        return labels

    def _stars(self, src: IntArray, dst: IntArray) -> tuple[IntArray, IntArray]:
        """(node, smallest node of its component) for every node that is not its component's smallest."""
        sql = _pyspark_sql()
        frame = sql.functions
        import pandas as pd  # comes with pyspark[sql]

        edges = self.session.createDataFrame(
            pd.DataFrame({"a": src.astype(np.int64, copy=False), "b": dst.astype(np.int64, copy=False)}),
            schema="a long, b long",
        )
        # Canonical (larger, smaller) pairs, duplicates gone: the same edge set as the input, undirected.
        edges = (
            edges.select(frame.greatest("a", "b").alias("a"), frame.least("a", "b").alias("b"))
            .distinct()
            .localCheckpoint(eager=True)
        )
        rounds = 0
        while True:
            rounds += 1
            edges = _small_star(_large_star(edges, sql), sql).localCheckpoint(eager=True)
            count, stars = _star_forest(edges, sql)
            self.progress(f"spark components: round {rounds}, {count} edges")
            if stars:
                break
        self.rounds.append(rounds)
        stars = edges.toPandas()
        return stars["a"].to_numpy(dtype=np.int64), stars["b"].to_numpy(dtype=np.int64)


def _star_forest(edges: DataFrame, sql: Any) -> tuple[int, bool]:
    """The number of edges, and whether every component is a star around its smallest node: each node has at
    most one smaller neighbour, and no node with a smaller neighbour has a larger one. That is exactly when a
    further round would change nothing (large-star and small-star both leave such a graph as it is; Kiveris
    et al. prove that the alternation reaches it), known one round earlier than by comparing two rounds'
    edges, and in one job."""
    f = sql.functions
    roles = edges.select(f.col("a").alias("node"), f.lit(1).alias("leaf"), f.lit(0).alias("centre"))
    roles = roles.unionByName(
        edges.select(f.col("b").alias("node"), f.lit(0).alias("leaf"), f.lit(1).alias("centre"))
    )
    per_node = roles.groupBy("node").agg(f.sum("leaf").alias("leaf"), f.max("centre").alias("centre"))
    not_star = (f.col("leaf") > 1) | ((f.col("leaf") == 1) & (f.col("centre") == 1))
    row = per_node.agg(
        f.coalesce(f.sum("leaf"), f.lit(0)).alias("edges"),
        f.coalesce(f.max(not_star.cast("int")), f.lit(0)).alias("not_star"),
    ).first()
    assert row is not None  # a global aggregate has one row
    return int(row["edges"]), not row["not_star"]


def _large_star(edges: DataFrame, sql: Any) -> DataFrame:
    """Large-star: each node ``u`` links every larger neighbour to the smallest of its neighbourhood
    including itself. Input and output: (larger ``a``, smaller ``b``) pairs."""
    f = sql.functions
    both = edges.select(f.col("a").alias("u"), f.col("b").alias("v")).unionByName(
        edges.select(f.col("b").alias("u"), f.col("a").alias("v"))
    )
    by_node = sql.Window.partitionBy("u")
    return (
        both.withColumn("m", f.least(f.min("v").over(by_node), f.col("u")))
        .where(f.col("v") > f.col("u"))
        .select(f.col("v").alias("a"), f.col("m").alias("b"))
    )  # duplicates left in: small-star's minimum ignores them and its distinct drops them (one shuffle less)


def _small_star(edges: DataFrame, sql: Any) -> DataFrame:
    """Small-star: each node ``u`` links itself and its smaller neighbours to the smallest of them. Input and
    output: (larger ``a``, smaller ``b``) pairs (self-loops dropped)."""
    f = sql.functions
    with_min = edges.withColumn("m", f.min("b").over(sql.Window.partitionBy("a")))
    return (
        with_min.select(f.col("b").alias("a"), f.col("m").alias("b"))
        .where(f.col("a") != f.col("b"))
        .unionByName(with_min.select(f.col("a"), f.col("m").alias("b")))
        .distinct()
    )
