"""Reused product photos (kind `image`): a submission's PDQ hashes stored, and grouped into near-duplicate groups.

A partner sends, per photo, the full photo's PDQ hash with its quality and its sub-crop variants
(exchange.contract, "image"); never the photo. The hash is not keyed: matching is by Hamming distance
(`exchange.perceptual.variant_distance`: the smallest distance between one photo's full hash and any hash of
the other, both ways), at most `EXCHANGE_IMAGE_MATCH_THRESHOLD` bits (31, PDQ's published default).

Groups. Every stored photo belongs to one near-duplicate group, and each group is one `Indicator` of kind
`image` (an opaque random token, no hash in it): a seller reported with a photo gets a `Sighting` of its
group. So the linking core, hub counting (a brand's own product shot is a hub like a forwarder's address),
marking a group common, the evidence chain and the reports treat a group like any indicator. A new photo
joins the group of the stored photos it matches; when it matches photos of several groups, they merge into
the oldest (their sightings move; a group marked common keeps the merged group common), and the sellers of
the merged groups are recomputed. Groups are the connected components of the "within the threshold" graph,
built up one photo at a time: two photos in one group may be further apart than the threshold, through a
photo between them, exactly as two sellers are linked through a third.

Search. The stored hashes (full and crops) are indexed by multi-index hashing (`ImageChunk`,
`exchange.perceptual.probe_keys`): a new photo's candidates are an index probe per key, then verified with
the full distance. Grouping takes a transaction-level lock on PostgreSQL, so two submissions with copies of
one photo cannot both start a group; SQLite serialises writers anyway.

`store_images` is the one writer, called by `exchange.ingest` inside the submission's transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count

from exchange.contract import IMAGE_KIND, IMAGE_MIN_QUALITY, MAX_IMAGE_CROPS
from exchange.models import ImageChunk, ImageHash, Indicator, Linking, SellerImage, Sighting
from exchange.perceptual import chunk_keys, is_pdq_hex, probe_keys, variant_distance

logger = logging.getLogger("exchange.images")

IMAGE_FIELDS = {"kind", "hash", "quality", "crops"}
# A fixed advisory lock key: "image groups" (PostgreSQL's pg_advisory_xact_lock takes a bigint).
GROUPING_LOCK = 0x1A6E_9809


@dataclass(frozen=True, slots=True)
class ImageIn:
    """One photo as a partner sent it (validated): full hash, quality, crop hashes."""

    hash: str
    quality: int
    crops: tuple[str, ...] = ()

    @property
    def hashes(self) -> tuple[str, ...]:
        return (self.hash, *self.crops)


def _hex_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string of 64 lowercase hex characters (a PDQ hash)"
    if len(value) != 64:
        return f"must be 64 hex characters (a 256-bit PDQ hash), got {len(value)} characters"
    if not is_pdq_hex(value):
        return "must be lowercase hexadecimal (0-9, a-f)"
    return None


def image_problems(item: dict[str, Any], path: str, errors: dict[str, list[str]]) -> ImageIn | None:
    """The photo of an `image` indicator (`item` has kind "image"), or None with `errors` naming each field."""
    before = len(errors)
    unknown = sorted(set(item) - IMAGE_FIELDS)
    if unknown:
        errors[f"{path}.{unknown[0]}"] = [
            "unknown field; an image indicator has 'kind', 'hash', 'quality' and 'crops'"
        ]
    value = item.get("hash")
    problem = "is required" if value is None else _hex_problem(value)
    if problem:
        errors[f"{path}.hash"] = [problem]
    quality = item.get("quality")
    if quality is None:
        errors[f"{path}.quality"] = ["is required: the PDQ quality score (0-100) the hash came with"]
    elif not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
        errors[f"{path}.quality"] = ["must be an integer from 0 to 100 (PDQ's quality score)"]
    elif quality < IMAGE_MIN_QUALITY:
        errors[f"{path}.quality"] = [
            f"is {quality}: hashes of quality below {IMAGE_MIN_QUALITY} (flat images) are too unreliable to "
            "match on; do not send them"
        ]
    crops = item.get("crops", [])
    if not isinstance(crops, list):
        errors[f"{path}.crops"] = ["must be a list of PDQ hashes (the sub-crop variants), possibly empty"]
    elif len(crops) > MAX_IMAGE_CROPS:
        errors[f"{path}.crops"] = [f"at most {MAX_IMAGE_CROPS} sub-crop hashes, got {len(crops)}"]
    else:
        for k, crop in enumerate(crops):
            crop_problem = _hex_problem(crop)
            if crop_problem:
                errors[f"{path}.crops[{k}]"] = [crop_problem]
                break
    if len(errors) > before:
        return None
    return ImageIn(str(value), int(quality), tuple(dict.fromkeys(str(c) for c in crops)))  # type: ignore[arg-type]


@dataclass
class ImagesStored:
    sightings_created: int = 0
    groups: int = 0  # distinct groups the batch's photos are in
    touched_sellers: set[int] = field(default_factory=set)  # sellers of merged groups, to recompute


def threshold() -> int:
    return int(settings.EXCHANGE_IMAGE_MATCH_THRESHOLD)


def new_group_token() -> str:
    """A group's token: random, so it says nothing about its photos (64 hex, like keyed tokens)."""
    return secrets.token_hex(32)


