"""STIX 2.1 export and TAXII 2.1 collections (issue 16), checked with tools nobody here wrote: the OASIS
stix2-validator and the stix2 library. The live test with taxii2-client is tests/system/test_taxii_live.py.

The world: Acme's acme-1 and acme-2 share a phone with Bazaar's baz-1 (one cross-platform cluster); Bazaar's
baz-2 and baz-3 share a tax id (a cluster Acme has no seller in); Acme's acme-3 and acme-4 share an email.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stix2
from django.core.management import call_command
from django.db import OperationalError
from django.test import override_settings
from stix2validator import ValidationOptions, validate_parsed_json

from accounts.models import AuditEntry
from exchange.models import Indicator, LookupUsage
from graph import stix, taxii
from graph.exports import partner_cluster_data
from graph.models import ActorCluster
from graph.taxii import TAXII_MEDIA_TYPE, collection_id
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

TAXII: dict[str, Any] = {"HTTP_ACCEPT": TAXII_MEDIA_TYPE}


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform) -> dict[str, str]:
    for kp, sellers in (
        (
            acme,
            [
                seller("acme-1", ("phone", "+4930111111")),
                seller("acme-2", ("phone", "+4930111111"), ("email", "ring@example.com")),
                seller("acme-3", ("email", "pair@acme.example")),
                seller("acme-4", ("email", "pair@acme.example"), status="suspected"),
            ],
        ),
        (
            bazaar,
            [
                seller("baz-1", ("phone", "+4930111111")),
                seller("baz-2", ("tax_id", "DE123456789")),
                seller("baz-3", ("tax_id", "DE123456789")),
            ],
        ),
    ):
        assert submit(kp.client(), *sellers).status_code == 201

    def ref(seller_ref: str) -> str:
        return ActorCluster.objects.live().get(members__seller__seller_ref=seller_ref).ref

    return {"shared": ref("acme-1"), "acme_only": ref("acme-3"), "bazaar_only": ref("baz-2")}


def validate(bundle: dict[str, Any]) -> None:
    """No errors and no warnings from the OASIS validator; the stix2 library parses it without custom
    properties allowed (ours are declared by an extension definition)."""
    results = validate_parsed_json(bundle, ValidationOptions(strict=False))
    problems = [str(e) for e in results.errors] + [str(w) for w in results.warnings]
    assert results.is_valid and not problems, problems
    parsed = stix2.parse(json.dumps(bundle), allow_custom=False)
    assert [o.id for o in parsed.objects] == [o["id"] for o in bundle["objects"]]


def partner_bundle(kp: KeyedPlatform) -> dict[str, Any]:
    clusters = ActorCluster.objects.live().containing_platform(kp.platform).ranked()
    return stix.bundle([partner_cluster_data(c, kp.platform) for c in clusters], kp.platform.stix_tlp)


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [o for o in bundle["objects"] if o["type"] == kind]


def test_partner_bundle_passes_the_oasis_validator_and_parses_with_stix2(acme, world):
    bundle = partner_bundle(acme)
    validate(bundle)
    assert sorted(a["name"] for a in of_type(bundle, "threat-actor")) == sorted(
        [world["shared"], world["acme_only"]]
    )
    assert sorted(i["name"] for i in of_type(bundle, "identity")) == [
        "Bad-actor intelligence exchange",
        "acme-1",
        "acme-2",
        "acme-3",
        "acme-4",
    ]
    shared = next(a for a in of_type(bundle, "threat-actor") if a["name"] == world["shared"])
    assert (shared["x_exchange_size"], shared["x_exchange_platforms"]) == (3, 2)
    assert "phone" in shared["x_exchange_kinds"]
    (sighting,) = [s for s in of_type(bundle, "sighting") if s["sighting_of_ref"] == shared["id"]]
    assert (sighting["count"], sighting["x_exchange_platform"]) == (1, "Platform A")
    relationships = of_type(bundle, "relationship")
    assert {r["relationship_type"] for r in relationships} == {"attributed-to"}
    assert len(relationships) == 4  # one per own seller
    assert not of_type(bundle, "indicator")  # the exchange holds keyed tokens only: nothing to give back


def test_reexport_keeps_the_object_ids(acme, world):
    first, second = partner_bundle(acme), partner_bundle(acme)
    assert [o["id"] for o in first["objects"]] == [o["id"] for o in second["objects"]]
    assert first["id"] == second["id"]


@pytest.mark.parametrize("tlp", sorted(stix.TLP_MARKING_IDS))
def test_every_object_carries_the_platforms_tlp_marking(acme, world, tlp):
    acme.platform.stix_tlp = tlp
    acme.platform.save(update_fields=["stix_tlp"])
    bundle = partner_bundle(acme)
    validate(bundle)
    (marking,) = of_type(bundle, "marking-definition")
    assert marking["id"] == stix.TLP_MARKING_IDS[tlp]
    marked = [
        o for o in bundle["objects"] if o["type"] in {"threat-actor", "identity", "relationship", "sighting"}
    ]
    marked = [o for o in marked if o["id"] != stix.PRODUCER_ID]
    assert marked and all(o["object_marking_refs"] == [marking["id"]] for o in marked)


def test_tlp_defaults_to_amber_strict(acme):
    assert acme.platform.stix_tlp == "amber+strict"


def test_full_export_command_names_every_member_and_validates(acme, bazaar, world, tmp_path: Path):
    out = tmp_path / "full.json"
    call_command("export_stix", str(out))
    bundle = json.loads(out.read_text())
    validate(bundle)
    sellers = {
        i["name"]: i["x_exchange_platform"]
        for i in of_type(bundle, "identity")
        if i["id"] != stix.PRODUCER_ID
    }
    assert sellers["baz-2"] == "Bazaar North" and sellers["acme-1"] == "Acme Market"
    assert {a["name"] for a in of_type(bundle, "threat-actor")} == set(world.values())
    sightings = {s["x_exchange_platform"] for s in of_type(bundle, "sighting")}
    assert sightings == {"Acme Market", "Bazaar North"}
    (audit,) = AuditEntry.objects.filter(action="stix_export")
    assert audit.details["view"] == "full" and sorted(audit.details["refs"]) == sorted(world.values())


def test_export_command_one_cluster_as_a_platform_sees_it(acme, world, tmp_path: Path):
    out = tmp_path / "acme.json"
    call_command("export_stix", str(out), "--cluster", world["shared"], "--platform", "acme")
    bundle = json.loads(out.read_text())
    validate(bundle)
    assert [a["name"] for a in of_type(bundle, "threat-actor")] == [world["shared"]]
    assert "baz-1" not in out.read_text() and "Bazaar" not in out.read_text()


# --- leaks ------------------------------------------------------------------------------------------------


def other_platforms_secrets(owner: KeyedPlatform, world: dict[str, str]) -> list[str]:
    """What of Bazaar's Acme must never read: its seller refs, name, slug, tokens, key and its own cluster."""
    tokens = list(
        Indicator.objects.filter(sightings__seller__platform=owner.platform).values_list("token", flat=True)
    )
    refs = [f"baz-{n}" for n in (1, 2, 3)]
    return [*refs, owner.platform.name, "bazaar", *tokens, owner.key.prefix, world["bazaar_only"]]


