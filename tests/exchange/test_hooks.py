"""exchange/hooks.py: what exchange needs from graph, filled in by graph when Django starts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from exchange import hooks
from graph.models import ClusterMember


@pytest.fixture
def no_receivers() -> Iterator[list[Any]]:
    """The data_changed signal with graph's receiver disconnected (restored afterwards)."""
    saved = hooks.data_changed.receivers
    hooks.data_changed.receivers = []
    hooks.data_changed.sender_receivers_cache.clear()
    try:
        yield saved
    finally:
        hooks.data_changed.receivers = saved
        hooks.data_changed.sender_receivers_cache.clear()


def test_graph_receives_changes_and_provides_cluster_reads() -> None:
    assert hooks.data_changed.has_listeners()
    assert hooks.cluster_reads() is ClusterMember.objects


def test_a_change_nobody_receives_is_an_error_not_a_silent_loss(no_receivers: list[Any]) -> None:
    with pytest.raises(ImproperlyConfigured, match="recomputes clusters"):
        hooks.announce_change(sellers=[1])


def test_an_empty_change_sends_nothing(no_receivers: list[Any]) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    hooks.data_changed.connect(receiver, weak=False)
    hooks.announce_change()
    hooks.announce_change(sellers=[3, 1, 3], indicators=[2])
    assert [(k["sellers"], k["indicators"]) for k in seen] == [([1, 3], [2])]


def test_cluster_reads_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_cluster_reads", None)
    with pytest.raises(ImproperlyConfigured, match="cluster reads"):
        hooks.cluster_reads()


def test_graph_receives_retractions_and_one_nobody_receives_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert hooks.retracted.has_listeners()
    monkeypatch.setattr(hooks.retracted, "receivers", [])
    hooks.retracted.sender_receivers_cache.clear()
    try:
        hooks.announce_retraction([])  # nothing retracted: nothing sent, no error
        with pytest.raises(ImproperlyConfigured, match="propagates retractions"):
            hooks.announce_retraction([1])
    finally:
        hooks.retracted.sender_receivers_cache.clear()


def test_graph_receives_purges_and_one_nobody_receives_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hooks.purged.has_listeners()
    monkeypatch.setattr(hooks.purged, "receivers", [])
    hooks.purged.sender_receivers_cache.clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="clears what names purged reports"):
            hooks.announce_purge(timezone.now())
    finally:
        hooks.purged.sender_receivers_cache.clear()
