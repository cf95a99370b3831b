"""The README's example file, fixtures/partner-example.csv, through the client: checked in a dry run, and
submitted for real to a running exchange (pytest-django's live server on the test database), where the
per-seller policy is also seen from the exchange's side: a held-back seller is not stored at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_django.live_server_helper import LiveServer

from exchange.client.cli import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from exchange.client.csvinput import COLUMNS, CSV_KINDS, REASON_SEPARATOR
from exchange.client.images import DOWNLOAD_TIMEOUT, MAX_DOWNLOAD_BYTES
from exchange.contract import SELLER_REF_RULE, TIMESTAMP_EARLIEST, TIMESTAMP_MAX_OFFSET
from exchange.models import Seller, Sighting
from exchange.normalization import REASONS, STATUSES
from tests.client.helpers import run_cli
from tests.conftest import KeyedPlatform

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fixtures" / "partner-example.csv"
EXAMPLE_SELLERS = {"example-seller-001": 5, "example-seller-002": 4, "example-seller-003": 5}


def submit(
    live_server: LiveServer, platform: KeyedPlatform, tmp_path: Path, csv: Path, *extra: str
) -> tuple[int, str]:
    key_file = tmp_path / "api.key"
    key_file.write_text(platform.secret, encoding="utf-8")
    code, out, _ = run_cli(
        "submit",
        "--url",
        live_server.url,
        "--key-file",
        str(key_file),
        "--quiet",
        *extra,
        str(csv),
    )
    return code, out


def with_a_bad_row(tmp_path: Path) -> Path:
    """The example file with example-seller-002's phone row broken (a kind the exchange does not know)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    [phone] = [
        n for n, line in enumerate(lines) if line.startswith("example-seller-002") and ",phone," in line
    ]
    lines[phone] = lines[phone].replace(",phone,", ",fax,")
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_example_file_has_the_documented_header_and_is_valid_in_a_dry_run() -> None:
    assert EXAMPLE.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    code, out, _ = run_cli("submit", "--dry-run", str(EXAMPLE))
    assert code == EXIT_OK
    assert "rows read: 14\nrows rejected: 0\nrows held back: 0\n" in out
    assert "sellers to send: 3\nindicators to send: 14\nbatches to send: 1\n" in out


@pytest.mark.django_db(transaction=True)
def test_the_example_file_is_stored_by_a_real_exchange(
    live_server: LiveServer, acme: KeyedPlatform, tmp_path: Path
) -> None:
    code, out = submit(live_server, acme, tmp_path, EXAMPLE)

    assert code == EXIT_OK, out
    assert "sellers sent: 3\nindicators sent: 14\nnew sightings: 14\n" in out
    stored = {
        seller.seller_ref: seller.sightings.count()
        for seller in Seller.objects.filter(platform=acme.platform).prefetch_related("sightings")
    }
    assert stored == EXAMPLE_SELLERS
    first = Seller.objects.get(platform=acme.platform, seller_ref="example-seller-001")
    assert (first.status, first.reason_codes) == ("confirmed", "|counterfeit|trademark|")


@pytest.mark.django_db(transaction=True)
def test_a_seller_with_a_rejected_row_never_reaches_the_exchange_unless_asked(
    live_server: LiveServer, acme: KeyedPlatform, tmp_path: Path
) -> None:
    broken = with_a_bad_row(tmp_path)

    code, out = submit(live_server, acme, tmp_path, broken)
    assert code == EXIT_REJECTED
    assert "seller 'example-seller-002' not sent: line 8 rejected (unknown kind 'fax'" in out
    refs = set(Seller.objects.filter(platform=acme.platform).values_list("seller_ref", flat=True))
    assert refs == {"example-seller-001", "example-seller-003"}

    code, out = submit(live_server, acme, tmp_path, broken, "--send-valid-rows")
    assert code == EXIT_REJECTED
    assert "seller 'example-seller-002' sent with 3 of its 4 rows" in out
    held = Seller.objects.get(platform=acme.platform, seller_ref="example-seller-002")
    assert Sighting.objects.filter(seller=held).count() == 3


def partner_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## How a partner integrates")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_readme_states_the_rules_the_client_enforces() -> None:
    """The contract's facts live in code; this keeps the partner's documentation in step with them."""
    section = partner_section()
    assert f"`{','.join(COLUMNS)}`" in section
    for word in (*STATUSES, *REASONS, *CSV_KINDS):
        assert f"`{word}`" in section, word
    assert f"separated by `\\{REASON_SEPARATOR}`" in section  # escaped in the markdown table
    rule = SELLER_REF_RULE.removeprefix("1-128 characters of ").replace(" ", "")
    assert rule in section.replace(" ", "").replace("`", "")
    assert f"Not before {TIMESTAMP_EARLIEST:%Y-%m-%d}" in section
    assert f"within +-{int(TIMESTAMP_MAX_OFFSET.total_seconds() // 3600)}:00" in section
    # image rows: the download limits as the client enforces them
    assert f"at most {MAX_DOWNLOAD_BYTES // 2**20} MB and {DOWNLOAD_TIMEOUT:g} s" in section
    assert f"larger than {MAX_DOWNLOAD_BYTES // 2**20} MB" in section
    assert "fixtures/partner-example.csv" in section and "pip install ./exchange/client" in section
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED):
        assert f"\n| {code} | " in section and f"\n  {code}  " in EXIT_CODES


def test_image_rows_reach_a_real_exchange_as_hashes_and_link_a_copied_photo(
    live_server: LiveServer, acme: KeyedPlatform, bazaar: KeyedPlatform, tmp_path: Path
) -> None:
    """Two platforms' CSVs: the same product photo (the second one re-encoded, cropped and overlaid with text)
    and the same store name. The client hashes the photos; the exchange groups them and links the sellers."""
    import random

    from exchange.models import Indicator, SimilarItem
    from fixtures import images
    from graph.models import ClusterMember

    original = images.product_photo(21, "sneaker")
    for folder in ("acme", "bazaar"):
        (tmp_path / folder).mkdir()
    images.save(original, tmp_path / "acme" / "shoe.png")
    images.save(images.edited(original, random.Random(3)), tmp_path / "bazaar" / "IMG_0001.jpg")
    header = ",".join(COLUMNS)
    for folder, ref, photo in (
        ("acme", "acme-photo-1", "shoe.png"),
        ("bazaar", "bz-photo-1", "IMG_0001.jpg"),
    ):
        rows = [
            f"{ref},confirmed,counterfeit,2026-01-05T10:00:00Z,image,{photo}",
            f"{ref},confirmed,counterfeit,2026-01-05T10:00:00Z,store_name,Sole Outlet",
        ]
        (tmp_path / folder / "report.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")

    for platform, folder in ((acme, "acme"), (bazaar, "bazaar")):
        code, out = submit(live_server, platform, tmp_path / folder, tmp_path / folder / "report.csv")
        assert code == EXIT_OK, out

    assert SimilarItem.objects.count() == 2 and Indicator.objects.filter(kind="image").count() == 1
    clusters = set(
        ClusterMember.objects.filter(seller__seller_ref__in=["acme-photo-1", "bz-photo-1"]).values_list(
            "cluster_id", flat=True
        )
    )
    assert len(clusters) == 1
