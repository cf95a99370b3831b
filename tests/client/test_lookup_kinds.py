"""`lookup` of photos, documents, and names and addresses as typed (issues 13 and 14, client side): each value is
hashed on the partner's side as `submit` hashes a CSV row of its kind, and only the hashes are sent; the answer
printed is the exchange's (for a document, with `reported_falsified`, to screen an appeal's document)."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pytest_django.live_server_helper import LiveServer

from exchange import fuzzy
from exchange.client.cli import EXIT_OK, EXIT_USAGE, main
from exchange.client.documents import CONSORTIUM_KEY_ENV
from exchange.perceptual import pdq_variants
from fixtures import documents as fx
from fixtures import images
from tests.client.helpers import run_cli
from tests.client.test_client import API_KEY, FakeExchange, exchange, limits_answer
from tests.client.test_fuzzy_rows import forms_of, sent_bodies
from tests.conftest import KeyedPlatform

KEY = bytes(range(7, 39))
HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"
PERSON = "Dr. Łukasz Wiśniewski"
PERSON_VARIANT = "Lukasz Wisniewsky"
ADDRESS = "12 Baker St., Apt 4, London NW1 6XE"

__all__ = ["exchange", "sent_bodies"]  # fixtures, used here by name


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "consortium.key"
    path.write_text(KEY.hex() + "\n", encoding="ascii")
    return path


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONSORTIUM_KEY_ENV, raising=False)


def api_key_file(tmp_path: Path, platform: KeyedPlatform) -> Path:
    path = tmp_path / f"{platform.platform.slug}.key"
    path.write_text(platform.secret, encoding="utf-8")
    return path


def submit(
    live_server: LiveServer, platform: KeyedPlatform, tmp_path: Path, rows: list[tuple[str, str]], key: Path
) -> None:
    """``platform`` reports seller s-1 for falsified documents and counterfeits, with the given rows."""
    seller = "s-1,confirmed,falsified_documents|counterfeit,2025-01-31T12:00:00Z"
    csv = tmp_path / "reports.csv"
    csv.write_text(HEADER + "".join(f'{seller},{kind},"{value}"\n' for kind, value in rows), encoding="utf-8")
    code, out, err = run_cli(
        "submit",
        "--url",
        live_server.url,
        "--key-file",
        str(api_key_file(tmp_path, platform)),
        "--consortium-key-file",
        str(key),
        "--quiet",
        str(csv),
    )
    assert code == EXIT_OK, out + err


def lookup(
    live_server: LiveServer, platform: KeyedPlatform, tmp_path: Path, kind: str, *values: str
) -> list[dict[str, Any]]:
    code, out, err = run_cli(
        "lookup",
        "--url",
        live_server.url,
        "--key-file",
        str(api_key_file(tmp_path, platform)),
        "--kind",
        kind,
        *values,
    )
    assert code == EXIT_OK, out + err
    results: list[dict[str, Any]] = json.loads(out)["results"]
    return results


def lookup_with_key(
    live_server: LiveServer, platform: KeyedPlatform, tmp_path: Path, key: Path, kind: str, *values: str
) -> list[dict[str, Any]]:
    return lookup(live_server, platform, tmp_path, kind, "--consortium-key-file", str(key), *values)


# --- against a real exchange ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_appeals_document_is_screened_and_the_answer_says_it_was_reported_falsified(
    live_server: LiveServer,
    acme: KeyedPlatform,
    bazaar: KeyedPlatform,
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    letter = fx.write_pdf(fx.document(5), tmp_path / "letter.pdf")
    submit(live_server, acme, tmp_path, [("document", str(letter))], key_file)
    # Bazaar's seller appeals with an edited copy of acme's falsified letter, and with a letter of its own.
    appeal = fx.write_pdf(fx.edited(fx.document(5), random.Random(2)), tmp_path / "appeal.pdf")
    own = fx.write_pdf(fx.document(11), tmp_path / "own.pdf")
    monkeypatch.setenv(CONSORTIUM_KEY_ENV, str(key_file))  # the key from the environment, as submit takes it

    copy, unrelated = lookup(live_server, bazaar, tmp_path, "document", str(appeal), str(own))

    assert (copy["kind"], copy["match"], copy["other_platforms"]) == ("document", True, 1)
    assert (copy["reported_sellers"], copy["reported_falsified"]) == (1, 1)
    assert (unrelated["match"], unrelated["reported_falsified"]) == (False, 0)


@pytest.mark.django_db(transaction=True)
def test_a_photo_lookup_of_an_edited_copy_matches(
    live_server: LiveServer, acme: KeyedPlatform, bazaar: KeyedPlatform, tmp_path: Path, key_file: Path
) -> None:
    photo = images.save(images.product_photo(7, "handbag"), tmp_path / "bag.jpg")
    submit(live_server, acme, tmp_path, [("image", str(photo))], key_file)
    copy = images.save(
        images.edited(images.product_photo(7, "handbag"), random.Random(3)), tmp_path / "copy.jpg"
    )
    other = images.save(images.product_photo(8, "handbag"), tmp_path / "other.png")

    found, not_found = lookup(live_server, bazaar, tmp_path, "image", str(copy), str(other))

    assert (found["kind"], found["match"], found["other_platforms"]) == ("image", True, 1)
    assert found["reported_falsified"] is None  # documents only
    assert not_found["match"] is False


@pytest.mark.django_db(transaction=True)
def test_a_person_name_lookup_of_a_variant_matches_and_no_raw_name_leaves_the_machine(
    live_server: LiveServer,
    acme: KeyedPlatform,
    bazaar: KeyedPlatform,
    tmp_path: Path,
    key_file: Path,
    sent_bodies: list[bytes],
) -> None:
    submit(live_server, acme, tmp_path, [("person_name", PERSON), ("shipping_address", ADDRESS)], key_file)
    sent_bodies.clear()

    code, out, err = run_cli(
        "lookup",
        "--url",
        live_server.url,
        "--key-file",
        str(api_key_file(tmp_path, bazaar)),
        "--consortium-key-file",
        str(key_file),
        "--kind",
        "person_name",
        PERSON_VARIANT,
        PERSON_VARIANT,
        "Margarethe Oberholzer",
    )
    assert code == EXIT_OK, out + err
    variant, again, stranger = json.loads(out)["results"]
    assert (variant["kind"], variant["match"], variant["other_platforms"]) == ("person_name", True, 1)
    assert again["match"] is True and stranger["match"] is False

    [body] = [json.loads(raw) for raw in sent_bodies if b'"indicators"' in raw]
    first, second, _ = (indicator["encoding"] for indicator in body["indicators"])
    assert set(body["indicators"][0]) == {"kind", "encoding"}
    # a fresh random salt per value: the same name looked up twice does not give the same bits
    assert first != second
    assert fuzzy.dice(fuzzy.from_hex(first), fuzzy.from_hex(second)) >= 0.9
    sent = [raw.decode() for raw in sent_bodies] + [
        json.dumps(json.loads(raw), ensure_ascii=False) for raw in sent_bodies
    ]
    for value in (PERSON_VARIANT, "Margarethe Oberholzer"):
        for form in forms_of(value):
            assert not any(form in text for text in [*sent, out, err]), form

    # the fuzzy address screens as typed differently
    [address] = lookup_with_key(
        live_server,
        bazaar,
        tmp_path,
        key_file,
        "shipping_address_fuzzy",
        "12 Baker Street, Apartment 4, London NW1 6XE",
    )
    assert (address["kind"], address["match"]) == ("shipping_address_fuzzy", True)


# --- bad input: a usage error naming the value's position, and nothing sent ---------------------------------


def _missing(path: Path) -> None:
    pass


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flat(path: Path) -> None:
    Image.new("RGB", (200, 150), (20, 20, 20)).save(path)


def _textless_pdf(path: Path) -> None:
    fx.write_html_pdf('<div style="width:4cm;height:4cm;background:#222"></div>', path)


BAD_FILES = {
    "image missing": ("image", "gone.jpg", _missing, "unreadable"),
    "image empty": ("image", "empty.jpg", _empty, "empty"),
    "image flat": ("image", "flat.png", _flat, "low_quality"),
    "document missing": ("document", "gone.pdf", _missing, "unreadable"),
    "document empty": ("document", "empty.pdf", _empty, "empty"),
    "document without text": ("document", "scan.pdf", _textless_pdf, "no_text"),
}


@pytest.fixture
def good_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "image": images.save(images.product_photo(7, "handbag"), tmp_path / "good.jpg"),
        "document": fx.write_pdf(fx.document(5), tmp_path / "good.pdf"),
    }


def offline_lookup(*argv: str, tmp_path: Path) -> tuple[int, str, str]:
    api_key = tmp_path / "api.key"
    api_key.write_text("acme_live_0123456789", encoding="utf-8")
    return run_cli("lookup", "--url", "http://127.0.0.1:9", "--key-file", str(api_key), *argv)


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_file_that_cannot_be_hashed_is_a_usage_error_naming_its_position(
    tmp_path: Path, key_file: Path, good_files: dict[str, Path], sent_bodies: list[bytes], case: str
) -> None:
    kind, name, make, reason = BAD_FILES[case]
    make(tmp_path / name)
    good = str(good_files[kind])

    code, out, err = offline_lookup(
        "--consortium-key-file", str(key_file), "--kind", kind, good, str(tmp_path / name), tmp_path=tmp_path
    )

    assert code == EXIT_USAGE
    assert err.startswith(f"error: value #2 rejected ({reason}): "), err
    assert out == "" and sent_bodies == []
    # the good value alone gets past the hashing to the (here unreachable) exchange
    code, _, err = offline_lookup(
        "--consortium-key-file", str(key_file), "--kind", kind, "--max-retries", "0", good, tmp_path=tmp_path
    )
    assert code != EXIT_USAGE and "cannot reach the exchange" in err


@pytest.mark.parametrize("value", ["--- ?!", " ™ ©  "], ids=["punctuation", "symbols"])
def test_a_name_empty_after_normalisation_is_a_usage_error_that_does_not_quote_it(
    tmp_path: Path, key_file: Path, sent_bodies: list[bytes], value: str
) -> None:
    code, out, err = offline_lookup(
        "--consortium-key-file", str(key_file), "--kind", "business_name", "Lucky Star Trading", value,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert code == EXIT_USAGE
    assert (
        err == "error: value #2 rejected (not_normalisable): no letters or digits left after normalisation\n"
    )
    assert "Lucky" not in err and out == "" and sent_bodies == []


@pytest.mark.parametrize("kind", ["document", "person_name", "return_address_fuzzy"])
def test_keyed_kinds_without_the_consortium_key_are_a_usage_error_naming_both_ways_to_give_it(
    tmp_path: Path, good_files: dict[str, Path], sent_bodies: list[bytes], kind: str
) -> None:
    value = str(good_files["document"]) if kind == "document" else "Jon Smyth"
    code, out, err = offline_lookup("--kind", kind, value, tmp_path=tmp_path)
    assert code == EXIT_USAGE
    assert err == (
        f"error: lookup --kind {kind} needs the consortium key: --consortium-key-file PATH or the environment "
        f"variable {CONSORTIUM_KEY_ENV}\n"
    )
    assert "Smyth" not in out + err and sent_bodies == []


def test_an_image_lookup_needs_no_consortium_key_and_sends_the_pdq_hashes_only(
    tmp_path: Path, good_files: dict[str, Path], exchange: FakeExchange
) -> None:
    api_key = tmp_path / "api.key"
    api_key.write_text(API_KEY, encoding="utf-8")
    code, out, err = run_cli(
        "lookup",
        "--url",
        exchange.url,
        "--key-file",
        str(api_key),
        "--kind",
        "image",
        str(good_files["image"]),
    )
    assert code == EXIT_OK, err
    variants = pdq_variants(good_files["image"])
    assert exchange.requests[-1].body == {
        "indicators": [
            {
                "kind": "image",
                "hash": variants.full.hex,
                "quality": variants.full.quality,
                "crops": list(variants.crops),
            }
        ]
    }
    assert json.loads(out) == {
        "results": [{"hash": variants.full.hex, "match": False}]
    }  # the exchange's answer


def test_more_photos_than_the_exchange_screens_per_lookup_are_refused(
    tmp_path: Path, good_files: dict[str, Path], exchange: FakeExchange
) -> None:
    exchange.me = limits_answer(max_batch_sellers=10, max_seller_indicators=10, max_lookup_indicators=1)
    api_key = tmp_path / "api.key"
    api_key.write_text(API_KEY, encoding="utf-8")
    photo = str(good_files["image"])
    code, _, err = run_cli(
        "lookup", "--url", exchange.url, "--key-file", str(api_key), "--kind", "image", photo, photo
    )
    assert code == EXIT_USAGE and "2 values given; the exchange screens at most 1 per lookup" in err
    assert [request.path for request in exchange.requests] == ["/api/v1/me/"]


def test_lookup_help_explains_the_new_kinds() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
        main(["lookup", "--help"])
    assert exited.value.code == 0
    text = " ".join(out.getvalue().split())
    assert "--kind document: each VALUE is a PDF or UTF-8 text file's path" in text
    assert "reported_falsified" in text and CONSORTIUM_KEY_ENV in text
