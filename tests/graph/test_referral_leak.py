"""No partner analyst's referral package ever carries another platform's data: the canary world of the report
leak test (twelve platforms in randomly overlapping rings; every seller reference, platform name and cluster
note a unique canary), read through referral packages (the PDF's text, cluster.json, the CSVs and the
manifest) instead of email."""

from __future__ import annotations

import io
import random
import zipfile

import pypdf
import pytest
from django.test import override_settings

from exchange.models import Indicator
from graph.models import ActorCluster
from tests.admin_world import logged_in
from tests.conftest import make_analyst
from tests.graph.test_reports_leak import PLATFORMS, build_world
from tests.graph.test_stix_leak import co_clustered

pytestmark = pytest.mark.django_db

PER_PLATFORM = 2  # packages per platform: its largest clusters (a PDF takes a fraction of a second)


def package_text(content: bytes) -> str:
    """Everything in a package a reader can see: the PDF's text, and every other file as text."""
    archive = zipfile.ZipFile(io.BytesIO(content))
    texts = []
    for name in archive.namelist():
        data = archive.read(name)
        if name.endswith(".pdf"):
            reader = pypdf.PdfReader(io.BytesIO(data))
            text = "\n".join(page.extract_text() for page in reader.pages)
            texts += [text, "".join(text.split())]  # and without white space: a wrapped reference counts
        else:
            texts.append(data.decode())
    return "\n".join(texts)


@pytest.mark.parametrize("reveal", [False, True])
def test_no_partner_analysts_referral_package_contains_another_platforms_canary(reveal: bool) -> None:
    with override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=reveal):
        platforms, hashes = build_world(random.Random(5))
        tokens = list(Indicator.objects.values_list("token", flat=True))
        secrets = [kp.secret for kp in platforms] + [kp.key.lookup for kp in platforms]
        shared = 0
        for n, kp in enumerate(platforms):
            client = logged_in(make_analyst(f"analyst-p{n:02d}", kp.platform))
            clusters = (
                ActorCluster.objects.live()
                .containing_platform(kp.platform)
                .order_by("-platform_count", "-size", "id")[:PER_PLATFORM]
            )
            partners = co_clustered(n, platforms)
            for cluster in clusters:
                response = client.post(f"/admin/graph/actorcluster/{cluster.ref}/referral/")
                assert response.status_code == 200, response.content[:300]
                text = package_text(response.content)
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
                # Positive control: its own sellers are there, and (revealed) a co-member's platform name.
                assert f"CANARY-p{n:02d}-" in text
                if cluster.platform_count > 1:
                    shared += 1
                    if reveal:
                        assert any(f"Mart-p{o:02d}-Canary" in text for o in partners - {n})
        assert shared > PLATFORMS // 2  # most packages are of shared clusters: the test is not vacuous
