"""Reused product photos through the API (kind `image`, exchange.similarity): stored by PDQ hash, grouped into
near-duplicate groups, linked through the group like any weak indicator; bad input refused whole."""

from __future__ import annotations

import random
from collections.abc import Iterable
from functools import cache
from typing import Any

import pytest

from exchange.models import Indicator, Linking, Seller, SellerItem, Sighting, SimilarItem
from exchange.perceptual import PdqVariants, chunk_keys, hamming, pdq_variants_image, probe_keys
from fixtures import images
from graph.models import ClusterMember
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db


@cache
def photo(seed: int, edit: str = "") -> PdqVariants:
    """The PDQ hash and crops of a synthetic product photo, optionally edited as counterfeiters do."""
    image = images.product_photo(seed, "handbag")
    rng = random.Random(seed * 7 + len(edit))
    if edit == "crop":
        image = images.crop(image, rng, 0.05)
    elif edit == "edited":  # crop, resize, text overlay and JPEG 60 at once
        image = images.edited(image, rng)
    return pdq_variants_image(image)


def image_indicator(variants: PdqVariants) -> dict[str, Any]:
    return {
        "kind": "image",
        "hash": variants.full.hex,
        "quality": variants.full.quality,
        "crops": list(variants.crops),
    }


def raw(hash_hex: str, quality: int = 90, crops: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"kind": "image", "hash": hash_hex, "quality": quality, "crops": list(crops)}


def with_images(ref: str, *photos: dict[str, Any], store: str | None = None) -> dict[str, Any]:
    body = seller(ref, *([("store_name", store)] if store else []))
    body["indicators"] += list(photos)
    return body


def cluster_of(ref: str) -> int | None:
    member = ClusterMember.objects.filter(seller__seller_ref=ref).first()
    return member.cluster_id if member else None


def flipped(hash_hex: str, bits: Iterable[int]) -> str:
    value = int(hash_hex, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:064x}"


BASE = f"{random.Random(13).getrandbits(256):064x}"


