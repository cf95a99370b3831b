"""An independent TAXII 2.1 client (OASIS's taxii2-client) reads a partner's collection from a live gunicorn
server: discovery, the API root, the collections, and the objects page by page. Every page's objects pass the
OASIS stix2-validator and parse with the stix2 library; objects are filtered (match[...]) and read by id with
their versions; another partner's key cannot read the collection. An exchange analyst's key (made by
`manage.py create_analyst_key`) reads the exchange-wide advisories collection the same way, and no partner key
can."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import stix2
from stix2validator import ValidationOptions, validate_parsed_json
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, Server, as_pages

from tests.admin_world import PASSWORD
from tests.reliability.server import Gunicorn, fake_transport_hash, free_port, manage, production_env, setup

pytestmark = pytest.mark.slow


class Bearer(requests.auth.AuthBase):
    """The partner API key as TAXII credentials (taxii2-client takes any requests auth)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.key}"
        return request


# An exchange analyst confirms the ring-a cluster (a second one approves: four-eyes review) and publishes it,
# through the same actions as the admin.
PUBLISH_RING_A = """
from django.contrib.auth.models import User
from graph.actions import do_approve, do_publish_advisory, do_request_cluster_status, do_update_cluster
from graph.models import ActorCluster
ring = ActorCluster.objects.live().get(members__seller__seller_ref="acme-0")
do_update_cluster(ring, "alice", {"status": "investigating"})
approval = do_request_cluster_status(ring, User.objects.get(username="alice"), "confirmed")
do_approve(approval, User.objects.get(username="erin"))
do_publish_advisory(ring, "alice")
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The server, and the keys: each platform's, and "alice", an exchange analyst's."""
    tmp: Path = tmp_path_factory.mktemp("taxii-live")
    env = production_env(f"sqlite:///{tmp / 'live.sqlite3'}")
    keys = setup(env, "acme", "bazaar")
    password_file = tmp / "password"
    password_file.write_text(PASSWORD)
    manage(env, "create_analyst", "alice", "--exchange", "--password-file", str(password_file))
    manage(env, "create_analyst", "erin", "--exchange", "--password-file", str(password_file))
    keys["alice"] = manage(env, "create_analyst_key", "alice", "--name", "TIP").strip().splitlines()[-1]
    server = Gunicorn(env, free_port(), tmp / "server.log", workers=1)
    server.start()
    try:
        rings = {"acme": ["ring-a", "ring-b", "ring-c"], "bazaar": ["ring-a", "ring-b", "ring-z"]}
        for slug, phones in rings.items():
            sellers: list[dict[str, Any]] = [
                {
                    "seller_ref": f"{slug}-{n}",
                    "status": "confirmed",
                    "reasons": ["counterfeit"],
                    "reported_at": "2026-11-01T00:00:00Z",
                    "indicators": [{"kind": "phone", "hash": fake_transport_hash("phone", phone)}],
                }
                for n, phone in enumerate(phones)
            ]
            answer = requests.post(
                f"{server.url}/api/v1/submissions/",
                json={"sellers": sellers},
                headers={"Authorization": f"Bearer {keys[slug]}", "Idempotency-Key": str(uuid.uuid4())},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
        manage(env, "shell", "-c", PUBLISH_RING_A)
        yield server.url, keys
    finally:
        server.stop()


def validate(objects: list[dict[str, Any]]) -> None:
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    results = validate_parsed_json(bundle, ValidationOptions(strict=False))
    problems = [str(e) for e in results.errors] + [str(w) for w in results.warnings]
    assert results.is_valid and not problems, problems
    stix2.parse(json.dumps(bundle), allow_custom=False)


def test_taxii2_client_reads_the_partners_collection_page_by_page(live):
    url, keys = live
    server = Server(f"{url}/taxii2/", auth=Bearer(keys["acme"]))
    assert server.title == "Bad-actor intelligence exchange"
    (api_root,) = server.api_roots
    assert api_root.versions == ["application/taxii+json;version=2.1"]
    (collection,) = api_root.collections
    assert collection.can_read and not collection.can_write

    pages = list(as_pages(collection.get_objects, per_request=4))
    assert len(pages) >= 3  # the fixed objects and two clusters' objects do not fit in two pages of four
    objects = [obj for page in pages for obj in page.get("objects", [])]
    assert all(len(page["objects"]) == 4 for page in pages[:-1])
    assert len({o["id"] for o in objects}) == len(objects)
    validate(objects)
    names = {o.get("name") for o in objects}
    assert {"acme-0", "acme-1"} <= names and "acme-2" not in names  # acme-2 shares nothing: no cluster
    assert not any(str(name).startswith("bazaar") for name in names)
    assert collection.get_objects() == {"more": False, "objects": objects}  # one page holds it all too

    manifest = collection.get_manifest()
    assert [m["id"] for m in manifest["objects"]] == [o["id"] for o in objects]


def test_taxii2_client_filters_and_reads_objects_and_their_versions(live):
    url, keys = live
    (collection,) = Server(f"{url}/taxii2/", auth=Bearer(keys["acme"])).api_roots[0].collections
    objects = collection.get_objects()["objects"]
    actors = collection.get_objects(type="threat-actor")["objects"]
    assert actors and actors == [o for o in objects if o["type"] == "threat-actor"]
    picked = [actors[0]["id"], objects[0]["id"]]
    assert [o["id"] for o in collection.get_objects(id=picked)["objects"]] == [
        o["id"] for o in objects if o["id"] in picked
    ]
    assert collection.get_objects(spec_version="2.0") == {"more": False}
    # taxii2-client writes a datetime version with microseconds: the same instant as the object's version.
    version = datetime.fromisoformat(actors[0]["modified"])
    records = collection.get_manifest(version=version, type="threat-actor")["objects"]
    assert actors[0]["id"] in {record["id"] for record in records}
    for obj in objects:
        assert collection.get_object(obj["id"]) == {"more": False, "objects": [obj]}
        versions = collection.object_versions(obj["id"])
        assert versions == {"more": False, "versions": [obj.get("modified", obj["created"])]}
    with pytest.raises((TAXIIServiceException, requests.HTTPError)) as refused:
        collection.get_objects(color="red")  # taxii2-client sends match[color]: not a filter here
    assert "400" in str(refused.value)


def test_another_partners_key_cannot_read_the_collection(live):
    url, keys = live
    acme_collection = Server(f"{url}/taxii2/", auth=Bearer(keys["acme"])).api_roots[0].collections[0]
    intruder = Collection(acme_collection.url, auth=Bearer(keys["bazaar"]))
    with pytest.raises((TAXIIServiceException, requests.HTTPError)) as refused:
        intruder.get_objects()
    assert "404" in str(refused.value)
    (own,) = Server(f"{url}/taxii2/", auth=Bearer(keys["bazaar"])).api_roots[0].collections
    assert own.id != acme_collection.id


def test_taxii2_client_reads_the_advisories_with_an_exchange_analysts_key(live):
    url, keys = live
    server = Server(f"{url}/taxii2/", auth=Bearer(keys["alice"]))
    (collection,) = server.api_roots[0].collections
    assert collection.title == "Exchange advisories" and collection.can_read and not collection.can_write

    pages = list(as_pages(collection.get_objects, per_request=3))
    objects = [obj for page in pages for obj in page.get("objects", [])]
    assert len(pages) >= 3 and all(len(page["objects"]) == 3 for page in pages[:-1])
    validate(objects)
    actors = [o for o in objects if o["type"] == "threat-actor"]
    assert len(actors) == 1  # ring-a only: ring-b is not published
    names = {o.get("name") for o in objects if o["type"] == "identity"}
    assert {"acme-0", "bazaar-0"} <= names and not {"acme-1", "bazaar-1"} & names  # in full, and only ring-a
    assert collection.get_objects() == {"more": False, "objects": objects}
    assert [m["id"] for m in collection.get_manifest()["objects"]] == [o["id"] for o in objects]
    actor = actors[0]
    assert collection.get_object(actor["id"]) == {"more": False, "objects": [actor]}
    assert collection.object_versions(actor["id"])["versions"] == [actor["modified"]]
    assert collection.get_objects(type="threat-actor")["objects"] == actors


def test_no_partner_key_reads_the_advisories_and_the_analyst_key_no_partner_collection(live):
    url, keys = live
    (advisories,) = Server(f"{url}/taxii2/", auth=Bearer(keys["alice"])).api_roots[0].collections
    for slug in ("acme", "bazaar"):  # both have sellers in the published cluster
        intruder = Collection(advisories.url, auth=Bearer(keys[slug]))
        with pytest.raises((TAXIIServiceException, requests.HTTPError)) as refused:
            intruder.get_objects()
        assert "404" in str(refused.value)
        (own,) = Server(f"{url}/taxii2/", auth=Bearer(keys[slug])).api_roots[0].collections
        assert own.id != advisories.id
        with pytest.raises((TAXIIServiceException, requests.HTTPError)) as refused:
            Collection(own.url, auth=Bearer(keys["alice"])).get_objects()
        assert "404" in str(refused.value)
