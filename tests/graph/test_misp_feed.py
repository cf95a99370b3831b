"""The MISP feed (`manage.py export_misp_feed`, graph/misp.py), checked with MISP's own tools: every event loads
with PyMISP's `MISPEvent` and comes back the same from its feed writer (`to_feed`), validates against MISP's
JSON schema for the core format (shipped with PyMISP), and the manifest is what PyMISP computes from each event.

The world: Acme's acme-1 and acme-2 share a phone with Bazaar's baz-1; Bazaar's baz-2 shares a tax id with
Third's third-1 (a cluster Acme has no seller in); Acme's acme-3 and acme-4 share an email (one platform: not
in a feed).
"""

from __future__ import annotations

import copy
import json
import random
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import jsonschema
import pymisp
import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone
from pymisp import MISPEvent

from accounts.models import AuditEntry
from exchange.models import Indicator
from graph import misp
from graph.actions import do_update_cluster
from graph.models import ActorCluster
from graph.stix import PRODUCER_NAME, ClusterData, PlatformCount, SellerData
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform
from tests.graph.test_reports_leak import PLATFORMS, build_world
from tests.graph.test_stix_leak import co_clustered

pytestmark = pytest.mark.django_db

SCHEMA = json.loads((Path(pymisp.__file__).parent / "data" / "schema.json").read_text())
# What PyMISP's feed writer adds of its own to every event and tag (its defaults; not in MISP's schema).
PYMISP_DEFAULTS = {("protected", False), ("extends_uuid", ""), ("relationship_type", ""), ("local", False)}


@pytest.fixture
def world(acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform) -> dict[str, str]:
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
        (bazaar, [seller("baz-1", ("phone", "+4930111111")), seller("baz-2", ("tax_id", "DE123456789"))]),
        (third, [seller("third-1", ("tax_id", "DE123456789"), status="suspected")]),
    ):
        assert submit(kp.client(), *sellers).status_code == 201

    def ref(seller_ref: str) -> str:
        return ActorCluster.objects.live().get(members__seller__seller_ref=seller_ref).ref

    return {"shared": ref("acme-1"), "bazaar_third": ref("baz-2"), "acme_only": ref("acme-3")}


def export(out: Path, *args: str) -> str:
    stdout = StringIO()
    call_command("export_misp_feed", str(out), *args, stdout=stdout, stderr=StringIO())
    return stdout.getvalue()