def test_an_edited_copy_of_a_photo_plus_a_store_name_links_two_platforms(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    assert (
        submit(acme.client(), with_images("acme-1", image_indicator(photo(1)), store="Lux Bags")).status_code
        == 201
    )
    copy = image_indicator(photo(1, "edited"))
    response = submit(bazaar.client(), with_images("bz-1", copy, store="Lux Bags"))
    assert response.status_code == 201, response.content
    assert response.json()["sightings_created"] == 2
    group = Indicator.objects.get(kind="image")  # one group: the copy joined the original's
    assert SimilarItem.objects.filter(group=group).count() == 2
    assert group.holders == 2 and group.token not in (photo(1).full.hex, copy["hash"])
    assert cluster_of("acme-1") is not None and cluster_of("acme-1") == cluster_of("bz-1")


def test_a_photo_alone_is_weak_and_links_nobody(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(acme.client(), with_images("acme-1", image_indicator(photo(2))))
    submit(bazaar.client(), with_images("bz-1", image_indicator(photo(2, "crop"))))
    assert Indicator.objects.filter(kind="image").count() == 1  # the same group...
    assert cluster_of("acme-1") is None or cluster_of("acme-1") != cluster_of("bz-1")  # ...but one weak kind


def test_a_cropped_copy_is_found_through_the_crop_variants(acme: KeyedPlatform, bazaar: KeyedPlatform):
    original, cropped = photo(3), photo(3, "crop")
    submit(acme.client(), with_images("acme-1", image_indicator(original), store="Crop Shop"))
    submit(bazaar.client(), with_images("bz-1", image_indicator(cropped), store="Crop Shop"))
    assert Indicator.objects.filter(kind="image").count() == 1
    assert cluster_of("acme-1") == cluster_of("bz-1") is not None


def test_different_photos_stay_in_different_groups(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(acme.client(), with_images("acme-1", image_indicator(photo(4)), store="Same Store"))
    submit(bazaar.client(), with_images("bz-1", image_indicator(photo(5)), store="Same Store"))
    assert Indicator.objects.filter(kind="image").count() == 2
    assert hamming(photo(4).full.hex, photo(5).full.hex) > 31
    assert cluster_of("acme-1") is None or cluster_of("acme-1") != cluster_of("bz-1")


def test_a_photo_between_two_groups_merges_them_and_relinks_their_sellers(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    far = flipped(BASE, range(40))  # 40 bits from BASE: two groups
    middle = flipped(BASE, range(20))  # 20 bits from each
    submit(acme.client(), with_images("acme-1", raw(BASE), store="Bridge Bags"))
    submit(bazaar.client(), with_images("bz-1", raw(far), store="Bridge Bags"))
    first, second = Indicator.objects.filter(kind="image").order_by("pk")
    Indicator.objects.filter(pk=second.pk).update(linking=Linking.COMMON, linking_reason="stock photo")
    assert cluster_of("acme-1") is None or cluster_of("acme-1") != cluster_of("bz-1")

    assert submit(acme.client(), with_images("acme-2", raw(middle))).status_code == 201

    group = Indicator.objects.get(kind="image")
    assert group.pk == first.pk and group.holders == 3
    assert set(SimilarItem.objects.values_list("group_id", flat=True)) == {first.pk}
    assert set(Sighting.objects.filter(indicator=group).values_list("seller__seller_ref", flat=True)) == {
        "acme-1",
        "acme-2",
        "bz-1",
    }
    assert group.linking == Linking.COMMON and "stock photo" in group.linking_reason  # common stays common


def test_the_same_photo_again_adds_nothing(acme: KeyedPlatform):
    body = with_images("acme-1", raw(BASE))
    assert submit(acme.client(), body).status_code == 201
    again = submit(acme.client(), body)
    assert again.status_code == 201 and again.json()["sightings_created"] == 0
    assert (SimilarItem.objects.count(), SellerItem.objects.count(), Sighting.objects.count()) == (1, 1, 1)


@pytest.mark.parametrize(
    ("indicator", "field", "says"),
    [
        (raw(BASE[:-1]), "hash", "64 hex characters"),
        (raw(BASE.upper()), "hash", "lowercase"),
        ({"kind": "image", "quality": 90}, "hash", "is required"),
        (raw(BASE, quality=40), "quality", "too unreliable"),
        ({"kind": "image", "hash": BASE}, "quality", "is required"),
        (raw(BASE, quality="high"), "quality", "integer"),  # type: ignore[arg-type]
        (raw(BASE, quality=True), "quality", "integer"),
        (raw(BASE, quality=101), "quality", "integer"),
        ({**raw(BASE), "crops": "all"}, "crops", "list"),
        (raw(BASE, crops=(BASE,) * 19), "crops", "at most 18"),
        (raw(BASE, crops=(BASE, "x" * 64)), "crops[1]", "hexadecimal"),
        ({**raw(BASE), "photo": "data:image/png;base64,AAAA"}, "photo", "unknown field"),
    ],
)
def test_a_bad_image_indicator_is_refused_naming_the_field_and_nothing_is_stored(
    acme: KeyedPlatform, indicator: dict[str, Any], field: str, says: str
):
    good = with_images("acme-ok", raw(flipped(BASE, range(100, 160))))
    response = submit(acme.client(), good, with_images("acme-bad", indicator))
    assert response.status_code == 400
    errors = response.json()["error"]["details"]
    assert any(says in message for message in errors[f"sellers[1].indicators[0].{field}"]), errors
    assert not Seller.objects.exists() and not SimilarItem.objects.exists() and not Indicator.objects.exists()


def test_the_same_photo_twice_for_one_seller_is_a_duplicate(acme: KeyedPlatform):
    response = submit(acme.client(), with_images("acme-1", raw(BASE), raw(BASE, quality=80)))
    assert response.status_code == 400
    assert "duplicate of indicators[0]" in str(response.json())


def lookup(kp: KeyedPlatform, *indicators: dict[str, Any]) -> Any:
    response = kp.client().post("/api/v1/lookups/", {"indicators": list(indicators)}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_a_lookup_by_photo_finds_other_platforms_sellers_with_a_near_copy(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    submit(acme.client(), with_images("acme-1", image_indicator(photo(6)), store="Look Store"))
    submit(bazaar.client(), with_images("bz-1", image_indicator(photo(6, "edited")), store="Look Store"))
    cluster = ClusterMember.objects.get(seller__seller_ref="acme-1").cluster

    near, other = image_indicator(photo(6, "crop")), image_indicator(photo(7))
    first, second = lookup(third, near, other)
    assert first["kind"] == "image" and first["match"] is True
    assert (first["other_platforms"], first["reported_sellers"], first["cluster"]) == (2, 2, cluster.ref)
    assert first["matched_kinds"] == ["image"]
    assert second == {**second, "kind": "image", "match": False, "other_platforms": 0, "cluster": None}
    assert SimilarItem.objects.count() == 2  # a lookup stores nothing of the photo
    own = lookup(acme, near)[0]
    assert own["match"] is True and own["other_platforms"] == 1  # its own seller is not a match


def test_a_photo_between_two_groups_is_looked_up_in_both_and_each_seller_counted_once(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    submit(acme.client(), with_images("acme-1", raw(BASE), raw(flipped(BASE, range(200, 256)))))
    submit(bazaar.client(), with_images("bz-1", raw(flipped(BASE, range(40)))))
    assert Indicator.objects.filter(kind="image").count() == 3
    [result] = lookup(third, raw(flipped(BASE, range(20))))
    assert result["match"] is True and result["reported_sellers"] == 2 and result["other_platforms"] == 2
    assert Indicator.objects.filter(kind="image").count() == 3  # nothing merged by a lookup


def test_a_lookups_photos_are_searched_together_in_as_many_queries_as_one(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """Ten photos in one lookup cost the database what one does (one refresh, one read of matched rows, one
    read of the groups' tokens), and each still gets its own answer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    submit(acme.client(), with_images("acme-1", raw(BASE), store="Look Store"))
    submit(bazaar.client(), with_images("bz-1", raw(flipped(BASE, range(10))), store="Look Store"))
    lookup(third, raw(flipped(BASE, range(5))))  # the index is built and the statement prepared
    counts = []
    for photos in (
        [raw(flipped(BASE, range(5)))],
        [raw(flipped(BASE, range(5)))] + [raw(photo_hex(n)) for n in range(9)],
    ):
        with CaptureQueriesContext(connection) as queries:
            results = lookup(third, *photos)
        counts.append(len(queries))
        assert results[0]["match"] is True and results[0]["reported_sellers"] == 2
        assert all(result["match"] is False for result in results[1:])
    assert counts[0] == counts[1]


def photo_hex(n: int) -> str:
    """An unrelated 256-bit hash (seeded)."""
    return random.Random(f"unrelated {n}").getrandbits(256).to_bytes(32, "big").hex()


def test_a_bad_photo_in_a_lookup_is_refused_naming_the_field(acme: KeyedPlatform):
    response = acme.client().post("/api/v1/lookups/", {"indicators": [raw(BASE, quality=10)]}, format="json")
    assert response.status_code == 400
    assert "indicators[0].quality" in response.json()["error"]["details"]


def test_probe_keys_find_every_hash_within_the_threshold():
    rng = random.Random(5)
    for _ in range(200):
        distance = rng.randrange(0, 32)
        other = flipped(BASE, rng.sample(range(256), distance))
        assert set(chunk_keys(other)) & probe_keys(BASE, 31), distance


def test_the_evidence_chain_names_a_photo_link_with_its_distance(acme: KeyedPlatform, bazaar: KeyedPlatform):
    from accounts.scoping import EVERYTHING, Scope
    from graph.explain import explain
    from graph.models import ActorCluster

    near = flipped(BASE, range(12))
    submit(acme.client(), with_images("acme-1", raw(BASE), store="Chain Store"))
    submit(bazaar.client(), with_images("bz-1", raw(near), store="Chain Store"))
    cluster = ActorCluster.objects.live().get()
    a, b = (Seller.objects.get(seller_ref=ref).pk for ref in ("acme-1", "bz-1"))
    for scope in (EVERYTHING, Scope(everything=False, platform_id=acme.platform.pk)):
        [step] = explain(cluster, scope).chain(a, b)
        notes = {row.kind: note for row, note in step.noted}
        assert notes == {
            "image": "near-duplicate photos, 12 of 256 bits apart (a match is 31 or fewer)",
            "store_name": "",
        }


def test_the_cluster_page_shows_the_photo_distance(
    acme: KeyedPlatform, bazaar: KeyedPlatform, admin_client: Any
):
    from graph.models import ActorCluster

    submit(acme.client(), with_images("acme-1", raw(BASE), store="Page Store"))
    submit(bazaar.client(), with_images("bz-1", raw(flipped(BASE, range(7))), store="Page Store"))
    cluster = ActorCluster.objects.live().get()
    page = admin_client.get(f"/admin/graph/actorcluster/{cluster.pk}/change/").content.decode()
    assert "near-duplicate photos, 7 of 256 bits apart" in page
    assert BASE not in page  # the photo's hash is not shown


def test_the_indicator_page_describes_a_photo_group_without_its_hashes(
    acme: KeyedPlatform, bazaar: KeyedPlatform, admin_client: Any
):
    submit(acme.client(), with_images("acme-1", raw(BASE)))
    submit(bazaar.client(), with_images("bz-1", raw(flipped(BASE, range(9)))))
    group = Indicator.objects.get(kind="image")
    page = admin_client.get(f"/admin/exchange/indicator/{group.pk}/change/").content.decode()
    assert (
        "2 distinct image item(s) reported by 2 seller(s); its least near two: near-duplicate photos, 9 of 256"
        in page
    )
    assert BASE not in page


def test_a_stock_photo_used_by_many_sellers_is_a_hub_and_links_nobody(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """Fourteen sellers on four platforms reuse one brand shot (4, 4, 3 and 3; each platform counts for at
    most ceil(10 / 3) = 4): 14 counted holders are more than the kind's threshold of 10, so the group is
    suppressed, and the two sellers that also share a store name are no longer linked by two weak kinds."""
    from tests.conftest import make_platform

    fourth = make_platform("fourth", "Fourth Market")
    stock = raw(BASE)
    submit(acme.client(), with_images("acme-0", stock, store="Twin Store"))
    submit(bazaar.client(), with_images("bz-0", raw(flipped(BASE, range(3))), store="Twin Store"))
    assert cluster_of("acme-0") == cluster_of("bz-0") is not None
    for kp in (acme, bazaar, third, fourth):
        for n in range(1, 4):
            submit(kp.client(), with_images(f"{kp.platform.slug}-{n}", raw(flipped(BASE, range(n, n + 5)))))
    group = Indicator.objects.get(kind="image")
    assert group.holders == 14
    assert cluster_of("acme-0") is None or cluster_of("acme-0") != cluster_of("bz-0")


def test_the_vectorised_scores_equal_the_variant_distance_pair_by_pair():
    from exchange.matching import MATCHERS, Item

    rule = MATCHERS["image"]

    def item(variants: PdqVariants, crops: int = 18) -> Item:
        return Item("image", variants.full.hex, {"quality": 90, "crops": list(variants.crops[:crops])})

    query = item(photo(1, "edited"))
    stored = [item(photo(1)), item(photo(1, "crop"), crops=5), item(photo(4), crops=0), item(photo(5))]
    assert rule.scores(query, stored) == [rule.score(query, other) for other in stored]
    assert rule.scores(query, []) == []


@pytest.mark.parametrize("kind", [{"image": 1}, ["image"], 7, None])
def test_a_kind_that_is_not_a_string_is_a_400_in_submissions_and_lookups(acme: KeyedPlatform, kind: Any):
    """Found by schemathesis: a dict as the kind was looked up among the similarity kinds (a 500)."""
    item = {**raw(BASE), "kind": kind}
    response = acme.client().post("/api/v1/lookups/", {"indicators": [item]}, format="json")
    assert response.status_code == 400 and "indicators[0].kind" in response.json()["error"]["details"]
    response = submit(acme.client(), with_images("acme-1", item))
    assert (
        response.status_code == 400 and "sellers[0].indicators[0].kind" in response.json()["error"]["details"]
    )


def test_near_copies_within_one_submission_form_one_group_through_each_other(acme: KeyedPlatform):
    """One batch: the photos are grouped against each other too (BASE, 20 bits off, 40 bits off: a chain)."""
    response = submit(
        acme.client(),
        with_images("acme-1", raw(BASE)),
        with_images("acme-2", raw(flipped(BASE, range(20)))),
        with_images("acme-3", raw(flipped(BASE, range(40)))),
        with_images("acme-4", raw(flipped(BASE, range(100, 200)))),
    )
    assert response.status_code == 201, response.content
    assert Indicator.objects.filter(kind="image").count() == 2
    assert SimilarItem.objects.values("group").distinct().count() == 2
    chain = SimilarItem.objects.exclude(value=flipped(BASE, range(100, 200)))
    assert chain.values("group").distinct().count() == 1
