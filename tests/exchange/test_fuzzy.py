"""Fuzzy encodings v1 (exchange.fuzzy): the spec vectors, clkhash compatibility, keys, similarity."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from exchange import fuzzy
from exchange.normalization import NormalizationError
from fixtures.corruption import corrupt_name, people

DOCS = Path(__file__).resolve().parents[2] / "docs"
VECTORS: dict[str, Any] = json.loads((DOCS / "fuzzy-vectors-v1.json").read_text(encoding="utf-8"))
TEST_KEY = bytes.fromhex(VECTORS["test_key_hex"])
OTHER_KEY = b"another consortium's key, also for tests only"


def vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['kind']}:{vector['input']!r}"


# --- the vectors ---------------------------------------------------------------------------------------------


def test_vectors_file_is_for_this_spec_version_and_its_parameters() -> None:
    params = VECTORS["parameters"]
    assert VECTORS["spec_version"] == fuzzy.FUZZY_SPEC_VERSION == 1
    assert params["filter_bits"] == fuzzy.FILTER_BITS == 1024
    assert params["q"] == fuzzy.Q == 2
    assert params["hash_counts"] == fuzzy.HASH_COUNTS
    assert params["number_hash_count"] == fuzzy.NUMBER_HASH_COUNT
    assert params["flip_probability"] == fuzzy.FLIP_PROBABILITY
    assert params["kdf_salt"].encode() == fuzzy.KDF_SALT
    assert params["default_thresholds"] == fuzzy.DEFAULT_THRESHOLDS
    assert set(fuzzy.HASH_COUNTS) == set(fuzzy.DEFAULT_THRESHOLDS) == set(fuzzy.FUZZY_KINDS)
    assert "tests only" in VECTORS["test_key_note"] or "test vectors only" in VECTORS["test_key_note"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_normalises_tokenises_and_encodes_as_published(vector: dict[str, Any]) -> None:
    kind, value = vector["kind"], vector["input"]
    normalized = fuzzy.normalize_fuzzy(kind, value)
    assert normalized == vector["normalized"]
    assert sorted(set(fuzzy.qgrams(normalized))) == vector["qgrams"]
    plain = fuzzy.clk(kind, value, TEST_KEY)
    assert fuzzy.to_hex(plain) == vector["clk_hex"]
    assert fuzzy.popcount(plain) == vector["clk_bits_set"]
    hardened = fuzzy.encode(kind, value, TEST_KEY, vector["record_salt"].encode())
    assert fuzzy.to_hex(hardened) == vector["encoding_hex"]


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=vector_id)
def test_rejected_vector_is_refused_with_its_reason_and_never_quotes_the_value(
    vector: dict[str, Any],
) -> None:
    with pytest.raises(NormalizationError) as caught:
        fuzzy.normalize_fuzzy(vector["kind"], vector["input"])
    assert caught.value.reason == vector["reason"]
    if vector["input"].strip():
        assert vector["input"].strip() not in str(caught.value)


@pytest.mark.parametrize("similarity", VECTORS["similarities"], ids=lambda s: f"{s['a']}~{s['b']}")
def test_published_similarities(similarity: dict[str, Any]) -> None:
    a = fuzzy.clk(similarity["kind"], similarity["a"], TEST_KEY)
    b = fuzzy.clk(similarity["kind"], similarity["b"], TEST_KEY)
    assert round(fuzzy.dice(a, b), 6) == similarity["clk_dice"]


def test_every_fuzzy_kind_has_vectors() -> None:
    assert {v["kind"] for v in VECTORS["vectors"]} == set(fuzzy.FUZZY_KINDS)


def _markdown_rows() -> list[str]:
    rows = [
        "| kind | input | fuzzy form | bigrams | CLK bits set | CLK, first 32 hex characters |",
        "|---|---|---|---|---|---|",
    ]
    for v in VECTORS["vectors"]:
        rows.append(
            f"| {v['kind']} | `{json.dumps(v['input'], ensure_ascii=False)}` | `{json.dumps(v['normalized'], ensure_ascii=False)}` "
            f"| {len(v['qgrams'])} | {v['clk_bits_set']} | `{v['clk_hex'][:32]}` |"
        )
    rows += ["", "| kind | a | b | Dice of the CLKs |", "|---|---|---|---|"]
    for s in VECTORS["similarities"]:
        rows.append(f"| {s['kind']} | `{s['a']}` | `{s['b']}` | {s['clk_dice']:.3f} |")
    return rows


def test_spec_document_shows_the_vectors_file() -> None:
    text = (DOCS / "hashing-spec.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- fuzzy-vectors:begin -->\n(.*)\n<!-- fuzzy-vectors:end -->", text, re.DOTALL)
    assert match, "docs/hashing-spec.md lacks the fuzzy vectors markers"
    assert match.group(1).splitlines() == _markdown_rows()
    assert "## Fuzzy encodings, version 1" in text
    assert VECTORS["test_key_hex"] in text


# --- compatibility with clkhash (vectors made by clkhash 0.18.3 itself) --------------------------------------


def test_clkhash_compat_vectors_cover_every_published_vector() -> None:
    compat = VECTORS["clkhash_compat"]
    assert compat["clkhash_version"] == "0.18.3"
    assert [c["normalized"] for c in compat["clks"]] == [v["normalized"] for v in VECTORS["vectors"]]


@pytest.mark.parametrize("compat", VECTORS["clkhash_compat"]["clks"], ids=lambda c: c["normalized"])
def test_same_tokens_keys_and_bits_as_clkhash(compat: dict[str, Any]) -> None:
    kind = compat["kind"]
    assert list(fuzzy.qgrams(compat["normalized"])) == compat["clkhash_bigrams"]
    assert fuzzy.tokens(kind, compat["normalized"]) == list(
        zip(compat["clkhash_tokens"], compat["clkhash_ks"], strict=True)
    )
    position_key, _ = fuzzy.derive_keys(TEST_KEY, kind)
    assert position_key.hex() == compat["clkhash_position_key_hex"]
    assert fuzzy.to_hex(fuzzy.clk(kind, compat["normalized"], TEST_KEY)) == compat["clkhash_clk_hex"]


@pytest.mark.parametrize("prim", VECTORS["clkhash_compat"]["blake_hash_token"], ids=lambda p: f"k={p['k']}")
def test_bit_positions_are_clkhash_blake_hash_token(prim: dict[str, Any]) -> None:
    assert fuzzy.bit_positions(prim["token"], prim["k"], bytes.fromhex(prim["key_hex"])) == prim["positions"]


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    (okm,) = fuzzy.hkdf_sha256(ikm, 1, salt=salt, info=info, key_size=42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


# --- normalisation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        ("person_name", "John Smith", "SMITH, John"),
        ("person_name", "José García", "jose garcia"),
        ("person_name", "Dr. Jane Doe", "Jane Doe"),
        ("person_name", "Søren Ørsted", "soren orsted"),
        ("person_name", "ＪＯＨＮ　ＳＭＩＴＨ", "john smith"),
        ("business_name", "Acme Ltd", "ACME Limited"),
        ("business_name", "Müller GmbH", "muller"),
        ("shipping_address", "12 Baker St., Apt 4", "Apartment 4, 12 Baker Street"),
        ("return_address", "5 Elm Dr, Unit 3", "5 elm drive apartment 3"),
    ],
)
def test_spellings_of_one_value_give_one_encoding(kind: str, a: str, b: str) -> None:
    assert fuzzy.clk(kind, a, TEST_KEY) == fuzzy.clk(kind, b, TEST_KEY)


def test_titles_and_legal_forms_alone_are_kept_rather_than_refused() -> None:
    assert fuzzy.normalize_fuzzy("person_name", "Dr") == "dr"
    assert fuzzy.normalize_fuzzy("business_name", "Limited") == "limited"


def test_overlong_values_and_non_strings_are_refused() -> None:
    with pytest.raises(NormalizationError, match="longer than 1000"):
        fuzzy.normalize_fuzzy("person_name", "a" * 1001)
    with pytest.raises(NormalizationError, match="must be a string"):
        fuzzy.normalize_fuzzy("person_name", 42)  # type: ignore[arg-type]


# --- encoding, keys, serialisation ----------------------------------------------------------------------------


def test_encoding_is_deterministic_for_one_record() -> None:
    first = fuzzy.encode("person_name", "Jane Doe", TEST_KEY, b"seller-1")
    assert fuzzy.encode("person_name", "Jane Doe", TEST_KEY, b"seller-1") == first
    assert fuzzy.encode("person_name", "  JANE  DOE ", TEST_KEY, b"seller-1") == first
    assert len(first) == fuzzy.FILTER_BYTES


def test_noise_differs_per_record_but_stays_small() -> None:
    plain = fuzzy.clk("person_name", "Jane Doe", TEST_KEY)
    encodings = [fuzzy.encode("person_name", "Jane Doe", TEST_KEY, f"seller-{i}".encode()) for i in range(50)]
    assert len(set(encodings)) == 50
    flipped = [(int.from_bytes(plain) ^ int.from_bytes(e)).bit_count() for e in encodings]
    mean = sum(flipped) / len(flipped)
    assert (
        0.5 * fuzzy.FLIP_PROBABILITY * fuzzy.FILTER_BITS
        < mean
        < 1.5 * fuzzy.FLIP_PROBABILITY * fuzzy.FILTER_BITS
    )
    assert min(fuzzy.dice(plain, e) for e in encodings) > 0.9


def test_record_salt_is_required() -> None:
    with pytest.raises(ValueError, match="record_salt"):
        fuzzy.encode("person_name", "Jane Doe", TEST_KEY, b"")


def test_short_consortium_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        fuzzy.clk("person_name", "Jane Doe", b"short")


def test_different_keys_give_unrelated_encodings() -> None:
    for name in people(30, seed=5):
        ours, theirs = fuzzy.clk("person_name", name, TEST_KEY), fuzzy.clk("person_name", name, OTHER_KEY)
        assert fuzzy.dice(ours, theirs) < 0.5  # about what two unrelated names score (density ~0.2-0.3)


def test_kinds_are_salted_apart() -> None:
    for name in ("Acme Trading", "Baker Street"):
        as_person = fuzzy.clk("person_name", name, TEST_KEY)
        as_business = fuzzy.clk("business_name", name, TEST_KEY)
        as_address = fuzzy.clk("shipping_address", name, TEST_KEY)
        assert fuzzy.dice(as_person, as_business) < 0.5
        assert fuzzy.dice(as_address, fuzzy.clk("return_address", name, TEST_KEY)) < 0.5


def test_hex_round_trip_and_shape_checks() -> None:
    encoding = fuzzy.encode("business_name", "Acme", TEST_KEY, b"r")
    text = fuzzy.to_hex(encoding)
    assert fuzzy.is_fuzzy_encoding(text) and len(text) == fuzzy.ENCODING_HEX_CHARS == 256
    assert fuzzy.from_hex(text) == encoding
    for bad in (text.upper(), text[:-2], text + "00", "g" * 256, None, 7):
        assert not fuzzy.is_fuzzy_encoding(bad)
    with pytest.raises(ValueError, match="256 lowercase hex"):
        fuzzy.from_hex(text.upper())
    with pytest.raises(ValueError, match="128 bytes"):
        fuzzy.to_hex(encoding[:-1])


# --- similarity ---------------------------------------------------------------------------------------------


def test_dice_basics() -> None:
    a = fuzzy.clk("person_name", "Jane Doe", TEST_KEY)
    assert fuzzy.dice(a, a) == 1.0
    assert fuzzy.dice(bytes(128), bytes(128)) == 0.0
    assert fuzzy.dice(a, bytes(128)) == 0.0
    with pytest.raises(ValueError, match="different lengths"):
        fuzzy.dice(a, a[:-1])


def test_typo_variants_score_high_and_unrelated_names_low() -> None:
    rng = random.Random(11)
    names = people(300, seed=11)
    variant_scores, unrelated_scores = [], []
    for i, name in enumerate(names):
        clean = fuzzy.encode("person_name", name, TEST_KEY, f"a{i}".encode())
        typo = fuzzy.encode("person_name", corrupt_name(name, rng), TEST_KEY, f"b{i}".encode())
        other = names[(i + 1) % len(names)]
        unrelated = fuzzy.encode("person_name", other, TEST_KEY, f"c{i}".encode())
        variant_scores.append(fuzzy.dice(clean, typo))
        if set(other.split()).isdisjoint(name.split()):
            unrelated_scores.append(fuzzy.dice(clean, unrelated))
    variant_scores.sort()
    unrelated_scores.sort()
    assert variant_scores[len(variant_scores) // 2] > 0.8  # median of corrupted variants
    assert unrelated_scores[len(unrelated_scores) // 2] < 0.35
    assert unrelated_scores[int(len(unrelated_scores) * 0.99)] < fuzzy.DEFAULT_THRESHOLDS["person_name"]
    # the README's examples
    jon = fuzzy.dice(
        fuzzy.clk("person_name", "John Smith", TEST_KEY), fuzzy.clk("person_name", "Jon Smyth", TEST_KEY)
    )
    assert jon >= fuzzy.DEFAULT_THRESHOLDS["person_name"]