def matching_photos(photo: ImageIn, limit_threshold: int | None = None) -> list[tuple[int, int, int]]:
    """(photo id, group id, distance) of every stored photo within the threshold of `photo`."""
    limit = threshold() if limit_threshold is None else limit_threshold
    keys: set[int] = set()
    for h in photo.hashes:
        keys |= probe_keys(h, limit)
    candidates = set(
        ImageChunk.objects.filter(key__in=sorted(keys)).values_list("image_id", flat=True).distinct()
    )
    found = []
    for pk, group_id, full, crops in ImageHash.objects.filter(pk__in=sorted(candidates)).values_list(
        "pk", "group_id", "hash", "crops"
    ):
        distance = variant_distance(photo.hashes, (full, *crops))
        if distance <= limit:
            found.append((pk, group_id, distance))
    return found


def matching_group_tokens(photo: ImageIn) -> list[str]:
    """The tokens of the near-duplicate groups `photo` matches (a lookup: nothing is stored)."""
    groups = sorted({group_id for _, group_id, _ in matching_photos(photo)})
    return list(Indicator.objects.filter(pk__in=groups).order_by("pk").values_list("token", flat=True))


@dataclass(frozen=True, slots=True)
class GroupFacts:
    photos: int
    sellers: int
    widest: int  # the largest distance between two of its photos (0 with one photo)


def describe_group(group_id: int, most: int = 200) -> GroupFacts:
    """What an analyst sees of a near-duplicate group: photos, sellers, spread (over its first `most` photos)."""
    hashes = list(
        ImageHash.objects.filter(group_id=group_id).order_by("pk").values_list("hash", "crops")[:most]
    )
    sellers = SellerImage.objects.filter(image__group_id=group_id).values("seller_id").distinct().count()
    photos = ImageHash.objects.filter(group_id=group_id).count()
    widest = max(
        (
            variant_distance((a, *ca), (b, *cb))
            for i, (a, ca) in enumerate(hashes)
            for b, cb in hashes[i + 1 :]
        ),
        default=0,
    )
    return GroupFacts(photos, sellers, widest)


def seller_distance(a: int, b: int, group_id: int) -> int | None:
    """The smallest distance between seller `a`'s and seller `b`'s photos in the group (None: either has none
    there, e.g. a group that merged after the page was read)."""
    photos: dict[int, list[tuple[str, ...]]] = {a: [], b: []}
    for seller_id, full, crops in SellerImage.objects.filter(
        seller_id__in=[a, b], image__group_id=group_id
    ).values_list("seller_id", "image__hash", "image__crops"):
        photos[seller_id].append((full, *crops))
    pairs = [variant_distance(x, y) for x in photos[a] for y in photos[b]]
    return min(pairs, default=None)


def store_images(
    photos: Sequence[tuple[int, datetime, ImageIn]], version: int, now: datetime
) -> ImagesStored:
    """Store (seller id, reported at, photo) rows of one submission: each photo in its group, each seller's
    sighting of the group and its photo. Call inside the submission's transaction."""
    result = ImagesStored()
    if not photos:
        return result
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GROUPING_LOCK])
    distinct = {photo.hash: photo for _, _, photo in photos}
    first_reported: dict[str, datetime] = {}
    for _, reported_at, photo in photos:
        first_reported[photo.hash] = min(reported_at, first_reported.get(photo.hash, reported_at))
    stored = dict(ImageHash.objects.filter(hash__in=sorted(distinct)).values_list("hash", "pk"))
    group_of = dict(ImageHash.objects.filter(hash__in=sorted(distinct)).values_list("hash", "group_id"))
    new_photos = sorted(set(distinct) - set(stored))
    for full in new_photos:
        photo = distinct[full]
        groups = sorted({group_id for _, group_id, _ in matching_photos(photo)})
        if not groups:
            group = Indicator.objects.create(
                kind=IMAGE_KIND,
                token=new_group_token(),
                key_version=version,
                first_seen=first_reported[full],
            )
            group_id = group.pk
        else:
            group_id = groups[0]
            if len(groups) > 1:
                result.touched_sellers |= merge_groups(group_id, groups[1:], now)
                group_of = {h: (group_id if g in groups else g) for h, g in group_of.items()}
        image = ImageHash.objects.create(
            group_id=group_id, hash=full, quality=photo.quality, crops=list(photo.crops), first_seen=now
        )
        ImageChunk.objects.bulk_create(
            [ImageChunk(image=image, key=key) for h in photo.hashes for key in set(chunk_keys(h))]
        )
        stored[full] = image.pk
        group_of[full] = group_id
    result.sightings_created = _sightings(
        [(seller_id, group_of[photo.hash], reported_at) for seller_id, reported_at, photo in photos]
    )
    SellerImage.objects.bulk_create(
        [
            SellerImage(seller_id=seller_id, image_id=stored[photo.hash], first_seen=reported_at)
            for seller_id, reported_at, photo in photos
        ],
        ignore_conflicts=True,
    )
    groups_touched = {group_of[photo.hash] for _, _, photo in photos}
    _recount(groups_touched)
    result.groups = len(groups_touched)
    logger.info(
        "event=images_stored photos=%s new=%s groups=%s merged_sellers=%s",
        len(distinct),
        len(new_photos),
        result.groups,
        len(result.touched_sellers),
    )
    return result


