"""The law-enforcement referral package: posted from the cluster page, a ZIP of a PDF (read back with pypdf),
cluster.json, three CSVs, a manifest and SHA256SUMS (checked with the system's `sha256sum -c`); a partner
analyst's package holds its own sellers by reference and nothing of other platforms but counts and aliases."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import re
import subprocess
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
import time_machine
from django.test import Client

from accounts.models import AuditEntry
from exchange.models import AnalystLookupUsage, Indicator
from graph import referral
from graph.models import ActorCluster
from tests.admin_world import AdminWorld, build, logged_in
from tests.graph.test_admin import CLUSTERS, change_url, page, ref_url

pytestmark = pytest.mark.django_db

NOTE = "Hamburg dock warehouse ships for all four accounts"
DATA_FILES = {"cluster.json", "members.csv", "evidence.csv", "timeline.csv"}


@pytest.fixture
def world(acme, bazaar) -> AdminWorld:
    world = build(acme, bazaar)
    ActorCluster.objects.filter(pk=world.ring.pk).update(notes=NOTE)
    world.ring.refresh_from_db()
    return world


def referral_url(ident: object) -> str:
    return f"{CLUSTERS}{ident}/referral/"


def create(client: Client, ident: object) -> Any:
    return client.post(referral_url(ident))


def files_of(response: Any) -> tuple[str, dict[str, bytes]]:
    """The ZIP's one folder and its files."""
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    folders = {name.split("/")[0] for name in archive.namelist()}
    assert len(folders) == 1
    (folder,) = folders
    return folder, {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}


def pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    assert len(reader.pages) >= 1
    return "\n".join(page.extract_text() for page in reader.pages)


def squeezed(text: str) -> str:
    """The text without white space: a long reference the PDF wraps in a table cell is found all the same."""
    return re.sub(r"\s+", "", text)


def rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


# --- what an exchange analyst gets --------------------------------------------------------------------------


def test_exchange_analyst_gets_every_file_and_the_manifest_hashes_each_of_them(world, alice):
    response = create(logged_in(alice), world.ring.pk)
    folder, files = files_of(response)
    assert set(files) == set(referral.FILES)
    assert folder.startswith(f"referral-{world.ring.ref}-")
    assert response["Content-Disposition"] == f'attachment; filename="{folder}.zip"'
    manifest = json.loads(files["manifest.json"])
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) == set(referral.FILES) - {"manifest.json", "SHA256SUMS"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest(), name
        assert entry["size"] == len(files[name]), name
    assert (manifest["cluster"], manifest["view"], manifest["platform"], manifest["created_by"]) == (
        world.ring.ref,
        "full",
        None,
        "alice",
    )
    created = datetime.strptime(manifest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)

    document = json.loads(files["cluster.json"])
    assert document["notes"] == NOTE
    assert document["cluster"]["cluster_id"] == world.ring.pk
    assert [(p["platform"], p["accounts"], p["listed"]) for p in document["platforms"]] == [
        ("Acme Market", 2, True),
        ("Bazaar North", 2, True),
    ]
    assert [m["seller_ref"] for m in document["members"]] == ["acme-1", "acme-2", "baz-1", "baz-2"]
    assert [p["name"] for p in document["risk"]] == [
        "platforms",
        "reports",
        "evidence",
        "recency",
        "opinions",
    ]
    assert sum(p["points"] for p in document["risk"]) == world.ring.risk
    # The evidence reaches all four members in three links, each with its kinds and first-seen date.
    evidence = rows(files["evidence.csv"])
    assert {(r["from"], r["to"], r["kind"]) for r in evidence} == {
        ("acme-1", "acme-2", "phone"),
        ("acme-1", "baz-1", "email"),
        ("baz-1", "baz-2", "tax_id"),
    }
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", r["first_seen"]) for r in evidence)
    assert [r["seller_ref"] for r in rows(files["members.csv"])] == ["acme-1", "acme-2", "baz-1", "baz-2"]
    timeline = rows(files["timeline.csv"])
    assert {r["lane"] for r in timeline} >= {"acme-1", "acme-2", "baz-1", "baz-2", "Cluster events"}
    assert [r["at"] for r in timeline] == sorted(r["at"] for r in timeline)
    # No indicator value or token ever leaves the exchange in a package.
    tokens = list(Indicator.objects.values_list("token", flat=True))
    for content in files.values():
        assert not any(token.encode() in content for token in tokens)


def test_sha256sum_checks_the_extracted_folder_and_notices_an_altered_file(world, alice, tmp_path):
    response = create(logged_in(alice), world.ring.pk)
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path)
    (folder,) = tmp_path.iterdir()
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sorted(checked.stdout.splitlines()) == sorted(
        f"{name}: OK" for name in referral.FILES if name != "SHA256SUMS"
    )
    members = folder / "members.csv"
    members.write_bytes(members.read_bytes().replace(b"acme-2", b"acme-9"))
    altered = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert altered.returncode != 0 and "members.csv: FAILED" in altered.stdout


