"""Actor clusters as STIX 2.1 objects: plain data in, JSON-ready dicts out (no Django here).

What a cluster becomes, for one viewer (a partner, or the exchange analysts' full export):

- a `threat-actor` named by the opaque cluster reference (`ac_...`), with the partner-safe summary (risk,
  linking kinds, size, platform count) as `x_exchange_*` properties;
- an `identity` per seller account the viewer may see by reference (a partner: its own sellers only; the full
  export: every member), named by its `seller_ref`, and a `relationship` `threat-actor attributed-to identity`
  per such seller, describing the indicator kinds that link the cluster;
- a `sighting` of the threat-actor per platform, with `count` = that platform's accounts in the cluster (other
  platforms appear to a partner as counts under neutral labels, as in the partner API).

No indicator or observable objects: the exchange holds only keyed tokens (HMAC with its pepper), never the
transport hashes a partner sent, so it cannot hand a partner "its own hashes" back, and a token is of no use
outside the exchange (and must never leave it). Which kinds link a cluster is said instead.

Ids are derived from what the object describes (cluster ref, seller, viewer), so a re-export keeps them and a
consumer sees new versions rather than new objects. They are UUIDv4 in form, as STIX asks of SDOs and SROs
(the validator warns on UUIDv5 there), from a SHA-256 of that key. Custom properties are declared by one
`extension-definition` of type `toplevel-property-extension`, the STIX 2.1 way to add properties.

Every object carries one TLP 2.0 marking (the OASIS-published marking definitions, whose ids are fixed).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stix2
import stix2.exceptions

TLP_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP_CREATED = "2022-10-01T00:00:00.000Z"  # part of the published objects, like their ids
# The OASIS TLP 2.0 marking definitions (cti-stix-common-objects): consumers recognise them by these ids.
TLP_MARKING_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
DEFAULT_TLP = "amber+strict"

STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
# When the exchange's own fixed objects (its identity, the extension definition, the markings) count as added.
FIXED_OBJECTS_ADDED = datetime(2026, 1, 1, tzinfo=UTC)

PRODUCER_NAME = "Bad-actor intelligence exchange"
EXTENSION_PROPERTIES = (
    "x_exchange_risk",
    "x_exchange_kinds",
    "x_exchange_size",
    "x_exchange_platforms",
    "x_exchange_cross_platform",
    "x_exchange_platform",
    "x_exchange_seller_status",
    "x_exchange_reported_at",
)


def stix_id(object_type: str, *key: str) -> str:
    """A stable id for the object that `key` describes (UUIDv4 in form: see the module docstring)."""
    digest = hashlib.sha256("\x1f".join(("bad-actor-exchange", object_type, *key)).encode()).digest()
    return f"{object_type}--{uuid.UUID(bytes=digest[:16], version=4)}"


def threat_actor_id(ref: str) -> str:
    return stix_id("threat-actor", ref)


def seller_identity_id(platform_key: str, seller_ref: str) -> str:
    return stix_id("identity", "seller", platform_key, seller_ref)


def relationship_id(ref: str, platform_key: str, seller_ref: str) -> str:
    return stix_id("relationship", ref, platform_key, seller_ref)


def sighting_id(viewer: str, ref: str, index: int) -> str:
    """The `index`-th platform count of the viewer's view of the cluster (by position, not by label: a label
    is a platform's name only when the consortium reveals names)."""
    return stix_id("sighting", viewer, ref, str(index))


def cluster_object_ids(ref: str, viewer: str, sellers: Iterable[tuple[str, str]], counts: int) -> set[str]:
    """The ids `cluster_objects` gives the cluster's objects, from its ref, the (platform_key, seller_ref) of
    the sellers shown and the number of platform counts, without building them: finds an object by id."""
    ids = {threat_actor_id(ref), *(sighting_id(viewer, ref, index) for index in range(counts))}
    for platform_key, seller_ref in sellers:
        ids |= {seller_identity_id(platform_key, seller_ref), relationship_id(ref, platform_key, seller_ref)}
    return ids


PRODUCER_ID = stix_id("identity", "producer")
EXTENSION_ID = stix_id("extension-definition", "cluster-properties", "1")
EXTENSIONS = {EXTENSION_ID: {"extension_type": "toplevel-property-extension"}}


