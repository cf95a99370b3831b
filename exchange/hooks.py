"""What exchange needs from the app above it, without importing it.

The apps are layered graph -> exchange -> accounts (README, "Layout"): graph links exchange's sellers into
clusters, so exchange cannot import graph. Yet exchange's writes must recompute clusters, and its partner API
shows a seller's cluster. Both go through this module, which exchange owns and graph fills in when Django
starts (`graph.apps.GraphConfig.ready`):

- :func:`announce_change`: sellers or indicators changed (a submission, a retraction, an expiry). It runs
  the receivers synchronously, inside the caller's transaction, so a recomputation is enqueued (or run)
  with the change or not at all; a change that nobody receives is an error, never a silent loss.
- :func:`announce_retraction`: sellers' reports were just retracted. Runs the receivers synchronously in the
  retraction's transaction, before :func:`announce_change` (which may recompute at once and take the sellers
  out of their clusters), so that the platforms that were told about them can be told of the retraction.
- :func:`announce_purge`: the retention purge ran. Runs the receivers in the purge's transaction, so what the
  app above keeps about reports (the messages that named them) goes with them or not at all.
- :func:`cluster_reads`: the partner-safe cluster facts the seller API and the probe check read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

import django.dispatch
from django.core.exceptions import ImproperlyConfigured

# Sent with `sellers` and `indicators` (lists of ids). Receivers raise to roll the change back.
data_changed = django.dispatch.Signal()


def announce_change(sellers: Iterable[int] = (), indicators: Iterable[int] = ()) -> None:
    seller_ids, indicator_ids = sorted(set(sellers)), sorted(set(indicators))
    if not seller_ids and not indicator_ids:
        return
    if not data_changed.send(sender=None, sellers=seller_ids, indicators=indicator_ids):
        raise ImproperlyConfigured("No receiver recomputes clusters: is the graph app installed?")


# Sent with `sellers` (ids of sellers just retracted) and `overturned` (an upheld appeal). Receivers raise to
# roll the retraction back.
retracted = django.dispatch.Signal()


def announce_retraction(sellers: Iterable[int], overturned: bool = False) -> None:
    seller_ids = sorted(set(sellers))
    if not seller_ids:
        return
    if not retracted.send(sender=None, sellers=seller_ids, overturned=overturned):
        raise ImproperlyConfigured("No receiver propagates retractions: is the graph app installed?")


# Sent with `cutoff`: the purge deleted the reports retracted or expired before it. Receivers raise to roll the
# purge back.
purged = django.dispatch.Signal()


def announce_purge(cutoff: datetime) -> None:
    if not purged.send(sender=None, cutoff=cutoff):
        raise ImproperlyConfigured(
            "No receiver clears what names purged reports: is the graph app installed?"
        )


class ClusterReads(Protocol):
    def summaries(self, seller_ids: list[int]) -> dict[int, dict[str, Any]]:
        """{seller id: its cluster's partner-safe summary} for the sellers that are in a cluster."""
        ...

    def ref_of(self, seller_id: int) -> str | None:
        """The opaque reference of the seller's cluster, or None when it is in none."""
        ...


_cluster_reads: ClusterReads | None = None


def provide_cluster_reads(reads: ClusterReads) -> None:
    global _cluster_reads
    _cluster_reads = reads


def cluster_reads() -> ClusterReads:
    if _cluster_reads is None:
        raise ImproperlyConfigured("No app provides cluster reads: is the graph app installed?")
    return _cluster_reads
