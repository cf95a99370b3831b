"""Data poisoning by one hostile platform (issue 12, items 7 and 8): its submissions through the real API
neither dissolve nor glue the honest platforms' clusters."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.models import Indicator
from graph.models import ActorCluster, ClusterMember
from tests.admin_world import logged_in
from tests.builders import seller, submit

pytestmark = pytest.mark.django_db

STORE = ("store_name", "Harbor & Finch")
DOCK = ("shipping_address", "1 Dock Road, Hamburg")


def honest_state(*platforms: Any) -> dict[str, Any]:
    """What the honest platforms have: cluster ids and members, and what /api/v1/clusters/ tells each."""
    members: dict[int, set[str]] = {}
    for cluster_id, slug, ref in ClusterMember.objects.filter(cluster__dissolved_at__isnull=True).values_list(
        "cluster_id", "seller__platform__slug", "seller__seller_ref"
    ):
        members.setdefault(cluster_id, set()).add(f"{slug}:{ref}")
    api = {}
    for platform in platforms:
        client = platform.client()
        listing = client.get("/api/v1/clusters/").json()["results"]
        details = [client.get(f"/api/v1/clusters/{c['id']}/").json() for c in listing]
        api[platform.platform.slug] = {
            "listing": listing,
            "members": [(d["your_sellers"], d["other_platforms"]) for d in details],
        }
    return {"clusters": members, "api": api}


def test_one_platforms_fake_holders_do_not_dissolve_other_platforms_cluster(acme, bazaar, hostile, alice):
    submit(acme.client(), seller("a1", STORE, DOCK))
    submit(bazaar.client(), seller("b1", STORE, DOCK))
    before = honest_state(acme, bazaar)
    assert list(before["clusters"].values()) == [{"acme:a1", "bazaar:b1"}]

    # Eleven invented sellers holding the store name: over its threshold of 10 by a plain count.
    response = submit(hostile.client(), *[seller(f"fake{n}", STORE) for n in range(11)])
    assert response.status_code == 201

    assert honest_state(acme, bazaar) == before
    # The indicator page tells the analyst why it still links, from the same rule.
    store = Indicator.objects.get(kind="store_name")
    html = logged_in(alice).get(f"/admin/exchange/indicator/{store.pk}/change/").content.decode()
    assert "13 active sellers on 3 platform(s)" in html
    assert "links (6 counted; suppressed automatically above 10); each platform counts for at most 4" in html


def test_an_indicator_common_on_three_platforms_is_still_suppressed(acme, bazaar, hostile):
    submit(acme.client(), seller("a1", STORE, DOCK), *[seller(f"a{n}", STORE) for n in range(2, 6)])
    submit(bazaar.client(), seller("b1", STORE, DOCK), *[seller(f"b{n}", STORE) for n in range(2, 6)])
    assert ActorCluster.objects.live().count() == 1  # 4 + 4 counted: still linking
    submit(hostile.client(), *[seller(f"m{n}", STORE) for n in range(3)])
    assert ActorCluster.objects.live().count() == 0  # 4 + 4 + 3 = 11 counted over 3 platforms: a hub


@pytest.mark.parametrize("raw", ["0", "-2", "three"])
def test_a_malformed_hub_platform_divisor_stops_the_process_naming_it(raw):
    from tests.test_settings_parsing import PRODUCTION_ENV, _manage

    result = _manage({**PRODUCTION_ENV, "EXCHANGE_HUB_PLATFORM_DIVISOR": raw}, "check")
    assert result.returncode != 0
    assert "EXCHANGE_HUB_PLATFORM_DIVISOR must be an integer" in result.stderr
