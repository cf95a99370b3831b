"""Name and address rows of the submission CSV (issue 14, client side): a name is sent only as its fuzzy encoding
keyed with the consortium key; an address as its exact transport hash and, with the key, its fuzzy encoding too.
The record salt of every encoding is the seller's seller_ref."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pytest_django.live_server_helper import LiveServer

from exchange import fuzzy
from exchange.client import read_submission_file
from exchange.client.cli import EXIT_OK, EXIT_REJECTED
from exchange.client.csvinput import CSV_KINDS
from exchange.client.documents import CONSORTIUM_KEY_ENV
from exchange.models import Seller, SellerItem, Sighting
from exchange.normalization import normalize, transport_hash
from tests.client.helpers import run_cli, sent_indicators, write
from tests.conftest import KeyedPlatform

HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"
SELLER = "s-1,confirmed,counterfeit,2025-01-31T12:00:00Z"
KEY = bytes(range(40, 72))

PERSON = "Dr. Łukasz Wiśniewski"
BUSINESS = "Lucky Star Trading Ltd."
ADDRESS = "12 Baker St., Apt 4, London NW1 6XE"
RETURN_ADDRESS = "Unit 9, 77 Harbour Road, Felixstowe IP11 3QA"
RAW_VALUES = (PERSON, BUSINESS, ADDRESS, RETURN_ADDRESS)


def csv_text(*rows: tuple[str, str], seller: str = SELLER) -> str:
    """A submission CSV of one seller with the given (kind, value) rows (values quoted: addresses have commas)."""
    return HEADER + "".join(f'{seller},{kind},"{value}"\n' for kind, value in rows)


def encoding(spec_kind: str, value: str, seller_ref: str = "s-1") -> str:
    return fuzzy.to_hex(fuzzy.encode(spec_kind, value, KEY, seller_ref.encode("utf-8")))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "consortium.key"
    path.write_text(KEY.hex() + "\n", encoding="ascii")
    return path


@pytest.fixture
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONSORTIUM_KEY_ENV, raising=False)


# --- reading the CSV ----------------------------------------------------------------------------------------


def test_name_rows_send_only_the_keyed_encoding_salted_with_the_seller_ref(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(("person_name", PERSON), ("business_name", BUSINESS)))

    result = read_submission_file(path, consortium_key=KEY)

    assert result.rejected == []
    assert sent_indicators(result) == [
        {"kind": "person_name", "encoding": encoding("person_name", PERSON)},
        {"kind": "business_name", "encoding": encoding("business_name", BUSINESS)},
    ]
    assert {"person_name", "business_name"} <= set(CSV_KINDS)


def test_the_same_name_gets_different_bits_for_another_seller(tmp_path: Path) -> None:
    other = SELLER.replace("s-1", "s-2")
    path = write(tmp_path, csv_text(("person_name", PERSON)) + f'{other},person_name,"{PERSON}"\n')
    first, second = sent_indicators(read_submission_file(path, consortium_key=KEY))
    assert first["encoding"] == encoding("person_name", PERSON, "s-1")
    assert second["encoding"] == encoding("person_name", PERSON, "s-2")
    assert first["encoding"] != second["encoding"]
    assert fuzzy.dice(fuzzy.from_hex(first["encoding"]), fuzzy.from_hex(second["encoding"])) >= 0.9


def test_address_rows_send_the_exact_hash_and_with_the_key_the_fuzzy_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(("shipping_address", ADDRESS), ("return_address", RETURN_ADDRESS)))

    result = read_submission_file(path, consortium_key=KEY)

    assert sent_indicators(result) == [
        {"kind": "shipping_address", "hash": transport_hash("shipping_address", ADDRESS)},
        {"kind": "shipping_address_fuzzy", "encoding": encoding("shipping_address", ADDRESS)},
        {"kind": "return_address", "hash": transport_hash("return_address", RETURN_ADDRESS)},
        {"kind": "return_address_fuzzy", "encoding": encoding("return_address", RETURN_ADDRESS)},
    ]
    assert (result.addresses_without_key, result.fuzzy_not_sent) == (0, [])


def test_a_name_or_address_given_twice_is_sent_once(tmp_path: Path) -> None:
    rows = [
        ("business_name", BUSINESS),
        ("business_name", "LUCKY STAR TRADING LIMITED"),  # one business: the legal form is dropped
        ("shipping_address", ADDRESS),
        ("shipping_address", "12 baker street apartment 4 london nw1 6xe"),
    ]
    result = read_submission_file(write(tmp_path, csv_text(*rows)), consortium_key=KEY)
    assert [indicator["kind"] for indicator in sent_indicators(result)] == [
        "business_name",
        "shipping_address",
        "shipping_address_fuzzy",
    ]
    assert result.duplicate_indicators == 3  # the name, and the address's hash and encoding


def test_name_rows_without_the_consortium_key_are_rejected_naming_both_ways_to_give_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, csv_text(("shipping_address", ADDRESS), ("person_name", PERSON)))

    result = read_submission_file(path)

    [rejected] = result.rejected
    assert (rejected.line, rejected.seller_ref) == (3, "s-1")
    assert rejected.reason.startswith("person_name rejected (no_consortium_key): ")
    assert "--consortium-key-file PATH" in rejected.reason and CONSORTIUM_KEY_ENV in rejected.reason
    assert result.sellers == []  # held back, as for any rejected row


@pytest.mark.parametrize(
    ("kind", "value"),
    [("person_name", "--- ?!"), ("business_name", " ™ ©  "), ("person_name", "\u200b'\u00b4")],
    ids=["punctuation", "symbols", "invisible"],
)
def test_a_name_that_normalises_to_nothing_is_rejected_by_line_and_kind(
    tmp_path: Path, kind: str, value: str
) -> None:
    path = write(tmp_path, csv_text(("shipping_address", ADDRESS), (kind, value)))

    result = read_submission_file(path, consortium_key=KEY)

    [rejected] = result.rejected
    assert (rejected.line, rejected.seller_ref) == (3, "s-1")
    assert (
        rejected.reason
        == f"{kind} rejected (not_normalisable): no letters or digits left after normalisation"
    )
    assert value.strip() not in str(rejected)
    sent = read_submission_file(path, send_valid_rows=True, consortium_key=KEY)
    assert [indicator["kind"] for indicator in sent_indicators(sent)] == [
        "shipping_address",
        "shipping_address_fuzzy",
    ]


def test_a_name_too_short_to_compare_is_rejected_rather_than_costing_its_batch(tmp_path: Path) -> None:
    # One letter sets about 40 bits: the exchange refuses fewer than MIN_BITS_SET, and the whole batch with it.
    assert fuzzy.popcount(fuzzy.encode("business_name", "X", KEY, b"s-1")) < fuzzy.MIN_BITS_SET
    [rejected] = read_submission_file(
        write(tmp_path, csv_text(("business_name", "X"))), consortium_key=KEY
    ).rejected
    assert rejected.line == 2
    assert rejected.reason.startswith(
        "business_name rejected (too_short): too short to compare: its encoding sets "
    )
    assert f"the exchange takes {fuzzy.MIN_BITS_SET} or more" in rejected.reason


def test_an_address_too_long_to_compare_goes_exact_only_and_the_summary_names_the_row(
    tmp_path: Path, key_file: Path
) -> None:
    long_address = ", ".join(f"Building {n}, {n}{n} Industrial Park Road {n * 7}" for n in range(1, 20))
    assert fuzzy.popcount(fuzzy.encode("shipping_address", long_address, KEY, b"s-1")) > fuzzy.MAX_BITS_SET
    path = write(tmp_path, csv_text(("shipping_address", long_address), ("person_name", PERSON)))

    result = read_submission_file(path, consortium_key=KEY)
    assert result.rejected == []
    assert [indicator["kind"] for indicator in sent_indicators(result)] == ["shipping_address", "person_name"]

    code, out, _ = run_cli("submit", "--dry-run", "--consortium-key-file", str(key_file), str(path))
    assert code == EXIT_OK, out
    assert (
        "address rows sent without their fuzzy encoding (the exact hash was sent):\n"
        "  line 2 (seller 's-1'): shipping_address_fuzzy not sent (too_long): too long to compare: its encoding sets "
    ) in out
    assert "Industrial" not in out


# --- the command line ---------------------------------------------------------------------------------------


def test_dry_run_counts_fuzzy_indicators_and_writes_only_encodings(tmp_path: Path, key_file: Path) -> None:
    rows = [("person_name", PERSON), ("business_name", BUSINESS), ("shipping_address", ADDRESS)]
    path = write(tmp_path, csv_text(*rows))
    payloads_file = tmp_path / "payloads.json"

    code, out, err = run_cli(
        "submit",
        "--dry-run",
        "--consortium-key-file",
        str(key_file),
        "--payloads-file",
        str(payloads_file),
        str(path),
    )

    assert code == EXIT_OK, out + err
    assert "rows read: 3\nrows rejected: 0\n" in out
    assert "sellers to send: 1\nindicators to send: 4\nbatches to send: 1" in out
    assert "fuzzy address" not in out
    [batch] = json.loads(payloads_file.read_text(encoding="utf-8"))
    assert [indicator["kind"] for indicator in batch["sellers"][0]["indicators"]] == [
        "person_name",
        "business_name",
        "shipping_address",
        "shipping_address_fuzzy",
    ]
    assert_no_raw_value(payloads_file.read_text(encoding="utf-8"), out, err)


def test_dry_run_without_a_key_names_the_rejected_name_rows(
    tmp_path: Path, no_key_in_environment: None
) -> None:
    path = write(tmp_path, csv_text(("shipping_address", ADDRESS), ("business_name", BUSINESS)))
    code, out, _ = run_cli("submit", "--dry-run", str(path))
    assert code == EXIT_REJECTED
    assert (
        "  line 3 (seller 's-1'): business_name rejected (no_consortium_key): name rows need the consortium key: "
        f"--consortium-key-file PATH or the environment variable {CONSORTIUM_KEY_ENV}\n"
    ) in out


# --- against a real exchange ---------------------------------------------------------------------------------


def forms_of(value: str) -> set[str]:
    """The raw value and every form of it that would give it away: lowercase, case-folded, normalised (exact
    and fuzzy), and each of its words of four letters or more."""
    forms = {value, value.lower(), value.casefold()}
    forms |= {fuzzy.normalize_fuzzy(kind, value) for kind in fuzzy.FUZZY_KINDS}
    for kind in ("store_name", "shipping_address"):
        forms.add(normalize(kind, value))
    forms |= {word for form in list(forms) for word in re.findall(r"\w{4,}", form)}
    return forms


def assert_no_raw_value(*texts: str) -> None:
    for value in RAW_VALUES:
        for form in forms_of(value):
            assert not any(form in text for text in texts), form


def readable(body: bytes) -> str:
    """A JSON request body with its non-ASCII characters unescaped (json.dumps escapes them)."""
    return json.dumps(json.loads(body), ensure_ascii=False)


@pytest.fixture
def sent_bodies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every request body the client sends (it builds each request with urllib.request.Request)."""
    bodies: list[bytes] = []

    class RecordingRequest(urllib.request.Request):
        def __init__(self, url: str, data: bytes | None = None, *args: Any, **kwargs: Any) -> None:
            if data is not None:
                bodies.append(bytes(data))
            super().__init__(url, data, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "Request", RecordingRequest)
    return bodies