def _sightings(rows: Iterable[tuple[int, int, datetime]]) -> int:
    """Upsert (seller, group) sightings with first/last seen; returns how many were created."""
    wanted: dict[tuple[int, int], tuple[datetime, datetime]] = {}
    for seller_id, group_id, at in rows:
        first, last = wanted.get((seller_id, group_id), (at, at))
        wanted[(seller_id, group_id)] = (min(first, at), max(last, at))
    existing = {
        (s.seller_id, s.indicator_id): s
        for s in Sighting.objects.filter(
            seller_id__in={seller for seller, _ in wanted}, indicator_id__in={group for _, group in wanted}
        )
    }
    created, changed = [], []
    for key, (first, last) in sorted(wanted.items()):
        sighting = existing.get(key)
        if sighting is None:
            created.append(Sighting(seller_id=key[0], indicator_id=key[1], first_seen=first, last_seen=last))
        elif first < sighting.first_seen or last > sighting.last_seen:
            sighting.first_seen, sighting.last_seen = (
                min(first, sighting.first_seen),
                max(last, sighting.last_seen),
            )
            changed.append(sighting)
    Sighting.objects.bulk_create(created)
    Sighting.objects.bulk_update(changed, ["first_seen", "last_seen"])
    return len(created)


def _recount(group_ids: Iterable[int]) -> None:
    """Each group's holders: its sellers (what ingest maintains for every indicator)."""
    counts = dict(
        Sighting.objects.filter(indicator_id__in=sorted(set(group_ids)))
        .values_list("indicator_id")
        .annotate(n=Count("seller_id"))
        .order_by()
    )
    for group_id in sorted(set(group_ids)):
        Indicator.objects.filter(pk=group_id).update(holders=counts.get(group_id, 0))


def merge_groups(keep: int, others: Sequence[int], now: datetime) -> set[int]:
    """Merge the groups `others` into `keep` (a new photo matched photos of each): their photos and sightings
    move to `keep`, which stays common if any of them was marked common; the others are deleted. Returns the
    sellers of every merged group (their clusters are recomputed)."""
    merged = [keep, *others]
    sellers = set(Sighting.objects.filter(indicator_id__in=merged).values_list("seller_id", flat=True))
    ImageHash.objects.filter(group_id__in=others).update(group_id=keep)
    moved = list(
        Sighting.objects.filter(indicator_id__in=others).values_list("seller_id", "first_seen", "last_seen")
    )
    Sighting.objects.filter(indicator_id__in=others).delete()
    _sightings_span(keep, moved)
    common = Indicator.objects.filter(pk__in=others, linking=Linking.COMMON).first()
    target = Indicator.objects.get(pk=keep)
    first_seen = min(
        Indicator.objects.filter(pk__in=merged).values_list("first_seen", flat=True),
        default=target.first_seen,
    )
    target.first_seen = first_seen
    fields = ["first_seen"]
    if common is not None and target.linking != Linking.COMMON:
        target.linking = Linking.COMMON
        target.linking_reason = f"merged with an image group marked common ({common.linking_reason})"[:1000]
        target.linking_changed_by = "system"
        target.linking_changed_at = now
        fields += ["linking", "linking_reason", "linking_changed_by", "linking_changed_at"]
    target.save(update_fields=fields)
    Indicator.objects.filter(pk__in=others).delete()
    logger.info("event=image_groups_merged groups=%s sellers=%s", len(merged), len(sellers))
    return sellers


def _sightings_span(group_id: int, rows: Iterable[tuple[int, datetime, datetime]]) -> None:
    """Give `group_id` the sightings `rows` (seller, first seen, last seen), widening existing ones."""
    _sightings(
        [(seller_id, group_id, first) for seller_id, first, _ in rows]
        + [(seller_id, group_id, last) for seller_id, _, last in rows]
    )
