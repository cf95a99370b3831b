from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from graph.clustering import ReclusterSummary, recluster_full
from graph.linking.spark import DEFAULT_MASTER, SparkComponents, require_pyspark, spark_session
from graph.models import ActorCluster

ENGINES = ("memory", "spark")


class Command(BaseCommand):
    help = (
        "Rebuild every actor cluster from the current sightings (one transaction: a failure leaves the "
        "previous clusters intact). Cluster ids survive where members overlap; changes become events. "
        "--engine spark computes the connected components on Spark (pip install '.[spark]') when the link "
        "graph outgrows one machine; the clusters are the same."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--top", type=int, default=0, help="Print the N highest-ranked clusters afterwards."
        )
        parser.add_argument(
            "--engine",
            choices=ENGINES,
            default="memory",
            help="What computes the connected components: 'memory' (SciPy in this process, the default) or "
            "'spark' (large-star/small-star on Spark DataFrames; identical clusters).",
        )
        parser.add_argument(
            "--master",
            default=None,
            help="With --engine spark: the Spark master URL (default local[*]; spark://host:7077, yarn, ...).",
        )
        parser.add_argument(
            "--conf",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="With --engine spark: a Spark setting, as for spark-submit (repeatable), e.g. "
            "spark.executor.memory=8g.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()

        def progress(step: str) -> None:
            self.stderr.write(f"[{time.perf_counter() - started:6.2f}s] {step}")

        if options["engine"] == "spark":
            summary = self._on_spark(progress, options["master"], options["conf"])
        else:
            if options["master"] or options["conf"]:
                raise CommandError("--master and --conf go with --engine spark")
            summary = recluster_full(progress)
        self.stdout.write(str(summary))
        if options["top"]:
            for cluster in ActorCluster.objects.live().ranked()[: options["top"]]:
                self.stdout.write(
                    f"  cluster {cluster.pk}: {cluster.size} sellers on {cluster.platform_count} platforms, "
                    f"risk {cluster.risk}, linked by {', '.join(cluster.kinds)}"
                )

    def _on_spark(
        self, progress: Callable[[str], None], master: str | None, pairs: Sequence[str]
    ) -> ReclusterSummary:
        conf: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--conf takes KEY=VALUE, got {pair!r}")
            conf[key.strip()] = value.strip()
        try:
            require_pyspark()
        except ImportError as exc:
            raise CommandError(str(exc)) from exc
        master = master or DEFAULT_MASTER
        progress(f"starting Spark ({master})")
        starting = time.perf_counter()
        with spark_session(master, conf) as session:
            start_seconds = time.perf_counter() - starting
            summary = recluster_full(
                progress, labeller=SparkComponents(session, progress=progress), engine="spark"
            )
        summary.seconds = {"spark start": start_seconds, **summary.seconds}
        return summary
