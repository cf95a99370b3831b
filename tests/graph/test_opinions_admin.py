"""Opinions in the investigator admin (issue 15): the cluster list's filter, the opinions on the cluster page
(counts for everyone, who for exchange analysts), a false positive's seller gone from the partner analyst's
pages, the exchange analysts' review queue, the time to action per platform and the transparency report's
feedback rows.

The world (tests/admin_world.py): the ring acme-1, acme-2, baz-1, baz-2 across Acme and Bazaar; acme-3 ~ acme-4
on Acme alone; baz-3 ~ baz-4 on Bazaar alone; loners acme-solo and baz-solo.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from accounts.models import AuditEntry
from exchange.models import Seller
from graph.models import ActorCluster, Opinion, Review
from graph.opinions import distribution
from graph.transparency import Median, MedianTally, Tally, parse_period
from graph.transparency_data import FIGURES, build_report
from tests import builders
from tests.admin_world import AdminWorld, build, logged_in
from tests.builders import th
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

CLUSTERS = "/admin/graph/actorcluster/"
OPINIONS = "/admin/graph/opinion/"
TIME_TO_ACTION = "/admin/graph/opinion/time-to-action/"


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> AdminWorld:
    return build(acme, bazaar)


def give(kp: KeyedPlatform, cluster: ActorCluster, **body: Any) -> Any:
    response = kp.client().post(f"/api/v1/clusters/{cluster.ref}/opinions/", body, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def page(client: Client, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def listed_refs(html: str) -> set[str]:
    return set(re.findall(r'href="/admin/graph/actorcluster/(ac_[0-9a-f]+)/change/', html))


def listed_ids(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'href="/admin/graph/actorcluster/(\d+)/change/', html)}


def opinions_section(html: str) -> str:
    return html[html.index('id="opinions"') : html.index('id="history"')]


# --- the cluster list and the cluster page ------------------------------------------------------------------


def test_the_cluster_list_filters_clusters_with_false_positive_opinions(world: AdminWorld, acme, alice, bob):
    give(acme, world.ring, opinion="false_positive", seller_ref="acme-2")
    give(acme, world.acme_only, opinion="seen_too")
    exchange = logged_in(alice)
    assert listed_ids(page(exchange, CLUSTERS, false_positive="yes")) == {world.ring.pk}
    assert listed_ids(page(exchange, CLUSTERS, false_positive="pending")) == {world.ring.pk}
    assert listed_ids(page(exchange, CLUSTERS)) == {world.ring.pk, world.acme_only.pk, world.bazaar_only.pk}
    # Partner analysts have the filter too (everyone sees the counts it rests on).
    assert listed_refs(page(logged_in(bob), CLUSTERS, false_positive="yes")) == {world.ring.ref}
    Opinion.objects.filter(kind="false_positive").update(review=Review.REJECTED)
    assert listed_ids(page(exchange, CLUSTERS, false_positive="pending")) == set()
    assert listed_ids(page(exchange, CLUSTERS, false_positive="yes")) == {world.ring.pk}


def test_the_cluster_page_shows_counts_to_everyone_and_who_to_exchange_analysts(
    world: AdminWorld, acme, bazaar, alice, bob
):
    give(acme, world.ring, opinion="seen_too", note="acme note")
    give(bazaar, world.ring, opinion="seen_too", note="bazaar note")
    give(bazaar, world.ring, opinion="disputed", seller_ref="baz-2")

    exchange = opinions_section(page(logged_in(alice), f"{CLUSTERS}{world.ring.pk}/change/"))
    assert "seen too: 2" in exchange and "disputed: 1" in exchange and "false positive: 0" in exchange
    for who in ("Acme Market", "Bazaar North", "acme note", "bazaar note", "baz-2", bazaar.key.prefix):
        assert who in exchange, who

    partner = page(logged_in(bob), f"{CLUSTERS}{world.ring.ref}/change/")
    section = opinions_section(partner)
    assert "seen too: 2" in section and "disputed: 1" in section
    assert "acme note" in section and acme.key.prefix in section  # their own platform's
    for other in ("bazaar note", "baz-2", bazaar.key.prefix, "Bazaar North"):
        assert other not in partner, other


def test_a_false_positive_takes_the_seller_off_the_partner_analysts_pages(
    world: AdminWorld, acme, alice, bob
):
    give(acme, world.ring, opinion="false_positive", seller_ref="acme-2")
    partner = logged_in(bob)
    ring_page = page(partner, f"{CLUSTERS}{world.ring.ref}/change/")
    members = ring_page[ring_page.index('id="members"') : ring_page.index('id="indicators"')]
    assert "acme-1" in members and "acme-2" not in members
    # The seller's own page and the seller list show no cluster for it.
    acme_2 = Seller.objects.get(seller_ref="acme-2")
    assert world.ring.ref not in page(partner, f"/admin/exchange/seller/{acme_2.pk}/change/")
    sellers = page(partner, "/admin/exchange/seller/")
    row_2 = sellers[sellers.index(">acme-2<") :].split("</tr>")[0]
    row_1 = sellers[sellers.index(">acme-1<") :].split("</tr>")[0]
    assert world.ring.ref not in row_2 and world.ring.ref in row_1
    # The exchange analyst still sees every member.
    exchange = page(logged_in(alice), f"{CLUSTERS}{world.ring.pk}/change/")
    assert "acme-2" in exchange[exchange.index('id="members"') : exchange.index('id="indicators"')]

    # Both of Acme's sellers detached: the ring is not Acme's any more.
    give(acme, world.ring, opinion="false_positive", seller_ref="acme-1")
    assert world.ring.ref not in listed_refs(page(partner, CLUSTERS))
    assert partner.get(f"{CLUSTERS}{world.ring.ref}/change/").status_code == 404


# --- the review queue ---------------------------------------------------------------------------------------


def test_exchange_analysts_accept_or_reject_pending_false_positives(
    world: AdminWorld, acme, bazaar, alice, bob
):
    first = give(acme, world.ring, opinion="false_positive", seller_ref="acme-2")["id"]
    second = give(bazaar, world.ring, opinion="false_positive", seller_ref="baz-2")["id"]
    give(acme, world.ring, opinion="seen_too")
    exchange = logged_in(alice)
    queue = page(exchange, OPINIONS, review="pending")
    assert "2 false positive(s) pending review" in queue
    assert f"{OPINIONS}{first}/change/" in queue and f"{OPINIONS}{second}/change/" in queue

    # A partner analyst has no review action: posting one changes nothing.
    response = logged_in(bob).post(OPINIONS, {"action": "accept", "_selected_action": [first]})
    assert response.status_code in (200, 302)
    assert Opinion.objects.get(pk=first).review == Review.PENDING

    exchange.post(OPINIONS, {"action": "accept", "_selected_action": [first]})
    exchange.post(OPINIONS, {"action": "reject", "_selected_action": [second]})
    accepted, rejected = Opinion.objects.get(pk=first), Opinion.objects.get(pk=second)
    assert (accepted.review, accepted.reviewed_by_id) == (Review.ACCEPTED, alice.pk)
    assert (rejected.review, rejected.reviewed_by_id) == (Review.REJECTED, alice.pk)
    assert AuditEntry.objects.get(action="false_positive_accepted").object_id == str(first)
    assert AuditEntry.objects.get(action="false_positive_rejected").object_id == str(second)
    # Accepted: acme-2 stays out for Acme; rejected: baz-2 is Bazaar's again.
    acme_view = acme.client().get(f"/api/v1/clusters/{world.ring.ref}/").json()
    bazaar_view = bazaar.client().get(f"/api/v1/clusters/{world.ring.ref}/").json()
    assert [s["seller_ref"] for s in acme_view["your_sellers"]] == ["acme-1"]
    assert [s["seller_ref"] for s in bazaar_view["your_sellers"]] == ["baz-1", "baz-2"]
    assert "pending review" not in page(exchange, OPINIONS).split('id="changelist-filter"')[0]
    # Decided is decided: a second decision changes nothing.
    exchange.post(OPINIONS, {"action": "reject", "_selected_action": [first]})
    assert Opinion.objects.get(pk=first).review == Review.ACCEPTED


def test_partner_analysts_see_their_own_platforms_opinions_only(world: AdminWorld, acme, bazaar, alice, bob):
    mine = give(acme, world.ring, opinion="false_positive", seller_ref="acme-2", note="acme note")["id"]
    theirs = give(bazaar, world.ring, opinion="seen_too", note="bazaar note")["id"]
    logged_in(alice).post(OPINIONS, {"action": "accept", "_selected_action": [mine]})
    partner = logged_in(bob)
    listing = page(partner, OPINIONS)
    assert f"{OPINIONS}{mine}/change/" in listing and f"{OPINIONS}{theirs}/change/" not in listing
    own = page(partner, f"{OPINIONS}{mine}/change/")
    assert "acme note" in own and "accepted: the seller stays out" in own
    assert "alice" not in own  # which exchange analyst decided is the operator's to know
    assert "alice" in page(logged_in(alice), f"{OPINIONS}{mine}/change/")
    assert partner.get(f"{OPINIONS}{theirs}/change/").status_code == 404


# --- time to action -----------------------------------------------------------------------------------------

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_distribution_takes_the_median_the_90th_percentile_and_the_share_within_a_day():
    shown = distribution([2 * HOUR, 50 * HOUR, 6 * HOUR, 30 * HOUR])
    assert (shown.cases, shown.median, shown.p90, shown.within_day) == (4, 18 * HOUR, 44 * HOUR, 0.5)
    assert (shown.median_text, shown.p90_text, shown.within_day_text) == ("18.0 hours", "44.0 hours", "50%")
    one = distribution([3 * 24 * HOUR])
    assert (one.median, one.p90, one.p90_text) == (72 * HOUR, 72 * HOUR, "3.0 days")
    assert distribution([]).median_text == "–"


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The clock stands at NOW, and the builders report sellers a day before it."""
    monkeypatch.setattr(builders, "NOW", NOW)
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def acted(frozen: Any, acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform) -> AdminWorld:
    """Actions at known times after the first signals: Acme 2, 6, 30 and 50 hours after it reported its sellers
    ten days ago (and acme-1 once more, later: the same case); Bazaar 24 hours after it reported three days
    ago; Third 12 hours after a lookup five days ago showed it the ring."""
    world = build(acme, bazaar)
    reported = {"acme": NOW - timedelta(days=10), "bazaar": NOW - timedelta(days=3)}
    for slug, at in reported.items():
        Seller.objects.filter(platform__slug=slug).update(created_at=at)
    body = {"indicators": [{"kind": "tax_id", "hash": th("tax_id", "DE123456789")}]}
    assert third.client().post("/api/v1/lookups/", body, format="json").status_code == 200
    AuditEntry.objects.filter(action="lookup").update(created_at=NOW - timedelta(days=5))

    def action(
        kp: KeyedPlatform, cluster: ActorCluster, after: timedelta, since: datetime, **more: Any
    ) -> None:
        give(kp, cluster, opinion="actioned", acted_at=(since + after).isoformat(), **more)

    for ref, hours, cluster in (("acme-1", 2, world.ring), ("acme-2", 6, world.ring)):
        action(acme, cluster, hours * HOUR, reported["acme"], seller_ref=ref)
    for ref, hours in (("acme-3", 30), ("acme-4", 50)):
        action(acme, world.acme_only, hours * HOUR, reported["acme"], seller_ref=ref)
    action(acme, world.ring, 90 * HOUR, reported["acme"], seller_ref="acme-1")  # the same case again
    action(bazaar, world.ring, 24 * HOUR, reported["bazaar"], seller_ref="baz-1")
    action(third, world.ring, 12 * HOUR, NOW - timedelta(days=5))
    return world


