"""A kind's strength is configurable (`EXCHANGE_LINK_STRENGTHS`, over `graph.linking.DEFAULT_STRENGTH`): full and
incremental reclustering, the risk's evidence part, the cluster's explanation and the indicator admin all read
it through `graph.clustering.strengths`."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.contrib import admin

from accounts.scoping import EVERYTHING
from exchange.models import Indicator
from graph.clustering import recluster_full, strengths
from graph.explain import explain
from graph.indicator_admin import IndicatorAdmin
from graph.models import ActorCluster, ClusterMember
from graph.risk import EVIDENCE_MAX
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

PHOTO = f"{random.Random(29).getrandbits(256):064x}"


def photo(ref: str, flips: range) -> dict[str, Any]:
    """A seller whose only indicator is a product photo: ``PHOTO`` with ``flips`` bits flipped (a near copy)."""
    value = int(PHOTO, 16)
    for bit in flips:
        value ^= 1 << bit
    body = seller(ref)
    body["indicators"] = [{"kind": "image", "hash": f"{value:064x}", "quality": 90, "crops": []}]
    return body


def share_one_photo(acme: KeyedPlatform, bazaar: KeyedPlatform) -> None:
    """Two platforms' sellers whose only shared indicator is one near-duplicate photo group."""
    assert submit(acme.client(), photo("acme-1", range(0))).status_code == 201
    assert submit(bazaar.client(), photo("bz-1", range(5))).status_code == 201
    assert Indicator.objects.filter(kind="image").count() == 1  # one group: the copy joined the original's


def cluster_of(ref: str) -> ActorCluster | None:
    member = ClusterMember.objects.filter(seller__seller_ref=ref).select_related("cluster").first()
    return member.cluster if member else None


def test_strengths_overlay_the_setting_on_the_defaults(settings: Any) -> None:
    assert strengths()["image"] == "weak" and strengths()["email"] == "strong"
    settings.EXCHANGE_LINK_STRENGTHS = {"image": "strong", "email": "weak"}
    configured = strengths()
    assert (configured["image"], configured["email"], configured["store_name"]) == ("strong", "weak", "weak")


def test_by_default_one_shared_photo_links_nobody(acme: KeyedPlatform, bazaar: KeyedPlatform) -> None:
    share_one_photo(acme, bazaar)  # the incremental path runs on submission
    assert cluster_of("acme-1") is None and cluster_of("bz-1") is None
    recluster_full()
    assert cluster_of("acme-1") is None and cluster_of("bz-1") is None
    assert IndicatorAdmin(Indicator, admin.site).strength(Indicator.objects.get(kind="image")) == "weak"


def assert_linked_by_a_strong_photo() -> None:
    cluster = cluster_of("acme-1")
    assert cluster is not None and cluster == cluster_of("bz-1")
    assert cluster.risk_parts["evidence"] == EVIDENCE_MAX  # its one link rests on a strong indicator
    explanation = explain(cluster, EVERYTHING)
    assert [(row.kind, row.strength) for row in explanation.holding] == [("image", "strong")]
    a, b = (m.seller_id for m in explanation.members)
    (step,) = explanation.chain(a, b)
    assert [(row.kind, row.strength) for row in step.indicators] == [("image", "strong")]
    assert [len(step.indicators) for step in explanation.evidence_tree()] == [1]
    assert IndicatorAdmin(Indicator, admin.site).strength(Indicator.objects.get(kind="image")) == "strong"


def test_photos_configured_strong_link_on_one_shared_photo_incrementally(
    settings: Any, acme: KeyedPlatform, bazaar: KeyedPlatform
) -> None:
    settings.EXCHANGE_LINK_STRENGTHS = {"image": "strong"}
    share_one_photo(acme, bazaar)  # the incremental path runs on submission
    assert_linked_by_a_strong_photo()
    before = cluster_of("acme-1")
    recluster_full()  # and a full run agrees
    assert cluster_of("acme-1") == before
    assert_linked_by_a_strong_photo()


def test_photos_configured_strong_link_on_one_shared_photo_in_a_full_recluster(
    settings: Any, acme: KeyedPlatform, bazaar: KeyedPlatform
) -> None:
    share_one_photo(acme, bazaar)
    assert cluster_of("acme-1") is None
    settings.EXCHANGE_LINK_STRENGTHS = {"image": "strong"}
    recluster_full()
    assert_linked_by_a_strong_photo()