def read_feed(out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The manifest and {uuid: event} of a feed directory, asserting it holds nothing else."""
    manifest = json.loads((out / "manifest.json").read_text())
    events = {
        path.stem: json.loads(path.read_text()) for path in out.glob("*.json") if path.stem != "manifest"
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *(f"{u}.json" for u in events)])
    return manifest, events


def _pymisp_default(key: str, value: Any) -> bool:
    return isinstance(value, bool | str) and (key, value) in PYMISP_DEFAULTS


def normalised(value: Any) -> Any:
    """Numbers as strings (MISP's core format writes them as strings, PyMISP as numbers), PyMISP's defaults
    dropped: what is left must be equal."""
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items() if not _pymisp_default(k, v)}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def by_ref(events: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{cluster ref: event body}: the ref is the event's threat-actor attribute."""
    found = {}
    for event in events.values():
        (actor,) = [a for a in event["Event"]["Attribute"] if a["type"] == "threat-actor"]
        found[actor["value"]] = event["Event"]
    return found


def sellers_of(event: dict[str, Any]) -> dict[str, str]:
    """{seller_ref: comment} of the event's seller attributes."""
    return {a["value"]: a["comment"] for a in event["Attribute"] if a["type"] == "text"}


def tag_names(tagged: dict[str, Any]) -> set[str]:
    return {tag["name"] for tag in tagged.get("Tag", [])}


# --- MISP's tools accept the feed --------------------------------------------------------------------------


def test_every_event_loads_with_pymisp_round_trips_and_passes_mispsjson_schema(world, tmp_path: Path):
    out = tmp_path / "feed"
    export(out)
    _, events = read_feed(out)
    assert len(events) == 2  # the two cross-platform clusters; Acme's own pair is not in a feed
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    for uid, event in events.items():
        validator.validate(event)
        loaded = MISPEvent()
        loaded.load_file(str(out / f"{uid}.json"))
        assert loaded.uuid == uid and loaded.Orgc.name == PRODUCER_NAME
        assert normalised(loaded.to_feed()["Event"]) == normalised(event["Event"])
        assert len(loaded.attributes) == len(event["Event"]["Attribute"])
        # The same through load() of the text, as MISP's fetcher hands it over.
        again = MISPEvent()
        again.load((out / f"{uid}.json").read_text())
        assert normalised(again.to_feed()["Event"]) == normalised(event["Event"])


def test_the_manifest_is_what_pymisp_computes_from_each_event(world, tmp_path: Path):
    out = tmp_path / "feed"
    export(out)
    manifest, events = read_feed(out)
    assert set(manifest) == set(events)
    for uid, event in events.items():
        loaded = MISPEvent()
        loaded.load(copy.deepcopy(event))  # PyMISP consumes the dict it loads
        assert normalised(loaded.manifest) == normalised({uid: manifest[uid]})
        entry = manifest[uid]
        assert isinstance(entry["timestamp"], int) and entry["timestamp"] == int(event["Event"]["timestamp"])


# --- what the full view holds ------------------------------------------------------------------------------


def test_full_view_names_every_member_with_its_platform_and_the_analysts_status(world, tmp_path: Path):
    out = tmp_path / "feed"
    summary = export(out)
    assert "Wrote 2 event(s)" in summary and "view: full" in summary and "TLP:AMBER+STRICT" in summary
    _, events = read_feed(out)
    shared = by_ref(events)[world["shared"]]
    assert sellers_of(shared) == {
        "acme-1": sellers_of(shared)["acme-1"],
        "acme-2": sellers_of(shared)["acme-2"],
        "baz-1": sellers_of(shared)["baz-1"],
    }
    assert sellers_of(shared)["baz-1"].startswith("Seller account on Bazaar North (confirmed, reported ")
    baz = next(a for a in shared["Attribute"] if a["value"] == "baz-1")
    assert tag_names(baz) == {
        'bad-actor-exchange:platform="Bazaar North"',
        'bad-actor-exchange:seller-status="confirmed"',
    }
    assert baz["category"] == "Attribution" and baz["disable_correlation"] is True and baz["to_ids"] is False
    counts = {a["comment"]: a["value"] for a in shared["Attribute"] if a["type"] == "counter"}
    assert counts == {
        "Seller accounts in the cluster": "3",
        "Platforms with accounts in it": "2",
        "Seller accounts on Acme Market": "2",
        "Seller accounts on Bazaar North": "1",
    }
    cluster = ActorCluster.objects.get(ref=world["shared"])
    (risk,) = [a for a in shared["Attribute"] if a["type"] == "integer"]
    assert risk["value"] == str(cluster.risk)
    assert shared["threat_level_id"] == str(misp.threat_level(cluster.risk))
    assert tag_names(shared) == {
        "tlp:amber+strict",
        'bad-actor-exchange:linked-by="phone"',
        'bad-actor-exchange:cluster-status="new"',
    }
    assert shared["analysis"] == "0" and shared["published"] is True
    assert shared["date"] == cluster.created_at.date().isoformat()
    assert shared["info"].startswith(f"Actor cluster {world['shared']}: 3 seller accounts on 2 platforms")
    third = by_ref(events)[world["bazaar_third"]]
    assert set(sellers_of(third)) == {"baz-2", "third-1"}


def test_event_uuids_and_content_are_stable_across_exports(world, tmp_path: Path):
    export(tmp_path / "one")
    export(tmp_path / "two")
    for path in (tmp_path / "one").iterdir():
        assert (tmp_path / "two" / path.name).read_bytes() == path.read_bytes()
    _, events = read_feed(tmp_path / "one")
    assert set(by_ref(events)) == {world["shared"], world["bazaar_third"]}
    assert misp.event_uuid(world["shared"]) in events


def test_a_status_change_is_a_newer_event_that_misp_takes(world, alice, tmp_path: Path):
    export(tmp_path / "before")
    cluster = ActorCluster.objects.get(ref=world["shared"])
    with time_machine.travel(timezone.now() + timedelta(minutes=5), tick=False):
        do_update_cluster(cluster, "alice", {"status": "investigating"})
    export(tmp_path / "after")
    uid = misp.event_uuid(world["shared"])
    before, after = (
        json.loads((tmp_path / d / f"{uid}.json").read_text())["Event"] for d in ("before", "after")
    )
    assert int(after["timestamp"]) > int(before["timestamp"])
    assert all(a["timestamp"] == after["timestamp"] for a in after["Attribute"])  # MISP updates each one
    assert 'bad-actor-exchange:cluster-status="investigating"' in tag_names(after)
    assert after["analysis"] == "1"
    manifest, _ = read_feed(tmp_path / "after")
    assert manifest[uid]["timestamp"] == int(after["timestamp"])


def test_since_keeps_the_clusters_changed_since(world, tmp_path: Path):
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert "Wrote 0 event(s)" in export(tmp_path / "none", "--since", tomorrow)
    assert read_feed(tmp_path / "none") == ({}, {})
    export(tmp_path / "all", "--since", "2020-01-01T00:00:00+00:00")
    assert len(read_feed(tmp_path / "all")[1]) == 2


def test_the_export_is_audited_with_its_view_and_cluster_refs(world, acme, tmp_path: Path):
    export(tmp_path / "full", "--cluster", world["shared"])
    export(tmp_path / "acme", "--platform", "acme")
    full, partner = AuditEntry.objects.filter(action="misp_feed_export").order_by("id")
    assert full.details == {"view": "full", "tlp": "amber+strict", "since": None, "refs": [world["shared"]]}
    assert full.platform is None
    assert partner.details["view"] == "acme" and partner.platform == acme.platform
    assert partner.details["refs"] == [world["shared"]]


def test_force_replaces_a_feed_written_before(world, tmp_path: Path):
    out = tmp_path / "feed"
    export(out, "--cluster", world["shared"])
    (out / "hashes.csv").write_text("")  # a feed file of another generator: a feed's, so replaced too
    export(out, "--force")
    _, events = read_feed(out)
    assert len(events) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed"]  # nothing left beside it


# --- a partner's view --------------------------------------------------------------------------------------


def test_partner_view_holds_its_own_sellers_and_others_as_counts(world, acme, tmp_path: Path):
    acme.platform.stix_tlp = "green"
    acme.platform.save(update_fields=["stix_tlp"])
    out = tmp_path / "acme"
    assert "view: acme" in export(out, "--platform", "acme")
    _, events = read_feed(out)
    (event,) = by_ref(events).values()  # the cluster with Bazaar; not Bazaar and Third's, not its own pair
    assert set(sellers_of(event)) == {"acme-1", "acme-2"}
    counts = {a["comment"]: a["value"] for a in event["Attribute"] if a["type"] == "counter"}
    assert counts["Seller accounts on Platform A"] == "1"
    assert tag_names(event) == {"tlp:green", 'bad-actor-exchange:linked-by="phone"'}  # no analysts' status
    text = (out / f"{event['uuid']}.json").read_text() + (out / "manifest.json").read_text()
    assert "baz-" not in text and "Bazaar" not in text and "bazaar" not in text
    assert event["uuid"] == misp.event_uuid(world["shared"], "acme") != misp.event_uuid(world["shared"])
    jsonschema.validators.validator_for(SCHEMA)(SCHEMA).validate({"Event": event})


# --- bad arguments: a CommandError naming what is wrong, and nothing written --------------------------------


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--cluster", "ac_nosuchcluster"], "No such cluster: ac_nosuchcluster"),
        (["--cluster", "{acme_only}"], "Not a live cross-platform cluster"),
        (["--platform", "nosuch"], "No such platform: nosuch"),
        (["--platform", "acme", "--cluster", "{bazaar_third}"], "of acme's sellers"),
        (["--since", "last week"], "--since 'last week' is not a date"),
        (["--since", "2026-02-30"], "is not a date"),
    ],
)
def test_bad_arguments_are_command_errors_and_write_nothing(world, tmp_path: Path, args, mentions):
    out = tmp_path / "feed"
    with pytest.raises(CommandError, match=mentions):
        export(out, *(arg.format(**world) for arg in args))
    assert list(tmp_path.iterdir()) == []
    assert not AuditEntry.objects.filter(action="misp_feed_export").exists()