def submit(
    live_server: LiveServer, platform: KeyedPlatform, tmp_path: Path, csv: Path, *extra: str
) -> tuple[int, str]:
    api_key = tmp_path / "api.key"
    api_key.write_text(platform.secret, encoding="utf-8")
    code, out, _ = run_cli(
        "submit", "--url", live_server.url, "--key-file", str(api_key), "--quiet", *extra, str(csv)
    )
    return code, out


@pytest.mark.django_db(transaction=True)
def test_names_and_addresses_reach_a_real_exchange_as_encodings_and_nothing_raw(
    live_server: LiveServer, acme: KeyedPlatform, tmp_path: Path, key_file: Path, sent_bodies: list[bytes]
) -> None:
    rows = [
        ("person_name", PERSON),
        ("business_name", BUSINESS),
        ("shipping_address", ADDRESS),
        ("return_address", RETURN_ADDRESS),
    ]
    path = write(tmp_path, csv_text(*rows))

    code, out = submit(live_server, acme, tmp_path, path, "--consortium-key-file", str(key_file))

    assert code == EXIT_OK, out
    assert "sellers sent: 1\nindicators sent: 6\n" in out
    seller = Seller.objects.get(platform=acme.platform, seller_ref="s-1")
    stored = dict(SellerItem.objects.filter(seller=seller).values_list("item__kind", "item__value"))
    assert stored == {
        "person_name": encoding("person_name", PERSON),
        "business_name": encoding("business_name", BUSINESS),
        "shipping_address_fuzzy": encoding("shipping_address", ADDRESS),
        "return_address_fuzzy": encoding("return_address", RETURN_ADDRESS),
    }
    exact = set(Sighting.objects.filter(seller=seller).values_list("indicator__kind", flat=True))
    assert {"shipping_address", "return_address"} <= exact
    assert any(b'"sellers"' in body for body in sent_bodies)
    assert_no_raw_value(out, *(body.decode() for body in sent_bodies), *map(readable, sent_bodies))


