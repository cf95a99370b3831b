"""`manage.py import_stix`: a brand's STIX bundle of counterfeit storefront indicators becomes reports of an
external-feed platform, through the partner API's validation and storage; all or nothing, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import stix2
from django.core.management import CommandError, call_command

from accounts.models import AuditEntry
from exchange.models import Indicator, Seller, Sighting, Submission
from tests.builders import seller, submit, th
from tests.conftest import KeyedPlatform, make_platform

pytestmark = pytest.mark.django_db

VALID_FROM = datetime.now(UTC) - timedelta(days=3)


def indicator(pattern: str, **extra: object) -> stix2.Indicator:
    return stix2.Indicator(pattern=pattern, pattern_type="stix", valid_from=VALID_FROM, **extra)


def write(tmp_path: Path, *objects: object, name: str = "feed.json") -> Path:
    path = tmp_path / name
    path.write_text(stix2.Bundle(*objects, allow_custom=True).serialize())
    return path


@pytest.fixture
def feed(db: None) -> KeyedPlatform:
    return make_platform("brand-feed", "Brand X counterfeit storefronts")


def run(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("import_stix", str(path), "--platform", "brand-feed", *args, stdout=out)
    return out.getvalue()


def test_a_brands_storefront_list_becomes_suspected_reports_of_the_feed(feed, acme, tmp_path):
    shop = indicator("[domain-name:value = 'fake-shop.com']")
    url = indicator("[url:value = 'https://www.cheap-bags.net/listing/42']")
    mail_ = indicator("[email-addr:value = 'sales@cheap-bags.net']")
    revoked = indicator("[domain-name:value = 'retired.com']", revoked=True)
    path = write(tmp_path, shop, url, mail_, revoked)
    assert "Imported 3 indicator(s)" in run(path)

    sellers = Seller.objects.filter(platform=feed.platform).order_by("seller_ref")
    assert sorted(s.seller_ref for s in sellers) == sorted([shop.id, url.id, mail_.id])
    assert {s.status for s in sellers} == {"suspected"}
    kinds = sorted(Sighting.objects.filter(seller__in=sellers).values_list("indicator__kind", flat=True))
    assert kinds == ["email", "website_domain", "website_domain"]

    # The stored tokens are the partner API's: Acme's report of the same domain and email shares them, so
    # acme's seller links with the feed's (one strong indicator is enough).
    assert submit(acme.client(), seller("acme-1", ("email", "sales@cheap-bags.net"))).status_code == 201
    shared = Sighting.objects.filter(seller__seller_ref="acme-1").get().indicator
    assert Sighting.objects.filter(indicator=shared, seller__platform=feed.platform).count() == 1
    tokens = set(Indicator.objects.values_list("token", flat=True))
    assert th("website_domain", "fake-shop.com") not in tokens  # keyed tokens only, as for API reports

    (audit,) = AuditEntry.objects.filter(action="stix_import")
    assert audit.details["indicators"] == 3 and audit.details["sellers_created"] == 3


def test_the_same_bundle_twice_is_stored_once(feed, tmp_path):
    path = write(tmp_path, indicator("[domain-name:value = 'fake-shop.com']"))
    run(path)
    submissions = Submission.objects.count()
    assert "(0 new seller(s))" in run(path)
    assert Submission.objects.count() == submissions and Seller.objects.count() == 1


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("[domain-name:value = 'a.com' OR domain-name:value = 'b.com']", "only STIX patterns"),
        ("[file:hashes.'SHA-256' = '" + "a" * 64 + "']", "only STIX patterns"),
        ("[email-addr:value = 'not an address']", "email"),
    ],
)
def test_a_bad_indicator_refuses_the_whole_bundle(feed, tmp_path, pattern, why):
    good = indicator("[domain-name:value = 'fake-shop.com']")
    bad = indicator(pattern)
    with pytest.raises(CommandError) as refused:
        run(write(tmp_path, good, bad))
    assert bad.id in str(refused.value) and why in str(refused.value)
    assert not Seller.objects.exists()


def test_what_is_not_a_stix_bundle_is_refused(feed, tmp_path):
    path = tmp_path / "not.json"
    path.write_text(json.dumps({"type": "bundle", "id": "bundle--x", "objects": [{"type": "indicator"}]}))
    with pytest.raises(CommandError, match=r"not a valid STIX 2\.1 bundle"):
        run(path)
    empty = write(tmp_path, stix2.Identity(name="Brand X", identity_class="organization"), name="empty.json")
    with pytest.raises(CommandError, match="no indicator"):
        run(empty)
    with pytest.raises(CommandError, match="No such platform"):
        call_command("import_stix", str(empty), "--platform", "nobody")