def taxii_objects_text(kp: KeyedPlatform, limit: int = 1000) -> str:
    """Every page of the platform's collection (objects and manifest), as text."""
    client = kp.client()
    base = f"/taxii2/api1/collections/{collection_id(kp.platform)}"
    text = ""
    for endpoint in ("objects", "manifest"):
        url = f"{base}/{endpoint}/?limit={limit}"
        while url:
            response = client.get(url, **TAXII)
            assert response.status_code == 200, response.content
            text += response.content.decode()
            body = response.json()
            url = f"{base}/{endpoint}/?limit={limit}&next={body['next']}" if body["more"] else ""
    for path in ("/taxii2/", "/taxii2/api1/", "/taxii2/api1/collections/"):
        text += kp.client().get(path, **TAXII).content.decode()
    return text


def test_partner_stix_and_taxii_carry_none_of_another_partners_refs_names_or_tokens(acme, bazaar, world):
    secrets = other_platforms_secrets(bazaar, world)
    assert len(secrets) > 6  # Bazaar's tokens are there to be looked for
    exported = json.dumps(partner_bundle(acme))
    served = taxii_objects_text(acme, limit=3)
    for text in (exported, served):
        leaked = [s for s in secrets if s in text]
        assert not leaked, leaked
    assert world["shared"] in served and "acme-1" in served  # the positive control