def rows(html: str) -> dict[str, list[str]]:
    found = re.findall(r'data-platform="([a-z]+)">\s*<td>[^<]*</td>(.*?)</tr>', html, flags=re.S)
    return {slug: re.findall(r"<td[^>]*>([^<]*)</td>", cells) for slug, cells in found}


def test_the_time_to_action_page_shows_each_platforms_distribution(acted: AdminWorld, alice, bob):
    exchange = rows(page(logged_in(alice), TIME_TO_ACTION))
    assert exchange == {
        "acme": ["4", "18.0 hours", "44.0 hours", "50%"],
        "bazaar": ["1", "24.0 hours", "24.0 hours", "100%"],
        "third": ["1", "12.0 hours", "12.0 hours", "100%"],
    }
    partner_html = page(logged_in(bob), TIME_TO_ACTION)
    assert rows(partner_html) == {"acme": exchange["acme"]}
    assert "Bazaar North" not in partner_html and "Third Market" not in partner_html
    entry = AuditEntry.objects.filter(action="time_to_action_viewed").order_by("id").last()
    assert entry is not None and (entry.actor, entry.details) == ("bob", {"platforms": 1})


def test_the_transparency_report_counts_opinions_actions_and_time_to_action(
    acted: AdminWorld, acme, bazaar, third
):
    a, b, t = acme.platform.pk, bazaar.platform.pk, third.platform.pk
    period = parse_period("2026", NOW)
    raw = {figure.key: figure.compute(period) for figure in FIGURES if figure.compute}
    assert raw["feedback.opinions"] == {
        "seen_too": Tally(0, {}),
        "false_positive": Tally(0, {}),
        "disputed": Tally(0, {}),
        "actioned": Tally(7, {a: 5, b: 1, t: 1}),
    }
    # Clusters acted on: the ring (by all three) and Acme's own.
    assert raw["feedback.actions"] == Tally(2, {a: 2, b: 1, t: 1})
    assert raw["feedback.time_to_action"] == MedianTally(
        Median(18 / 24, 6), {a: Median(18 / 24, 4), b: Median(1.0, 1), t: Median(0.5, 1)}
    )
    # Published with the suppression rules: small counts and medians of fewer than 10 cases are hidden.
    report = build_report(period, [acme.platform])
    shown = {row.key: [cell.text for cell in row.cells] for row in report.rows}
    assert shown["feedback.opinions.actioned"][0] == "<10"
    assert shown["feedback.actions"] == ["<10", "<10"]
    assert shown["feedback.time_to_action"] == ["<10 cases", "<10 cases"]
    assert shown["feedback.appeals"][0] == "0"  # no appeal in this world
    # Outside the period: nothing.
    assert build_report(parse_period("2025", NOW), []).cell("feedback.actions").text == "0"


def test_a_median_over_ten_cases_is_published(frozen: Any, acme, bazaar):
    """Twelve cases (one per platform, cluster and seller, or without a seller): the consortium's median shows."""
    world = build(acme, bazaar)
    for kp, clusters, refs in (
        (
            acme,
            (world.ring, world.acme_only),
            {world.ring: ["acme-1", "acme-2"], world.acme_only: ["acme-3", "acme-4"]},
        ),
        (
            bazaar,
            (world.ring, world.bazaar_only),
            {world.ring: ["baz-1", "baz-2"], world.bazaar_only: ["baz-3", "baz-4"]},
        ),
    ):
        for cluster in clusters:
            for ref in [*refs[cluster], None]:
                more = {"seller_ref": ref} if ref else {}
                give(kp, cluster, opinion="actioned", acted_at=NOW.isoformat(), **more)
    report = build_report(parse_period("2026", NOW), [])
    assert report.cell("feedback.time_to_action").text == "0.0 days"
    # 12 actions, but 12 minus one platform's own 6 would tell that platform the other's 6: withheld (rule d).
    assert report.cell("feedback.opinions", "actioned").text == ">=10"