def test_exchange_analysts_pdf_names_the_cluster_platforms_kinds_members_and_the_note(world, alice):
    _, files = files_of(create(logged_in(alice), world.ring.pk))
    assert files["referral.pdf"].startswith(b"%PDF-")
    text = pdf_text(files["referral.pdf"])
    assert world.ring.ref in text
    assert "Acme Market: 2 accounts" in text and "Bazaar North: 2 accounts" in text
    for kind in ("email", "phone", "tax_id"):
        assert kind in text
    for ref in ("acme-1", "acme-2", "baz-1", "baz-2"):
        assert ref in text
    assert NOTE in " ".join(text.split())
    assert "Prepared by alice" in text


def test_the_pdf_lists_long_tables_in_part_and_points_to_the_files_holding_every_row(
    world, alice, monkeypatch
):
    monkeypatch.setattr(referral, "PDF_ROWS", 2)  # a cluster of thousands of members, in miniature
    _, files = files_of(create(logged_in(alice), world.ring.pk))
    text = " ".join(pdf_text(files["referral.pdf"]).split())
    assert "2 more rows in members.csv: this report lists the first 2." in text
    assert "acme-1" in text and "baz-2" not in text
    assert "more rows in timeline.csv" in text
    assert [r["seller_ref"] for r in rows(files["members.csv"])] == ["acme-1", "acme-2", "baz-1", "baz-2"]


# --- what a partner analyst gets ----------------------------------------------------------------------------


def test_partner_analysts_package_holds_their_sellers_and_other_platforms_only_as_counts(world, bob, alice):
    # An analyst action and a note exist: neither the action's author nor the note may reach Bob's package.
    client = logged_in(alice)
    work = {"status": "investigating", "assignee": str(alice.pk), "notes": NOTE}
    assert client.post(change_url(world.ring), work).status_code == 302
    folder, files = files_of(create(logged_in(bob), world.ring.ref))
    assert set(files) == set(referral.FILES)
    text = pdf_text(files["referral.pdf"])
    assert world.ring.ref in text and "Acme Market: 2 accounts" in text and "Platform A: 2 accounts" in text
    assert "acme-1" in text and "acme-2" in text
    for kind in ("email", "phone", "tax_id"):
        assert kind in text
    everything = "\n".join(
        [text, *(content.decode() for name, content in files.items() if name in DATA_FILES)]
    )
    for hidden in ("baz-1", "baz-2", "Bazaar North", NOTE, "Hamburg", "alice", f"#{world.ring.pk}"):
        assert hidden not in everything and squeezed(hidden) not in squeezed(everything), hidden
    document = json.loads(files["cluster.json"])
    assert "notes" not in document
    assert "cluster_id" not in document["cluster"] and "assignee" not in document["cluster"]
    assert [(p["platform"], p["accounts"], p["own"], p["listed"]) for p in document["platforms"]] == [
        ("Acme Market", 2, True, True),
        ("Platform A", 2, False, False),
    ]
    assert [(r["platform"], r["accounts"], r["seller_ref"]) for r in rows(files["members.csv"])] == [
        ("Acme Market", "1", "acme-1"),
        ("Acme Market", "1", "acme-2"),
        ("Platform A", "2", ""),
    ]
    # Another platform's members appear in the evidence and the timeline by alias and month, as on the page.
    assert any(r["to"] == "Platform A · account 1" for r in rows(files["evidence.csv"]))
    tax_id = next(i for i in document["indicators"] if i["kind"] == "tax_id")
    assert re.fullmatch(r"\d{4}-\d\d", tax_id["first_seen"]) and "holders" not in tax_id
    assert not [r for r in rows(files["timeline.csv"]) if r["what"] == "action"]
    manifest = json.loads(files["manifest.json"])
    assert (manifest["view"], manifest["platform"], manifest["created_by"]) == (
        "partner",
        "Acme Market",
        "bob",
    )
    assert folder.startswith(f"referral-{world.ring.ref}-")


