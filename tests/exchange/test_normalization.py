"""The hashing spec v1: code, machine-readable vectors and the human spec agree."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.normalization import (
    KINDS,
    MAX_INPUT_LENGTH,
    REASONS,
    SPEC_VERSION,
    STATUSES,
    STRONG_KINDS,
    WEAK_KINDS,
    NormalizationError,
    is_transport_hash,
    normalize,
    transport_hash,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
VECTORS_FILE = DOCS / "hashing-vectors-v1.json"
SPEC_FILE = DOCS / "hashing-spec.md"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['kind']}:{vector['input'][:30]!r}"


def markdown_vector_row(vector: dict[str, Any]) -> str:
    """How a vector appears in docs/hashing-spec.md (also used to write that table)."""
    region = vector.get("default_region") or ""
    cells = [vector["kind"], f"`{json.dumps(vector['input'], ensure_ascii=False)}`", region]
    if "normalized" in vector:
        cells += [
            f"`{json.dumps(vector['normalized'], ensure_ascii=False)}`",
            f"`{vector['transport_hash']}`",
        ]
    else:
        cells.append(vector["reason"])
    return "| " + " | ".join(cells) + " |"


def markdown_vector_tables() -> str:
    """The generated part of the spec between the vectors markers."""
    lines = [
        "### Accepted",
        "",
        "| kind | input | default region | canonical form | transport hash |",
        "|---|---|---|---|---|",
        *(markdown_vector_row(vector) for vector in VECTORS["vectors"]),
        "",
        "### Rejected",
        "",
        "| kind | input | default region | reason |",
        "|---|---|---|---|",
        *(markdown_vector_row(vector) for vector in VECTORS["rejected"]),
    ]
    return "\n".join(lines)


# --- the vectors -----------------------------------------------------------------------------------------


def test_vectors_file_is_for_this_spec_version() -> None:
    assert VECTORS["spec_version"] == SPEC_VERSION == 1


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_accepted_vector_normalises_and_hashes_as_documented(vector: dict[str, Any]) -> None:
    region = vector.get("default_region")
    assert normalize(vector["kind"], vector["input"], region) == vector["normalized"]
    assert transport_hash(vector["kind"], vector["input"], region) == vector["transport_hash"]
    assert hashlib.sha256(vector["normalized"].encode("utf-8")).hexdigest() == vector["transport_hash"]


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=vector_id)
def test_rejected_vector_is_refused_with_the_documented_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(NormalizationError) as caught:
        normalize(vector["kind"], vector["input"], vector.get("default_region"))
    assert vector["reason"] in caught.value.reason
    assert caught.value.kind == vector["kind"]


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=vector_id)
def test_rejection_reason_never_quotes_the_value(vector: dict[str, Any]) -> None:
    value = vector["input"].strip()
    with pytest.raises(NormalizationError) as caught:
        normalize(vector["kind"], vector["input"], vector.get("default_region"))
    if len(value) >= 4:
        assert value not in str(caught.value)


def test_every_kind_has_accepted_and_rejected_vectors() -> None:
    assert {vector["kind"] for vector in VECTORS["vectors"]} == set(KINDS)
    assert set(KINDS) <= {vector["kind"] for vector in VECTORS["rejected"]}


def test_spec_document_shows_exactly_the_vectors_file() -> None:
    text = SPEC_FILE.read_text(encoding="utf-8")
    match = re.search(r"<!-- vectors:begin -->\n(.*)\n<!-- vectors:end -->", text, re.DOTALL)
    assert match, "docs/hashing-spec.md lacks the vectors markers"
    assert match.group(1) == markdown_vector_tables(), (
        "regenerate the tables: python -m tests.exchange.test_normalization"
    )


def test_spec_document_lists_every_kind_and_the_abbreviation_table() -> None:
    from exchange.normalization import ADDRESS_ABBREVIATIONS

    text = SPEC_FILE.read_text(encoding="utf-8")
    for kind in KINDS:
        assert f"`{kind}`" in text
    for short, long in ADDRESS_ABBREVIATIONS.items():
        assert f"`{short}`" in text and f"`{long}`" in text


# --- constants and the small API -------------------------------------------------------------------------


def test_kinds_are_strong_then_weak_without_overlap() -> None:
    assert KINDS == STRONG_KINDS + WEAK_KINDS
    assert not set(STRONG_KINDS) & set(WEAK_KINDS)
    assert len(KINDS) == 12
    assert STATUSES == ("confirmed", "suspected")
    assert "falsified_documents" in REASONS


def test_unknown_kind_names_the_kind_and_lists_the_valid_ones() -> None:
    with pytest.raises(NormalizationError) as caught:
        normalize("fax", "+49 30 1234567")
    assert caught.value.kind == "fax"
    assert "'fax'" in caught.value.reason
    assert all(kind in caught.value.reason for kind in KINDS)


def test_normalization_error_is_a_value_error() -> None:
    assert issubclass(NormalizationError, ValueError)


def test_overlong_value_is_refused() -> None:
    with pytest.raises(NormalizationError, match="longer than"):
        normalize("store_name", "x" * (MAX_INPUT_LENGTH + 1))


def test_invalid_default_region_is_refused() -> None:
    with pytest.raises(NormalizationError, match="ISO 3166"):
        normalize("phone", "030 1234567", "Germany")


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("a" * 64, True),
        (hashlib.sha256(b"x").hexdigest(), True),
        ("A" * 64, False),
        ("a" * 63, False),
        ("a" * 65, False),
        ("g" * 64, False),
        (" " + "a" * 63, False),
        ("a" * 64 + "\n", False),
        ("alice@example.com", False),
        (None, False),
    ],
)
def test_is_transport_hash(candidate: Any, expected: bool) -> None:
    assert is_transport_hash(candidate) is expected


# --- spellings of one identifier collide -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spellings", "region"),
    [
        ("email", ["Alice.Smith@Example.com", " alice.smith+promo@EXAMPLE.COM "], None),
        ("email", ["a.lice@googlemail.com", "ALICE+x@gmail.com"], None),
        ("phone", ["+49 30 1234567", "030/1234567", "0049 30 1234567"], "DE"),
        ("tax_id", ["DE 136 695 976", "de-136.695.976", "136695976"], "DE"),
        ("bank_account", ["DE89 3704 0044 0532 0130 00", "iban: de89-3704-0044-0532-0130-00"], None),
        ("store_name", ["Lucky Star Trading Co.", "LUCKY-STAR trading co", "luckystar\u200btradingco"], None),
        ("website_domain", ["https://shop.example.com/a", "EXAMPLE.com", "www.example.com."], None),
        ("shipping_address", ["Flat 3, 10 High St.", "flat 3 10 high street", "FLAT 3 -- 10 HIGH ST"], None),
        ("device_id", ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "{6f9619ff8b86d011b42d00c04fc964ff}"], None),
    ],
)
def test_spellings_of_one_identifier_normalise_equal(
    kind: str, spellings: list[str], region: str | None
) -> None:
    assert len({normalize(kind, spelling, region) for spelling in spellings}) == 1


def test_base58_wallets_stay_case_sensitive() -> None:
    address = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    assert normalize("crypto_wallet", address) != normalize("crypto_wallet", address.lower())


def test_non_gmail_addresses_keep_their_dots() -> None:
    assert normalize("email", "a.b@example.com") != normalize("email", "ab@example.com")


# --- properties ------------------------------------------------------------------------------------------

IDEMPOTENT_KINDS = [
    "email",
    "store_name",
    "shipping_address",
    "device_id",
    "crypto_wallet",
    "payment_account",
]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_canonical_forms_are_fixed_points(vector: dict[str, Any]) -> None:
    # Normalising a canonical form again must not change it. Without a default region: a canonical tax id
    # starts with its country, but a foreign one without a separator is read as national under a region.
    assert normalize(vector["kind"], vector["normalized"]) == vector["normalized"]


@given(kind=st.sampled_from(IDEMPOTENT_KINDS), value=st.text(max_size=60))
def test_normalisation_is_idempotent_or_rejects(kind: str, value: str) -> None:
    try:
        once = normalize(kind, value)
    except NormalizationError as exc:
        assert exc.kind == kind and exc.reason
        return
    assert normalize(kind, once) == once


@given(
    kind=st.sampled_from(KINDS), value=st.text(max_size=80), region=st.sampled_from([None, "DE", "US", "cn"])
)
def test_any_text_either_hashes_or_raises_normalization_error(
    kind: str, value: str, region: str | None
) -> None:
    try:
        digest = transport_hash(kind, value, region)
    except NormalizationError:
        return
    assert is_transport_hash(digest)


@given(
    words=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8), min_size=1
    )
)
def test_address_spacing_case_and_punctuation_do_not_matter(words: list[str]) -> None:
    plain = " ".join(words)
    noisy = " ,  ".join(word.upper() for word in words) + ".\n"
    assert normalize("shipping_address", plain) == normalize("shipping_address", noisy)
    assert normalize("return_address", plain) == normalize("shipping_address", plain)


if __name__ == "__main__":  # pragma: no cover - maintenance: rewrite the spec's vector tables from the JSON
    spec = SPEC_FILE.read_text(encoding="utf-8")
    spec = re.sub(
        r"(<!-- vectors:begin -->\n).*?(<!-- vectors:end -->)",
        lambda match: match.group(1) + markdown_vector_tables() + "\n" + match.group(2),
        spec,
        flags=re.DOTALL,
    )
    SPEC_FILE.write_text(spec, encoding="utf-8")


def test_the_normalisation_libraries_are_the_pinned_ones_everywhere():
    """The installed versions, pyproject's pins and the spec's table all say PINNED_LIBRARIES (the vector
    tests above then prove the vectors hold with exactly these versions)."""
    import re
    import tomllib
    from importlib.metadata import version

    from exchange.normalization import PINNED_LIBRARIES

    assert {name: version(name) for name in PINNED_LIBRARIES} == PINNED_LIBRARIES
    pyproject = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    pins = dict(
        dependency.split("==", 1)
        for dependency in pyproject["project"]["dependencies"]
        if dependency.split("==", 1)[0] in PINNED_LIBRARIES
    )
    assert pins == PINNED_LIBRARIES
    table = dict(re.findall(r"^\| ([a-z-]+) \| ([0-9.]+) \|$", SPEC_FILE.read_text(encoding="utf-8"), re.M))
    assert {name: table.get(name) for name in PINNED_LIBRARIES} == PINNED_LIBRARIES


_HOST_LABELS = st.text(alphabet="abxn09-AZ_", min_size=0, max_size=66)


def _idna_or_error(host: str) -> str | None:
    import idna

    try:
        return idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError:
        return None


@settings(max_examples=1000)
@given(st.lists(_HOST_LABELS, min_size=1, max_size=5).map(".".join))
def test_the_plain_ascii_host_shortcut_returns_what_idna_returns(host: str) -> None:
    """`_plain_ascii_host` lets most hosts skip IDNA: only ones IDNA returns unchanged, and no IP address."""
    from exchange import normalization

    if normalization._plain_ascii_host(host):
        assert _idna_or_error(host) == host
        assert not normalization._is_ip_address(host)


@pytest.mark.parametrize(
    ("host", "plain"),
    [
        ("shop.example", True),
        ("a-b.c0.example", True),
        ("xn--bcher-kva.example", False),  # punycode: IDNA checks it
        ("ab--cd.example", False),  # hyphens in the 3rd and 4th positions: IDNA refuses
        ("-shop.example", False),
        ("shop-.example", False),
        ("Shop.example", False),  # upper case: IDNA maps it
        ("10.0.0.1", False),  # an IP address
        ("a" * 64 + ".example", False),  # a label over 63
        ("a." * 127 + "ab", False),  # over 253 characters
        ("shop..example", False),
        ("büch.example", False),
    ],
)
def test_the_plain_ascii_host_shortcut_leaves_the_rest_to_idna(host: str, plain: bool) -> None:
    from exchange import normalization

    assert normalization._plain_ascii_host(host) is plain
