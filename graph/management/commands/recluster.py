from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from graph.clustering import recluster_full
from graph.models import ActorCluster


class Command(BaseCommand):
    help = (
        "Rebuild every actor cluster from the current sightings (one transaction: a failure leaves the "
        "previous clusters intact). Cluster ids survive where members overlap; changes become events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--top", type=int, default=0, help="Print the N highest-ranked clusters afterwards."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()

        def progress(step: str) -> None:
            self.stderr.write(f"[{time.perf_counter() - started:6.2f}s] {step}")

        summary = recluster_full(progress)
        self.stdout.write(str(summary))
        if options["top"]:
            for cluster in ActorCluster.objects.live().ranked()[: options["top"]]:
                self.stdout.write(
                    f"  cluster {cluster.pk}: {cluster.size} sellers on {cluster.platform_count} platforms, "
                    f"risk {cluster.risk}, linked by {', '.join(cluster.kinds)}"
                )