def timestamp(moment: datetime) -> str:
    """STIX timestamps: UTC, millisecond precision, `Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


FULL_VIEW = "exchange"  # the viewer of the exchange analysts' full view (sighting ids depend on the viewer)


@dataclass(frozen=True, slots=True)
class SellerData:
    """A seller account the viewer may see by reference."""

    seller_ref: str
    platform: str  # the platform's name (the viewer's own, or any for the full export)
    status: str
    reported_at: datetime
    platform_key: str = ""  # what makes the ref unique across platforms (the slug); part of the id only


@dataclass(frozen=True, slots=True)
class PlatformCount:
    """A platform's accounts in the cluster; `label` is its name or a neutral "Platform A"."""

    label: str
    accounts: int


@dataclass(frozen=True, slots=True)
class ClusterData:
    ref: str
    risk: int
    kinds: Sequence[str]
    size: int
    platforms: int
    cross_platform: bool
    first_seen: datetime
    changed_at: datetime
    sellers: Sequence[SellerData] = ()
    counts: Sequence[PlatformCount] = ()
    viewer: str = field(default=FULL_VIEW)  # whose view: sightings of neutral labels differ per viewer
    # The exchange analysts' view only (a partner never sees them): the analysts' status of the cluster, and
    # when its last recorded event (membership or status change) happened.
    status: str = ""
    last_event_at: datetime | None = None


def marking_definition(tlp: str) -> dict[str, Any]:
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP_MARKING_IDS[tlp],
        "created": TLP_CREATED,
        "name": f"TLP:{tlp.upper()}",
        "extensions": {TLP_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": tlp}},
    }


def fixed_objects(tlps: Iterable[str]) -> list[dict[str, Any]]:
    """The objects every export refers to: the exchange as producer, the definition of its `x_exchange_*`
    properties, and the TLP marking definitions in use."""
    created = timestamp(FIXED_OBJECTS_ADDED)
    producer = {
        "type": "identity",
        "spec_version": "2.1",
        "id": PRODUCER_ID,
        "created": created,
        "modified": created,
        "name": PRODUCER_NAME,
        "identity_class": "organization",
    }
    extension = {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created": created,
        "modified": created,
        "created_by_ref": PRODUCER_ID,
        "name": "Bad-actor exchange cluster properties",
        "description": (
            "Actor cluster facts from the bad-actor intelligence exchange: x_exchange_risk (0-100, the "
            "exchange's explainable risk score), x_exchange_kinds (indicator kinds that link the cluster's "
            "members), x_exchange_size (accounts), x_exchange_platforms (platforms), x_exchange_cross_platform, "
            "x_exchange_platform (a platform name or neutral label), x_exchange_seller_status (confirmed or "
            "suspected) and x_exchange_reported_at (when the platform reported the seller)."
        ),
        "schema": "The exchange's README, section 'STIX 2.1 and TAXII 2.1'.",
        "version": "1.0.0",
        "extension_types": ["toplevel-property-extension"],
        "extension_properties": list(EXTENSION_PROPERTIES),
    }
    return [producer, extension, *(marking_definition(tlp) for tlp in dict.fromkeys(tlps))]


def cluster_objects(cluster: ClusterData, tlp: str) -> list[dict[str, Any]]:
    """The STIX objects of one cluster as `cluster.viewer` may see it, threat-actor first."""
    created = timestamp(cluster.first_seen)
    modified = timestamp(max(cluster.changed_at, cluster.first_seen))
    common = {
        "spec_version": "2.1",
        "created_by_ref": PRODUCER_ID,
        "object_marking_refs": [TLP_MARKING_IDS[tlp]],
    }
    kinds = sorted(cluster.kinds)
    linked_by = ", ".join(kinds) or "no indicator kind recorded"
    actor_id = threat_actor_id(cluster.ref)
    objects: list[dict[str, Any]] = [
        {
            "type": "threat-actor",
            "id": actor_id,
            "created": created,
            "modified": modified,
            "name": cluster.ref,
            "description": (
                f"Actor cluster {cluster.ref}: {cluster.size} seller accounts on {cluster.platforms} "
                f"platform(s), linked by shared indicators ({linked_by})."
            ),
            "threat_actor_types": ["criminal"],
            "first_seen": created,
            **common,
            "x_exchange_risk": cluster.risk,
            "x_exchange_kinds": kinds,
            "x_exchange_size": cluster.size,
            "x_exchange_platforms": cluster.platforms,
            "x_exchange_cross_platform": cluster.cross_platform,
            "extensions": EXTENSIONS,
        }
    ]
    for seller in cluster.sellers:
        seller_id = seller_identity_id(seller.platform_key, seller.seller_ref)
        reported = timestamp(seller.reported_at)
        objects.append(
            {
                "type": "identity",
                "id": seller_id,
                "created": reported,
                "modified": reported,
                "name": seller.seller_ref,
                "description": f"Seller account on {seller.platform}.",
                "identity_class": "individual",
                **common,
                "x_exchange_platform": seller.platform,
                "x_exchange_seller_status": seller.status,
                "x_exchange_reported_at": reported,
                "extensions": EXTENSIONS,
            }
        )
        objects.append(
            {
                "type": "relationship",
                "id": relationship_id(cluster.ref, seller.platform_key, seller.seller_ref),
                "created": created,
                "modified": modified,
                "relationship_type": "attributed-to",
                "source_ref": actor_id,
                "target_ref": seller_id,
                "description": (
                    f"{seller.seller_ref} is in actor cluster {cluster.ref}: it shares indicators with the "
                    f"cluster's other members (kinds linking the cluster: {linked_by})."
                ),
                **common,
                "x_exchange_kinds": kinds,
                "extensions": EXTENSIONS,
            }
        )
    for index, count in enumerate(cluster.counts):
        objects.append(
            {
                "type": "sighting",
                "id": sighting_id(cluster.viewer, cluster.ref, index),
                "created": created,
                "modified": modified,
                "sighting_of_ref": actor_id,
                "count": count.accounts,
                "description": f"{count.accounts} seller account(s) of this actor reported on {count.label}.",
                **common,
                "x_exchange_platform": count.label,
                "extensions": EXTENSIONS,
            }
        )
    return objects