@override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=True)
def test_revealed_platform_names_appear_as_in_the_partner_api(acme, bazaar, world):
    bundle = partner_bundle(acme)
    validate(bundle)
    assert {s["x_exchange_platform"] for s in of_type(bundle, "sighting")} == {"Bazaar North"}
    assert "baz-1" not in json.dumps(bundle)


# --- TAXII ------------------------------------------------------------------------------------------------


def objects_url(kp: KeyedPlatform) -> str:
    return f"/taxii2/api1/collections/{collection_id(kp.platform)}/objects/"


def test_discovery_api_root_and_collections_speak_taxii(acme):
    client = acme.client()
    discovery = client.get("/taxii2/", **TAXII)
    assert discovery.status_code == 200 and discovery["Content-Type"] == TAXII_MEDIA_TYPE
    assert discovery.json()["api_roots"] == ["http://testserver/taxii2/api1/"]
    assert client.get("/taxii2/api1/", **TAXII).json()["versions"] == [TAXII_MEDIA_TYPE]
    (collection,) = client.get("/taxii2/api1/collections/", **TAXII).json()["collections"]
    assert collection["id"] == collection_id(acme.platform)
    assert (collection["can_read"], collection["can_write"]) == (True, False)
    assert collection["media_types"] == ["application/stix+json;version=2.1"]
    assert client.get(f"/taxii2/api1/collections/{collection['id']}/", **TAXII).json() == collection


def test_objects_page_by_limit_with_the_taxii_envelope_and_headers(acme, world):
    client = acme.client()
    everything = client.get(objects_url(acme), **TAXII).json()
    assert everything["more"] is False and "next" not in everything
    ids = [o["id"] for o in everything["objects"]]
    paged: list[str] = []
    response = client.get(objects_url(acme) + "?limit=4", **TAXII)
    while True:
        body = response.json()
        assert len(body["objects"]) <= 4
        assert response["X-TAXII-Date-Added-First"] <= response["X-TAXII-Date-Added-Last"]
        paged += [o["id"] for o in body["objects"]]
        if not body["more"]:
            break
        assert len(body["objects"]) == 4  # full pages until the last
        response = client.get(objects_url(acme) + f"?limit=4&next={body['next']}", **TAXII)
    assert paged == ids and len(ids) > 8
    validate(
        {
            "type": "bundle",
            "id": "bundle--0b7c8f0e-8f1e-4b0e-9c5e-0d8f3d3c3c3c",
            "objects": everything["objects"],
        }
    )


def test_added_after_returns_only_clusters_changed_since(acme, world):
    client = acme.client()
    response = client.get(objects_url(acme), **TAXII)
    last = response["X-TAXII-Date-Added-Last"]
    assert client.get(objects_url(acme) + f"?added_after={last}", **TAXII).json() == {"more": False}
    cluster = ActorCluster.objects.get(ref=world["acme_only"])
    first = response["X-TAXII-Date-Added-First"]
    later = client.get(objects_url(acme) + f"?added_after={first}", **TAXII).json()["objects"]
    assert all(o["type"] != "marking-definition" for o in later)  # the fixed objects were added first
    assert cluster.ref in {o.get("name") for o in later}


def test_manifest_lists_ids_versions_and_dates(acme, world):
    objects = acme.client().get(objects_url(acme), **TAXII).json()["objects"]
    manifest = acme.client().get(objects_url(acme).replace("objects/", "manifest/"), **TAXII).json()
    assert [m["id"] for m in manifest["objects"]] == [o["id"] for o in objects]
    assert all(m["media_type"] == "application/stix+json;version=2.1" for m in manifest["objects"])


def test_another_partners_collection_is_a_404(acme, bazaar, world):
    for suffix in ("", "objects/", "manifest/"):
        url = f"/taxii2/api1/collections/{collection_id(acme.platform)}/{suffix}"
        response = bazaar.client().get(url, **TAXII)
        assert response.status_code == 404
        assert response.json()["http_status"] == "404" and response["Content-Type"] == TAXII_MEDIA_TYPE
        assert "acme" not in response.content.decode().lower()


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("added_after=yesterday", "added_after"),
        ("added_after=2026-01-01T00:00:00", "added_after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("next=forged", "next"),
    ],
)
def test_bad_parameters_are_a_400_taxii_error(acme, world, query, mentions):
    response = acme.client().get(objects_url(acme) + "?" + query, **TAXII)
    assert response.status_code == 400
    error = response.json()
    assert set(error) == {"title", "description", "http_status"} and error["http_status"] == "400"
    assert mentions in error["description"]
    assert response["Content-Type"] == TAXII_MEDIA_TYPE