def test_partner_analyst_asking_for_another_platforms_cluster_gets_404(world, bob, carol, dave):
    bob_client = logged_in(bob)
    assert create(bob_client, world.bazaar_only.ref).status_code == 404
    assert create(bob_client, world.ring.pk).status_code == 404  # partners address clusters by reference only
    assert create(bob_client, "ac_0000000000000000").status_code == 404
    assert create(logged_in(dave), world.ring.ref).status_code == 403  # staff without an analyst profile
    assert not AuditEntry.objects.filter(action="referral_package").exists()
    assert not AnalystLookupUsage.objects.exists()  # nothing shown, nothing charged
    # The owner's analyst gets it (the 404 is about scope, not about the cluster).
    assert files_of(create(logged_in(carol), world.bazaar_only.ref))[1]
    assert Client().post(referral_url(world.ring.ref)).status_code == 302  # anonymous: to the login page


def test_creating_is_a_post_with_csrf_offered_on_the_cluster_page(world, alice, bob):
    response = logged_in(alice).get(referral_url(world.ring.pk))
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert logged_in(bob).get(referral_url(world.ring.ref)).status_code == 405
    assert not AuditEntry.objects.filter(action="referral_package").exists()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(referral_url(world.ring.pk)).status_code == 403
    html = page(client, change_url(world.ring))
    form = re.search(
        rf'<form method="post" action="{referral_url(world.ring.pk)}"[^>]*>.*?'
        r'name="csrfmiddlewaretoken" value="([^"]+)"',
        html,
        re.S,
    )
    assert form is not None
    posted = client.post(referral_url(world.ring.pk), {"csrfmiddlewaretoken": form.group(1)})
    assert files_of(posted)[1]
    # A partner analyst's page offers it by reference.
    assert f'action="{referral_url(world.ring.ref)}"' in page(logged_in(bob), ref_url(world.ring))


def test_creating_a_package_is_audited_with_its_hash_and_view_and_no_identifiers(world, alice, bob):
    full = create(logged_in(alice), world.ring.pk)
    partner = create(logged_in(bob), world.ring.ref)
    entries = list(AuditEntry.objects.filter(action="referral_package").order_by("id"))
    assert [(e.actor, e.platform_id, e.object_type, e.object_id) for e in entries] == [
        ("alice", None, "cluster", str(world.ring.pk)),
        ("bob", world.acme.platform.pk, "cluster", str(world.ring.pk)),
    ]
    assert entries[0].details == {"sha256": hashlib.sha256(full.content).hexdigest(), "view": "full"}
    assert entries[1].details == {"sha256": hashlib.sha256(partner.content).hexdigest(), "view": "partner"}


