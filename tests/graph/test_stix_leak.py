"""No platform's STIX (its TAXII collection, page by page, its manifest, objects by id, and its export made with
`export_stix --platform`) ever carries another platform's data: the canary world of the report leak test
(twelve platforms in randomly overlapping rings; every seller reference, platform name and cluster note a unique
canary) read through STIX instead of email. Every cross-platform cluster is also an exchange-wide advisory: a
partner's key gets a 404 on the advisories collection, which an exchange analyst's key reads in full."""

from __future__ import annotations

import json
import random
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import AnalystKey
from exchange.models import Indicator
from graph.actions import do_publish_advisory
from graph.models import ActorCluster, ClusterMember, ClusterStatus
from graph.taxii import ADVISORIES_COLLECTION_ID, TAXII_MEDIA_TYPE, collection_id
from tests.conftest import KeyedPlatform, make_analyst
from tests.graph.test_reports_leak import PLATFORMS, build_world

pytestmark = pytest.mark.django_db

TAXII: dict[str, Any] = {"HTTP_ACCEPT": TAXII_MEDIA_TYPE}


def collection_text(kp: KeyedPlatform) -> str:
    """All the platform can read over TAXII: every page of objects (small pages) and manifest, each object by
    its id, and the discovery resources."""
    client = kp.client()
    base = f"/taxii2/api1/collections/{collection_id(kp.platform)}"
    texts: list[str] = []
    ids: list[str] = []
    for endpoint in ("objects", "manifest"):
        url = f"{base}/{endpoint}/?limit=7"
        while url:
            response = client.get(url, **TAXII)
            assert response.status_code == 200, response.content
            texts.append(response.content.decode())
            body = response.json()
            ids += [o["id"] for o in body.get("objects", []) if endpoint == "objects"]
            url = f"{base}/{endpoint}/?limit=7&next={body['next']}" if body["more"] else ""
    for object_id in ids:
        texts.append(client.get(f"{base}/objects/{object_id}/", **TAXII).content.decode())
    for path in ("/taxii2/", "/taxii2/api1/", "/taxii2/api1/collections/", f"{base}/"):
        texts.append(client.get(path, **TAXII).content.decode())
    advisories = f"/taxii2/api1/collections/{ADVISORIES_COLLECTION_ID}"
    for path in ("/", "/objects/", "/manifest/", *(f"/objects/{object_id}/" for object_id in ids)):
        response = client.get(advisories + path, **TAXII)
        assert response.status_code == 404, (path, response.status_code)
        texts.append(response.content.decode())
    return "\n".join(texts)


def publish_every_cross_platform_cluster() -> str:
    """Every live cross-platform cluster confirmed and published; the text of the advisories collection as an
    exchange analyst's key reads it."""
    clusters = ActorCluster.objects.live().cross_platform()
    clusters.update(status=ClusterStatus.CONFIRMED)
    for cluster in clusters:
        do_publish_advisory(cluster, "alice")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AnalystKey.generate(make_analyst('alice', None))[1]}")
    response = client.get(f"/taxii2/api1/collections/{ADVISORIES_COLLECTION_ID}/objects/?limit=1000", **TAXII)
    assert response.status_code == 200 and not response.json()["more"]
    return response.content.decode()


def export_text(kp: KeyedPlatform) -> str:
    out = StringIO()
    call_command("export_stix", "-", "--platform", kp.platform.slug, stdout=out)
    return out.getvalue()


def co_clustered(n: int, platforms: list[KeyedPlatform]) -> set[int]:
    """The platforms sharing a live cluster with platform n (whose names it may see when names are revealed)."""
    clusters = ClusterMember.objects.filter(
        seller__platform=platforms[n].platform, cluster__dissolved_at__isnull=True
    ).values("cluster_id")
    slugs = set(
        ClusterMember.objects.filter(cluster_id__in=clusters).values_list("seller__platform__slug", flat=True)
    )
    return {int(slug.removeprefix("p")) for slug in slugs}


@pytest.mark.parametrize("reveal", [False, True])
def test_no_stix_or_taxii_answer_contains_another_platforms_canary(reveal: bool) -> None:
    with override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=reveal):
        platforms, hashes = build_world(random.Random(3))
        tokens = list(Indicator.objects.values_list("token", flat=True))
        in_full = publish_every_cross_platform_cluster()
        # Positive control: the advisories name the sellers of many platforms.
        assert sum(f"CANARY-p{n:02d}-" in in_full for n in range(PLATFORMS)) > PLATFORMS // 2
        secrets = [kp.secret for kp in platforms] + [kp.key.lookup for kp in platforms]
        shared = 0
        for n, kp in enumerate(platforms):
            partners = co_clustered(n, platforms)
            for text in (collection_text(kp), export_text(kp)):
                for other in range(PLATFORMS):
                    if other == n:
                        continue
                    assert f"CANARY-p{other:02d}-" not in text, (n, other)
                    if not reveal or other not in partners:
                        assert f"Mart-p{other:02d}-Canary" not in text, (n, other)
                assert "NOTECANARY" not in text
                assert not any(token in text for token in tokens)
                assert not any(h in text for h in hashes)
                assert not any(secret in text for secret in secrets)
                if partners - {n}:
                    # Positive control: its own sellers are there, and (revealed) a partner's name.
                    assert f"CANARY-p{n:02d}-" in text
                    if reveal:
                        assert any(f"Mart-p{o:02d}-Canary" in text for o in partners - {n})
            shared += bool(partners - {n})
            assert json.loads(export_text(kp))["type"] == "bundle"
        assert shared > PLATFORMS // 2  # most platforms share a ring: the test is not vacuous