@pytest.mark.parametrize(
    "accept", ["application/json", "application/taxii+json;version=2.0", "application/stix+json;version=2.1"]
)
def test_other_media_types_are_a_406(acme, accept):
    response = acme.client().get("/taxii2/", HTTP_ACCEPT=accept)
    assert response.status_code == 406 and response.json()["http_status"] == "406"
    assert response["Content-Type"] == TAXII_MEDIA_TYPE


@pytest.mark.parametrize("accept", ["application/taxii+json", "application/taxii+json; version=2.1", "*/*"])
def test_taxii_without_a_version_or_a_wildcard_means_taxii_2_1(acme, accept):
    response = acme.client().get("/taxii2/", HTTP_ACCEPT=accept)
    assert response.status_code == 200 and response["Content-Type"] == TAXII_MEDIA_TYPE


def test_collections_are_read_only(acme, world):
    response = acme.client().post(objects_url(acme), {"objects": []}, format="json", **TAXII)
    assert response.status_code == 405 and response.json()["http_status"] == "405"


def test_taxii_needs_a_key_with_the_read_scope(acme, anonymous):
    response = anonymous.get("/taxii2/", **TAXII)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["http_status"] == "401"
    from tests.conftest import make_platform

    submit_only = make_platform("submitter", "Submitter", scopes=("submit",))
    assert submit_only.client().get("/taxii2/", **TAXII).status_code == 403


def test_reading_objects_is_metered_and_audited_like_the_cluster_endpoints(acme, world):
    client = acme.client()
    client.get(objects_url(acme), **TAXII)
    assert LookupUsage.objects.get(api_key=acme.key).count == 2  # Acme's two clusters
    (audit,) = AuditEntry.objects.filter(action="cluster_read")
    assert audit.details["endpoint"] == "taxii_objects"
    assert sorted(audit.details["refs"]) == sorted([world["shared"], world["acme_only"]])
    client.get(objects_url(acme).replace("objects/", "manifest/"), **TAXII)
    assert LookupUsage.objects.get(api_key=acme.key).count == 4


@override_settings(EXCHANGE_LOOKUP_DAILY_QUOTA=1)
def test_objects_beyond_the_quota_are_a_429_taxii_error(acme, world):
    response = acme.client().get(objects_url(acme), **TAXII)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["http_status"] == "429"


def test_every_object_of_the_collection_can_be_read_by_its_id(acme, world):
    client = acme.client()
    objects = client.get(objects_url(acme), **TAXII).json()["objects"]
    usage_before = LookupUsage.objects.get(api_key=acme.key).count
    for obj in objects:
        response = client.get(objects_url(acme) + f"{obj['id']}/", **TAXII)
        assert response.status_code == 200, (obj["type"], response.content)
        assert response.json() == {"more": False, "objects": [obj]}
    cluster_objects = [o for o in objects if "x_exchange_kinds" in o or o["type"] in {"identity", "sighting"}]
    cluster_objects = [o for o in cluster_objects if o["id"] != stix.PRODUCER_ID]
    # Each cluster object read is a cluster read: charged like the objects page.
    assert LookupUsage.objects.get(api_key=acme.key).count == usage_before + len(cluster_objects)
    assert AuditEntry.objects.filter(action="cluster_read", details__endpoint="taxii_object").exists()


def test_another_partners_object_ids_are_404s_even_in_ones_own_collection(acme, bazaar, world):
    bazaar_actor = stix.threat_actor_id(world["bazaar_only"])
    baz_seller = stix.seller_identity_id("bazaar", "baz-1")
    for object_id in (bazaar_actor, baz_seller, f"threat-actor--{'0' * 8}-0000-4000-8000-{'0' * 12}"):
        response = acme.client().get(objects_url(acme) + f"{object_id}/", **TAXII)
        assert response.status_code == 404 and response.json()["http_status"] == "404"


def test_a_database_outage_is_a_503_taxii_error_to_retry(acme, monkeypatch):
    def down(*args: Any) -> None:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(taxii, "read_page", down)
    response = acme.client().get(objects_url(acme), **TAXII)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["http_status"] == "503" and response["Content-Type"] == TAXII_MEDIA_TYPE