@pytest.mark.django_db(transaction=True)
def test_addresses_without_a_key_go_exact_only_and_the_summary_says_so_once(
    live_server: LiveServer,
    acme: KeyedPlatform,
    tmp_path: Path,
    sent_bodies: list[bytes],
    no_key_in_environment: None,
) -> None:
    path = write(tmp_path, csv_text(("shipping_address", ADDRESS), ("return_address", RETURN_ADDRESS)))

    code, out = submit(live_server, acme, tmp_path, path)

    assert code == EXIT_OK, out
    assert "indicators sent: 2\n" in out
    assert out.count("fuzzy address encodings not sent") == 1
    assert (
        "fuzzy address encodings not sent: no consortium key was given (--consortium-key-file PATH or the "
        f"environment variable {CONSORTIUM_KEY_ENV}); 2 address rows went as exact hashes only"
    ) in out
    seller = Seller.objects.get(platform=acme.platform, seller_ref="s-1")
    assert not SellerItem.objects.filter(seller=seller).exists()
    kinds = sorted(Sighting.objects.filter(seller=seller).values_list("indicator__kind", flat=True))
    assert kinds == ["return_address", "shipping_address"]
    assert b"encoding" not in b"".join(sent_bodies)
    assert_no_raw_value(out, *(body.decode() for body in sent_bodies), *map(readable, sent_bodies))