def test_a_non_empty_dir_needs_force_and_force_touches_no_foreign_file(world, tmp_path: Path):
    out = tmp_path / "feed"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="is not empty"):
        export(out)
    with pytest.raises(CommandError, match=r"not a MISP feed's, left untouched: notes\.txt"):
        export(out, "--force")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["feed"]


def test_an_unwritable_or_impossible_dir_is_a_command_error(world, tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CommandError, match="is not a directory"):
        export(tmp_path / "file")
    with pytest.raises(CommandError, match=r"parent directory .* does not exist"):
        export(tmp_path / "missing" / "feed")
    # /proc refuses new directories even to root (the tests may run as root, which chmod does not stop).
    with pytest.raises(CommandError, match="Cannot write beside /proc/misp-feed"):
        export(Path("/proc/misp-feed"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert not AuditEntry.objects.filter(action="misp_feed_export").exists()


def test_an_empty_existing_dir_is_used(world, tmp_path: Path):
    out = tmp_path / "feed"
    out.mkdir()
    export(out)
    assert len(read_feed(out)[1]) == 2


# --- the pure mapping --------------------------------------------------------------------------------------


def cluster_data(**changes: Any) -> ClusterData:
    now = timezone.now()
    fields: dict[str, Any] = {
        "ref": "ac_test",
        "risk": 55,
        "kinds": ["phone"],
        "size": 2,
        "platforms": 2,
        "cross_platform": True,
        "first_seen": now,
        "changed_at": now,
        "sellers": [SellerData('ref "quoted"', 'Mart "Q"', "confirmed", now, "q")],
        "counts": [PlatformCount('Mart "Q"', 1), PlatformCount("Other", 1)],
    }
    return ClusterData(**{**fields, **changes})


@pytest.mark.parametrize(
    ("risk", "level"), [(100, "1"), (70, "1"), (69, "2"), (40, "2"), (39, "3"), (0, "3")]
)
def test_risk_bands_give_the_threat_level(risk: int, level: str) -> None:
    assert misp.event(cluster_data(risk=risk))["Event"]["threat_level_id"] == level


def test_info_stays_within_misps_limit_and_tags_stay_well_formed() -> None:
    event = misp.event(cluster_data(kinds=[f"kind_{n:02d}_with_a_long_name" for n in range(20)]))["Event"]
    assert len(event["info"]) == misp.INFO_MAX and event["info"].endswith("...")
    (seller_attribute,) = [a for a in event["Attribute"] if a["type"] == "text"]
    assert seller_attribute["value"] == 'ref "quoted"'  # the value itself is the partner's reference
    assert "bad-actor-exchange:platform=\"Mart 'Q'\"" in tag_names(seller_attribute)
    jsonschema.validators.validator_for(SCHEMA)(SCHEMA).validate({"Event": event})
    MISPEvent().load({"Event": event})


def test_last_change_is_the_latest_of_membership_status_and_reports() -> None:
    now = timezone.now()
    base = cluster_data(changed_at=now - timedelta(days=3), sellers=[])
    assert misp.last_change(base) == now - timedelta(days=3)
    status_changed = cluster_data(changed_at=now - timedelta(days=3), sellers=[], last_event_at=now)
    assert misp.last_change(status_changed) == now
    reported = SellerData("r", "P", "confirmed", now + timedelta(seconds=1), "p")
    assert misp.last_change(cluster_data(sellers=[reported])) == now + timedelta(seconds=1)


# --- leaks: the 12-platform canary world -------------------------------------------------------------------


def feed_text(out: Path) -> str:
    return "\n".join(path.read_text() for path in sorted(out.iterdir()))


@pytest.mark.parametrize("reveal", [False, True])
def test_no_partner_feed_contains_another_platforms_canary(reveal: bool, tmp_path: Path) -> None:
    with override_settings(EXCHANGE_REVEAL_PLATFORM_NAMES=reveal):
        platforms, hashes = build_world(random.Random(3))
        tokens = list(Indicator.objects.values_list("token", flat=True))
        secrets = [kp.secret for kp in platforms] + [kp.key.lookup for kp in platforms]
        shared = 0
        for n, kp in enumerate(platforms):
            partners = co_clustered(n, platforms)
            out = tmp_path / kp.platform.slug
            export(out, "--platform", kp.platform.slug)
            text = feed_text(out)
            for other in range(PLATFORMS):
                if other == n:
                    continue
                assert f"CANARY-p{other:02d}-" not in text, (n, other)
                if not reveal or other not in partners:
                    assert f"Mart-p{other:02d}-Canary" not in text, (n, other)
            assert "NOTECANARY" not in text and "cluster-status" not in text
            assert not any(token in text for token in tokens)
            assert not any(h in text for h in hashes)
            assert not any(secret in text for secret in secrets)
            if partners - {n}:
                # Positive control: its own sellers are there, and (revealed) a partner's name.
                assert f"CANARY-p{n:02d}-" in text
                if reveal:
                    assert any(f"Mart-p{o:02d}-Canary" in text for o in partners - {n})
            shared += bool(partners - {n})
        assert shared > PLATFORMS // 2  # most platforms share a ring: the test is not vacuous
        # The full view names everyone, but never a note, token or hash.
        export(tmp_path / "full")
        text = feed_text(tmp_path / "full")
        assert "CANARY-p" in text and "NOTECANARY" not in text
        assert not any(token in text for token in tokens) and not any(h in text for h in hashes)