# --- TAXII filters (match[...]), object versions, unknown paths ---------------------------------------------


def read_all(kp: KeyedPlatform, query: str, endpoint: str = "objects") -> list[dict[str, Any]]:
    """Every page of the collection's objects (or manifest records) for `query`, asserting full pages until
    the last and no empty last page."""
    url = objects_url(kp).replace("objects/", f"{endpoint}/") + "?" + query
    found: list[dict[str, Any]] = []
    response = kp.client().get(url, **TAXII)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        found += body.get("objects", [])
        if not body["more"]:
            return found
        assert body.get("objects"), "a page says there is more but holds nothing"
        response = kp.client().get(url + f"&next={body['next']}", **TAXII)


def test_match_type_keeps_the_types_asked_for_on_objects_and_manifest(acme, world):
    actors = read_all(acme, "match[type]=threat-actor")
    assert sorted(a["name"] for a in actors) == sorted([world["shared"], world["acme_only"]])
    both = read_all(acme, "match[type]=threat-actor,sighting&limit=1")
    assert {o["type"] for o in both} == {"threat-actor", "sighting"}
    everything = read_all(acme, "")
    wanted = [o["id"] for o in everything if o["type"] in {"threat-actor", "sighting"}]
    assert [o["id"] for o in both] == wanted
    manifest = read_all(acme, "match[type]=threat-actor", "manifest")
    assert [m["id"] for m in manifest] == [a["id"] for a in actors]
    markings = read_all(acme, "match[type]=marking-definition")
    assert len(markings) == len(stix.TLP_MARKING_IDS)


def test_match_id_finds_fixed_and_cluster_objects_and_pages_them(acme, world):
    actor = stix.threat_actor_id(world["shared"])
    seller_id = stix.seller_identity_id("acme", "acme-1")
    wanted = [stix.TLP_MARKING_IDS["red"], actor, seller_id]
    found = read_all(acme, f"match[id]={','.join(wanted)}&limit=1")
    assert sorted(o["id"] for o in found) == sorted(wanted)
    # Another platform's objects are not in the collection, whatever their id.
    others = [stix.threat_actor_id(world["bazaar_only"]), stix.seller_identity_id("bazaar", "baz-1")]
    assert read_all(acme, f"match[id]={','.join(others)}") == []


def test_match_spec_version_and_version(acme, world):
    everything = read_all(acme, "")
    assert read_all(acme, "match[spec_version]=2.1") == everything
    assert read_all(acme, "match[spec_version]=2.0") == []
    for keyword in ("first", "last", "all", "first,last"):
        assert read_all(acme, f"match[version]={keyword}") == everything
    actor = next(o for o in everything if o["type"] == "threat-actor")
    by_version = read_all(acme, f"match[version]={actor['modified']}")
    assert actor in by_version and all(o["modified"] == actor["modified"] for o in by_version)
    # The same instant written with microseconds (as taxii2-client writes datetimes) selects the same.
    microseconds = actor["modified"].replace("Z", "000Z")
    assert read_all(acme, f"match[version]={microseconds}") == by_version
    assert read_all(acme, "match[version]=2001-01-01T00:00:00Z") == []
    assert read_all(acme, "match[version]=last&match[type]=threat-actor&match[spec_version]=2.1") == [
        o for o in everything if o["type"] == "threat-actor"
    ]


def test_a_filtered_read_charges_only_the_clusters_it_shows(acme, world):
    read_all(acme, "match[type]=marking-definition")
    assert not LookupUsage.objects.filter(api_key=acme.key, count__gt=0).exists()
    read_all(acme, f"match[id]={stix.threat_actor_id(world['shared'])}")
    assert LookupUsage.objects.get(api_key=acme.key).count == 1
    (audit,) = AuditEntry.objects.filter(action="cluster_read", details__clusters=1)
    assert audit.details["refs"] == [world["shared"]]


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("match[color]=red", "match[color] is not a filter of this endpoint"),
        ("match[type", "match[type is not a filter"),
        ("match[type]=", "match[type] needs at least one value"),
        ("match[type]=Threat_Actor", "is not a STIX type"),
        ("match[id]=threat-actor--nope", "is not a STIX id"),
        ("match[spec_version]=two", "is not a STIX spec_version"),
        ("match[version]=yesterday", "match[version] takes first, last, all"),
        ("match[version]=2026-01-01T00:00:00", "match[version] takes"),
    ],
)
@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_bad_match_filters_are_a_400_taxii_error(acme, world, query, mentions, endpoint):
    url = objects_url(acme).replace("objects/", f"{endpoint}/")
    response = acme.client().get(f"{url}?{query}", **TAXII)
    assert response.status_code == 400, response.content
    assert response.json()["http_status"] == "400" and mentions in response.json()["description"]
    assert response["Content-Type"] == TAXII_MEDIA_TYPE