def bundle(clusters: Iterable[ClusterData], tlp: str) -> dict[str, Any]:
    """A STIX 2.1 bundle of the clusters, checked by the stix2 library before it leaves (a malformed object
    raises here rather than reaching a partner's tools)."""
    objects = fixed_objects([tlp])
    members: list[str] = []
    for cluster in clusters:
        members.append(cluster.ref)
        objects.extend(cluster_objects(cluster, tlp))
    # The bundle's id names its content, so the same export twice is the same bundle.
    result = {"type": "bundle", "id": stix_id("bundle", tlp, *members), "objects": objects}
    check(result)
    return result


def check(stix: dict[str, Any]) -> None:
    """Parse with the stix2 library, which enforces required properties, vocabularies and reference types;
    unknown custom properties are refused unless declared (as ours are, by the extension definition)."""
    stix2.parse(stix, allow_custom=False)


# --- import: a bundle of indicators (e.g. a brand's known counterfeit storefronts) --------------------------

# The observable each importable pattern names, and the indicator kind its value is reported as. A URL is
# reported by its registered domain (the website_domain spec normalises URLs and domains alike).
IMPORT_KINDS = {"domain-name": "website_domain", "url": "website_domain", "email-addr": "email"}
# One equality on the observable's value: what a list of storefronts or contact addresses is. Anything richer
# (AND/OR, other properties, qualifiers) cannot become a report's indicator and is refused, not guessed.
_IMPORT_PATTERN = re.compile(r"\[\s*(domain-name|url|email-addr):value\s*=\s*'((?:[^'\\]|\\.)*)'\s*\]")


class StixImportError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ImportedIndicator:
    stix_id: str
    kind: str  # the exchange's indicator kind
    value: str  # raw: the importer hashes it at once (graph/management/commands/import_stix.py)
    valid_from: str


def indicators_of(bundle: Any) -> list[ImportedIndicator]:
    """The importable indicators of a STIX 2.1 bundle (revoked ones skipped); StixImportError naming every
    object that cannot be imported, so that nothing of a partly bad bundle is stored."""
    try:
        # Other producers' custom properties are theirs to add; everything else must be valid STIX 2.1.
        stix2.parse(bundle, allow_custom=True)
    except (stix2.exceptions.STIXError, ValueError, TypeError) as error:
        raise StixImportError([f"not a valid STIX 2.1 bundle: {error}"]) from None
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle":
        raise StixImportError(["not a STIX bundle (type must be 'bundle')"])
    found: list[ImportedIndicator] = []
    problems: list[str] = []
    for obj in bundle.get("objects", []):
        if obj.get("type") != "indicator" or obj.get("revoked"):
            continue
        match = _IMPORT_PATTERN.fullmatch(str(obj.get("pattern", "")).strip())
        if obj.get("pattern_type") != "stix" or match is None:
            problems.append(
                f"{obj['id']}: only STIX patterns [domain-name:value = '...'], [url:value = '...'] and "
                "[email-addr:value = '...'] can be imported"
            )
            continue
        value = re.sub(r"\\(.)", r"\1", match.group(2))  # STIX string escapes: \' and \\
        found.append(ImportedIndicator(obj["id"], IMPORT_KINDS[match.group(1)], value, obj["valid_from"]))
    if problems:
        raise StixImportError(problems)
    if not found:
        raise StixImportError(["the bundle holds no indicator to import"])
    return found
