from typing import Any

from django.apps import AppConfig


class GraphConfig(AppConfig):
    name = "graph"
    verbose_name = "Actor clusters"

    def ready(self) -> None:
        # exchange sits below graph and cannot import it: graph fills in what exchange needs (exchange/hooks.py).
        from exchange import hooks
        from graph.models import ClusterMember
        from graph.scheduling import schedule_recompute

        def recompute(sender: Any, sellers: list[int], indicators: list[int], **kwargs: Any) -> None:
            schedule_recompute(sellers=sellers, indicators=indicators)

        hooks.data_changed.connect(recompute, dispatch_uid="graph.recompute", weak=False)

        def propagate(sender: Any, sellers: list[int], overturned: bool, **kwargs: Any) -> None:
            from graph.webhooks import propagate_retractions

            propagate_retractions(sellers, overturned=overturned)

        hooks.retracted.connect(propagate, dispatch_uid="graph.propagate_retraction", weak=False)

        def clear_messages(sender: Any, cutoff: Any, **kwargs: Any) -> None:
            from graph.outbox import clear_contents

            clear_contents(cutoff)

        hooks.purged.connect(clear_messages, dispatch_uid="graph.clear_messages", weak=False)
        hooks.provide_cluster_reads(ClusterMember.objects)

        # The cluster counts and the outbox, read from graph's tables at every /metrics scrape.
        from exchange import metrics as exchange_metrics
        from graph.metrics import DATABASE_FACTS

        exchange_metrics.register_scrape_collector(DATABASE_FACTS)