def test_every_object_has_its_one_version_listed(acme, world):
    client = acme.client()
    objects = client.get(objects_url(acme), **TAXII).json()["objects"]
    for obj in objects:
        response = client.get(objects_url(acme) + f"{obj['id']}/versions/", **TAXII)
        assert response.status_code == 200 and response["Content-Type"] == TAXII_MEDIA_TYPE
        assert response.json() == {"more": False, "versions": [obj.get("modified", obj["created"])]}
        assert response["X-TAXII-Date-Added-First"] == response["X-TAXII-Date-Added-Last"]
    assert AuditEntry.objects.filter(action="cluster_read", details__endpoint="taxii_versions").exists()


def test_versions_and_object_take_their_filters(acme, world):
    client = acme.client()
    actor = stix.threat_actor_id(world["shared"])
    url = objects_url(acme) + f"{actor}/"
    added = client.get(url, **TAXII)["X-TAXII-Date-Added-Last"]
    assert client.get(url + f"versions/?added_after={added}", **TAXII).json() == {"more": False}
    assert client.get(url + "versions/?match[spec_version]=2.0", **TAXII).json() == {"more": False}
    assert len(client.get(url + "versions/?match[spec_version]=2.0,2.1", **TAXII).json()["versions"]) == 1
    obj = client.get(url + "?match[version]=first", **TAXII).json()["objects"][0]
    assert client.get(url + f"?match[version]={obj['modified']}", **TAXII).json()["objects"] == [obj]
    assert client.get(url + "?match[version]=2001-01-01T00:00:00Z", **TAXII).json() == {"more": False}
    for bad_url, mentions in (
        (url + "versions/?match[type]=threat-actor", "it takes match[spec_version]"),
        (url + "versions/?limit=0", "limit"),
        (url + "?match[id]=" + actor, "it takes match[version], match[spec_version]"),
    ):
        response = client.get(bad_url, **TAXII)
        assert response.status_code == 400 and mentions in response.json()["description"], bad_url


def test_versions_of_another_partners_object_or_an_unknown_one_are_404s(acme, bazaar, world):
    for object_id in (
        stix.threat_actor_id(world["bazaar_only"]),
        stix.seller_identity_id("bazaar", "baz-1"),
        f"threat-actor--{'0' * 8}-0000-4000-8000-{'0' * 12}",
    ):
        response = acme.client().get(objects_url(acme) + f"{object_id}/versions/", **TAXII)
        assert response.status_code == 404 and response.json()["http_status"] == "404"
    other = f"/taxii2/api1/collections/{collection_id(bazaar.platform)}/objects/"
    actor = stix.threat_actor_id(world["shared"])  # in both collections: still not through Bazaar's
    assert acme.client().get(other + f"{actor}/versions/", **TAXII).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/taxii2/nope/",
        "/taxii2/api1/nope/",
        "/taxii2/api2/collections/",
        "/taxii2/api1/collections/{collection}/objects/{actor}/versions/extra/",
        "/taxii2/api1/collections/{collection}/status/",
    ],
)
def test_unknown_paths_under_taxii2_are_taxii_404s(acme, anonymous, world, path):
    url = path.format(collection=collection_id(acme.platform), actor=stix.threat_actor_id(world["shared"]))
    for method in ("get", "post", "delete", "options"):
        response = getattr(acme.client(), method)(url, **TAXII)
        assert response.status_code == 404, (method, response.status_code)
        assert response["Content-Type"] == TAXII_MEDIA_TYPE
        assert response.json()["http_status"] == "404"
    response = anonymous.get(url, **TAXII)
    assert response.status_code == 401 and response.json()["http_status"] == "401"


def test_a_taxii_path_without_its_slash_still_redirects_to_its_route(acme):
    response = acme.client().get("/taxii2/api1/collections", **TAXII)
    assert response.status_code == 301 and response["Location"] == "/taxii2/api1/collections/"