def test_partner_packages_are_metered_like_cluster_pages(world, alice, bob, settings):
    settings.EXCHANGE_ANALYST_DAILY_QUOTA = 1
    client = logged_in(bob)
    assert files_of(create(client, world.ring.ref))[1]
    assert AnalystLookupUsage.objects.get(platform=world.acme.platform).count == 1
    refused = create(client, world.ring.ref)
    assert refused.status_code == 429 and "quota reached" in refused.content.decode()
    assert AuditEntry.objects.filter(action="referral_package").count() == 1
    assert files_of(create(logged_in(alice), world.ring.pk))[1]  # exchange analysts are not metered
    assert AnalystLookupUsage.objects.get(platform=world.acme.platform).count == 1


def test_same_data_gives_the_same_json_and_csv_bytes(world, alice, bob):
    for user, ident in ((alice, world.ring.pk), (bob, world.ring.ref)):
        with time_machine.travel(datetime.now(UTC) + timedelta(minutes=5), tick=False):
            _, first = files_of(create(logged_in(user), ident))
        with time_machine.travel(datetime.now(UTC) + timedelta(minutes=9), tick=False):
            _, second = files_of(create(logged_in(user), ident))
        for name in DATA_FILES:
            assert first[name] == second[name], name
        # The manifest differs in when it was made, and in the PDF's hash (the PDF says when it was prepared).
        one, two = json.loads(first["manifest.json"]), json.loads(second["manifest.json"])
        assert one.pop("created_at") != two.pop("created_at")
        pdfs = [[f for f in m.pop("files") if f["name"] == "referral.pdf"] for m in (one, two)]
        assert one == two and pdfs[0] != pdfs[1]


# --- the pure assembly --------------------------------------------------------------------------------------


def test_csv_cells_that_a_spreadsheet_would_run_are_defused_and_json_keeps_the_value():
    facts = referral.ClusterFacts(
        "ac_0123456789abcdef",
        "new",
        50,
        1,
        1,
        False,
        (),
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z",
        None,
        None,
    )
    member = referral.MemberRow("Acme", "=HYPERLINK(1)", "confirmed", ("counterfeit",), "", "", "", "active")
    data = referral.ReferralData(
        referral.FULL,
        None,
        facts,
        (),
        (referral.PlatformMembers("Acme", 1, False, True),),
        (member,),
        (),
        (),
        (),
    )
    files = referral.data_files(data)
    assert rows(files["members.csv"])[0]["seller_ref"] == "'=HYPERLINK(1)"
    assert json.loads(files["cluster.json"])["members"][0]["seller_ref"] == "=HYPERLINK(1)"


class CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"body { color: red }")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_pdf_fetches_no_url_but_renders_inline_data(tmp_path: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = tmp_path / "secret.txt"
    local.write_text("LOCAL FILE CONTENT")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # A 1x1 PNG as inline data: the one kind of URL the renderer reads.
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    html = (
        f'<html><head><link rel="stylesheet" href="{base}/style.css">'
        f'<style>@import url("{base}/imported.css");</style></head><body><p>Fetch nothing</p>'
        f'<img src="{base}/remote.png"><img src="file://{local}"><object data="file://{local}"></object>'
        f'<img src="{pixel}"></body></html>'
    )
    try:
        pdf = referral.render_pdf(html)
    finally:
        server.shutdown()
        server.server_close()
    assert CountingHandler.requests == []
    text = pdf_text(pdf)
    assert "Fetch nothing" in text and "LOCAL FILE CONTENT" not in text
    images = sum(len(page_.images) for page_ in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert images == 1  # the inline pixel, and nothing fetched


def test_rendering_a_pdf_leaves_pillows_truncated_image_check_on() -> None:
    """WeasyPrint's import turns on Pillow's process-wide LOAD_TRUNCATED_IMAGES; after a package the server
    must still refuse truncated images (tests/exchange/test_perceptual.py). A fresh process: the import runs."""
    import subprocess
    import sys

    script = (
        "from PIL import ImageFile\n"
        "from graph.referral import render_pdf\n"
        "assert render_pdf('<p>x</p>').startswith(b'%PDF')\n"
        "assert ImageFile.LOAD_TRUNCATED_IMAGES is False, 'WeasyPrint left truncated images accepted'\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
