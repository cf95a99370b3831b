"""Fuzzy encodings of names and addresses, spec version 1 (``docs/hashing-spec.md``, "Fuzzy encodings").

Exact transport hashes miss what people type differently ("Jon Smyth" / "John Smith", "12 Baker St., Apt 4" /
"Apartment 4, 12 Baker Street"). For the kinds where spelling varies, a partner also sends a keyed Bloom-
filter encoding (the exact tokens stay): a cryptographic long-term key (CLK, Schnell, Bachteler and Reiher 2009/2011) of the value's
bigrams, whose Dice similarity tracks the similarity of the values, keyed with the *consortium key* that the
partners share and the exchange does not hold, so the exchange cannot encode guesses.

This module is pure Python (standard library only; it runs on the partner's machine, like
``exchange.normalization``), and it is the spec in code:

1. ``normalize_fuzzy(kind, value)``: the per-kind normalisation for fuzzy matching (below).
2. ``qgrams(normalized)``: the bigrams, exactly clkhash's ``NgramComparison(2).tokenize``: the string padded
   with one space on each side, every 2-character window. Because words are separated by single spaces and
   the padding is a space, this equals the union of each word's padded bigrams: word order does not matter,
   which is how swapped name orders ("Smith John") and reordered addresses still match.
3. ``derive_keys(consortium_key, kind)``: HKDF-SHA256 (RFC 5869; clkhash's ``key_derivation.hkdf``) with the
   fixed salt ``KDF_SALT`` and the kind as ``info``: two 64-byte keys per kind, one for the bit positions and
   one for the noise. The kind in the derivation is the per-kind salt: the same name encoded as a
   ``person_name`` and as a ``business_name`` shares no structure, so frequencies cannot be pooled across kinds.
4. ``clk(kind, value, consortium_key)``: the plain Bloom filter of ``FILTER_BITS`` bits: each bigram sets
   ``HASH_COUNTS[kind]`` bits (and, for addresses, each word with a digit is also a token ``#word`` setting
   ``NUMBER_HASH_COUNT`` bits; ``tokens``), chosen by clkhash's ``blakeHash`` scheme (keyed BLAKE2b of
   the token's UTF-8 bytes with salt ``str(i)``, read as little-endian unsigned 16-bit integers, each taken modulo
   ``FILTER_BITS``). Bit ``j`` of the filter is bit ``7 - j % 8`` of byte ``j // 8`` (big-endian bit order,
   as bitarray's default and numpy's ``packbits``). Identical to ``clkhash.bloomfilter.blake_encode_ngrams``
   for the same key, tokens and per-token k; ``docs/fuzzy-vectors-v1.json`` holds vectors made with
   clkhash 0.18.3.
5. ``encode(kind, value, consortium_key, record_salt)``: the hardened encoding that partners send: the CLK
   with randomised response (BLIP, Alaggan, Gambs and Kermarrec 2012; Schnell and Borgs 2017): every bit is
   flipped with probability ``FLIP_PROBABILITY``, decided by a keyed pseudo-random stream seeded with the
   noise key, the record salt and the normalised value. Without the noise, one name always gives one bit
   pattern, and counting identical patterns aligns them with a public name-frequency table (the
   pattern-frequency attack, tested in tests/exchange/test_fuzzy_privacy.py). With it, no two records of the
   same name share a pattern, while the same record re-encoded gets the same bits: re-sending a seller cannot
   be averaged to strip the noise. ``record_salt`` must be different for different records and stable for
   one record (the partner's ``seller_ref`` is a good choice; the kind is in the noise key already).
   ``_bit_positions`` caches positions per (bigram, k, derived key) in memory, as clkhash does.

Serialisation: ``to_hex`` / ``from_hex``, lowercase hex of the ``FILTER_BYTES`` bytes (``ENCODING_HEX_CHARS``
characters), the same alphabet as transport hashes; ``is_fuzzy_encoding`` checks the shape.

Similarity: ``dice(a, b) = 2 |a & b| / (|a| + |b|)`` on set bits; ``DEFAULT_THRESHOLDS`` are the per-kind
starting thresholds (names lose more bigrams to typos than addresses do: one threshold for every kind is a
trap, PRODUCT.md).

Per-kind normalisation (``normalize_fuzzy``), frozen for version 1:

- all kinds: drop format characters (``Cf``) and apostrophes, turn every other punctuation, symbol, separator
  or control character into a space (first, so that ``™`` disappears rather than becoming ``tm``); then Unicode
  NFKD, drop combining marks (accents: ``José`` -> ``jose``), case-fold, map the Latin
  letters that NFKD does not decompose (``ø``->``o``, ``ł``->``l``, ``đ``->``d``, ``æ``->``ae``, ``œ``->``oe``,
  ``þ``->``th``, ``ð``->``d``, ``ı``->``i``; ``ß`` case-folds to ``ss``), NFKC, and the same removal once
  more (``O'Brien`` -> ``obrien``); words joined by single spaces. Refused (``NormalizationError``) if no
  letter or digit is left.
- ``person_name``: courtesy titles and generational suffixes are dropped as whole words (``PERSON_TITLES``:
  ``mr``, ``mrs``, ``ms``, ``dr``, ``prof``, ``jr``, ``sr``, ...), unless nothing else is left. Word order is
  kept in the normalised string but does not reach the encoding (see ``qgrams``).
- ``business_name``: legal-form words are dropped (``LEGAL_FORMS``: ``ltd``, ``limited``, ``llc``, ``inc``,
  ``gmbh``, ``co``, ``corp``, ...), unless nothing else is left: "Acme Ltd" and "ACME Limited" are one business.
- ``shipping_address`` and ``return_address``: the exact-token abbreviation table of the hashing spec v1 plus a
  few more (``ADDRESS_ABBREVIATIONS``), word by word: ``St.`` -> ``street``, ``Apt`` -> ``apartment``, ...;
  ``#`` disappears as punctuation.

Rejection reasons never quote the value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from exchange import normalization
from exchange.normalization import NormalizationError

__all__ = [
    "ADDRESS_ABBREVIATIONS",
    "ADDRESS_KINDS",
    "DEFAULT_THRESHOLDS",
    "ENCODING_HEX_CHARS",
    "FILTER_BITS",
    "FILTER_BYTES",
    "FLIP_PROBABILITY",
    "FUZZY_KINDS",
    "FUZZY_SPEC_VERSION",
    "HASH_COUNTS",
    "KDF_SALT",
    "LEGAL_FORMS",
    "MAX_BITS_SET",
    "MIN_BITS_SET",
    "NUMBER_HASH_COUNT",
    "PERSON_TITLES",
    "Q",
    "bit_positions",
    "clk",
    "derive_keys",
    "dice",
    "encode",
    "from_hex",
    "hkdf_sha256",
    "is_fuzzy_encoding",
    "normalize_fuzzy",
    "popcount",
    "qgrams",
    "to_hex",
    "tokens",
]

FUZZY_SPEC_VERSION = 1

FILTER_BITS = 1024  # l: a power of two, as the blakeHash scheme needs; 1024 is clkhash's usual length
FILTER_BYTES = FILTER_BITS // 8
ENCODING_HEX_CHARS = FILTER_BYTES * 2
Q = 2  # bigrams, the q of Schnell et al. and of clkhash's default name schemas
# The exchange refuses an encoding with fewer or more bits set (exchange.matching.FuzzyMatcher.parse): an empty
# filter matches nothing, and a hostile member's saturated one would be a candidate under every LSH band (it
# cannot reach a 0.6 Dice with an honest encoding of 15-35% of the bits, but it costs every probe). A
# one-letter name sets too few; an address of about 150 characters or more too many; the reference client
# checks before sending, as one refused indicator costs its whole batch.
MIN_BITS_SET = FILTER_BITS // 20
MAX_BITS_SET = FILTER_BITS * 7 // 8

FUZZY_KINDS: tuple[str, ...] = ("person_name", "business_name", "shipping_address", "return_address")
ADDRESS_KINDS: frozenset[str] = frozenset({"shipping_address", "return_address"})

# k, the bits each bigram sets: the per-kind weight of CLK schemes (clkhash's "bitsPerToken"). Names have
# about 10-20 bigrams and addresses 30-60, so these put a typical encoding at roughly 15-35% of bits set.
HASH_COUNTS: dict[str, int] = {
    "person_name": 20,
    "business_name": 16,
    "shipping_address": 10,
    "return_address": 10,
}

# House numbers, flat numbers and postcodes tell addresses on one street apart, yet are only a few bigrams of
# a long address: each address word with a digit is also one whole-word token "#word" with this many bits
# (clkhash's per-token bit counts; measured: address precision at the threshold rises from about 0.4 to 0.85).
NUMBER_HASH_COUNT = 30

# Randomised response: each bit of the CLK is flipped with this probability (per record, deterministically).
FLIP_PROBABILITY = 0.01
_FLIP_BELOW = round(FLIP_PROBABILITY * 65536)  # a bit flips when its 16-bit noise word is below this

KDF_SALT = b"bad-actor-exchange fuzzy encodings v1"

# Starting thresholds of Dice similarity per kind, measured on fixtures/corruption.py (tests/exchange/
# test_fuzzy_blocking.py): names lose more bigrams to one typo than addresses do. Addresses at 0.85 rather than
# 0.80: the same recall of linked seller pairs at a higher precision (docs/hashing-spec.md, the bench).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "person_name": 0.7,
    "business_name": 0.7,
    "shipping_address": 0.85,
    "return_address": 0.85,
}

PERSON_TITLES: frozenset[str] = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "jr", "sr", "ii", "iii", "iv"}
)
LEGAL_FORMS: frozenset[str] = frozenset(
    {
        "ltd", "limited", "llc", "llp", "lp", "inc", "incorporated", "corp", "corporation", "co", "company",
        "plc", "gmbh", "ag", "kg", "ug", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "ab", "as",
        "pty", "pte", "sdn", "bhd",
    }
)  # fmt: skip
ADDRESS_ABBREVIATIONS: dict[str, str] = {
    # the exact-token table of the hashing spec v1 ...
    **normalization.ADDRESS_ABBREVIATIONS,
    # ... and, for fuzzy matching only, a few more common ones
    "dr": "drive",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "hwy": "highway",
    "pkwy": "parkway",
    "cres": "crescent",
    "ter": "terrace",
    "apartments": "apartment",
    "flat": "apartment",
    "unit": "apartment",
    "po": "post",
}

_LETTER_MAP = str.maketrans(
    {"ø": "o", "ł": "l", "đ": "d", "æ": "ae", "œ": "oe", "þ": "th", "ı": "i", "ð": "d"}
)
_APOSTROPHES = normalization.ADDRESS_APOSTROPHES
_WORDS = re.compile(r"\S+")


def _separate(text: str) -> str:
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf" or ch in _APOSTROPHES:
            continue
        out.append(" " if category[0] in "PSZC" else ch)
    return "".join(out)


def _fold(value: str) -> str:
    # Punctuation and symbols go first, so that NFKD cannot turn a symbol into letters ("™" into "TM").
    text = unicodedata.normalize("NFKD", _separate(value))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().translate(_LETTER_MAP)
    text = _separate(unicodedata.normalize("NFKC", text))
    return " ".join(_WORDS.findall(text))


def _drop_words(words: list[str], drop: frozenset[str]) -> list[str]:
    kept = [w for w in words if w not in drop]
    return kept or words


def normalize_fuzzy(kind: str, value: str) -> str:
    """The fuzzy-matching form of ``value`` for ``kind`` (module docstring); raises ``NormalizationError``."""
    if kind not in FUZZY_KINDS:
        raise NormalizationError(kind, f"unknown fuzzy kind; expected one of {', '.join(FUZZY_KINDS)}")
    if not isinstance(value, str):
        raise NormalizationError(kind, "value must be a string")
    if len(value) > 1000:
        raise NormalizationError(kind, "value longer than 1000 characters")
    words = _fold(value).split()
    if not words:
        raise NormalizationError(kind, "no letters or digits left after normalisation")
    if kind == "person_name":
        words = _drop_words(words, PERSON_TITLES)
    elif kind == "business_name":
        words = _drop_words(words, LEGAL_FORMS)
    else:
        words = [ADDRESS_ABBREVIATIONS.get(w, w) for w in words]
    return " ".join(words)


def qgrams(normalized: str) -> tuple[str, ...]:
    """clkhash's ``NgramComparison(Q, positional=False).tokenize``: padded, every window, duplicates kept."""
    if not normalized:
        return ()
    padded = " " * (Q - 1) + normalized + " " * (Q - 1)
    return tuple(padded[i : i + Q] for i in range(len(padded) - Q + 1))


def hkdf_sha256(
    secret: bytes, num_keys: int, *, salt: bytes, info: bytes, key_size: int = 64
) -> tuple[bytes, ...]:
    """RFC 5869 HKDF with HMAC-SHA256, split into ``num_keys`` keys: clkhash's ``key_derivation.hkdf``."""
    length = num_keys * key_size
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 cannot produce that many bytes")
    prk = hmac.new(salt or b"\x00" * 32, secret, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return tuple(okm[i * key_size : (i + 1) * key_size] for i in range(num_keys))


def derive_keys(consortium_key: bytes, kind: str) -> tuple[bytes, bytes]:
    """The kind's (position key, noise key), 64 bytes each, from the consortium key (module docstring, 3)."""
    if kind not in FUZZY_KINDS:
        raise NormalizationError(kind, f"unknown fuzzy kind; expected one of {', '.join(FUZZY_KINDS)}")
    if not isinstance(consortium_key, bytes) or len(consortium_key) < 16:
        raise ValueError("the consortium key must be at least 16 bytes")
    position_key, noise_key = hkdf_sha256(consortium_key, 2, salt=KDF_SALT, info=f"v1 {kind}".encode())
    return position_key, noise_key


def bit_positions(token: str, k: int, key: bytes, length: int = FILTER_BITS) -> list[int]:
    """The ``k`` bit positions of one q-gram: clkhash's ``blake_hash_token`` (little-endian 16-bit words)."""
    return list(_bit_positions(token, k, key, length))


@lru_cache(maxsize=65_536)  # bigrams repeat across values, as clkhash's own cache of blake_hash_token assumes
def _bit_positions(token: str, k: int, key: bytes, length: int) -> tuple[int, ...]:
    shorts: list[int] = []
    for i in range((k + 31) // 32):
        digest = hashlib.blake2b(token.encode("utf-8"), key=key, salt=str(i).encode()).digest()
        shorts.extend(struct.unpack("<32H", digest))
    return tuple(s % length for s in shorts[:k])


def tokens(kind: str, normalized: str) -> list[tuple[str, int]]:
    """The (token, k) pairs that set the bits: the bigrams with ``HASH_COUNTS[kind]``, and for the address
    kinds also ``#word`` with ``NUMBER_HASH_COUNT`` for every word holding a digit (module docstring, 4)."""
    out = [(gram, HASH_COUNTS[kind]) for gram in qgrams(normalized)]
    if kind in ADDRESS_KINDS:
        out += [("#" + word, NUMBER_HASH_COUNT) for word in normalized.split(" ") if _has_digit(word)]
    return out


def _has_digit(word: str) -> bool:
    return any(ch.isdigit() for ch in word)


def _bloom(weighted: Iterable[tuple[str, int]], key: bytes) -> bytearray:
    bits = bytearray(FILTER_BYTES)
    for token, k in weighted:
        for position in _bit_positions(token, k, key, FILTER_BITS):
            bits[position >> 3] |= 0x80 >> (position & 7)
    return bits


def clk(kind: str, value: str, consortium_key: bytes) -> bytes:
    """The plain, unhardened CLK of the value (module docstring, 4). Partners send ``encode``, not this."""
    position_key, _ = derive_keys(consortium_key, kind)
    return bytes(_bloom(tokens(kind, normalize_fuzzy(kind, value)), position_key))


def _noise_words(noise_key: bytes, record_salt: bytes, normalized: str) -> list[int]:
    seed = len(record_salt).to_bytes(4, "big") + record_salt + normalized.encode("utf-8")
    words: list[int] = []
    counter = 0
    while len(words) < FILTER_BITS:
        digest = hashlib.blake2b(
            seed, key=noise_key, person=b"fuzzy-noise-v1", salt=counter.to_bytes(16, "big")
        )
        words.extend(struct.unpack("<32H", digest.digest()))
        counter += 1
    return words


def encode(kind: str, value: str, consortium_key: bytes, record_salt: bytes) -> bytes:
    """The hardened encoding a partner sends (module docstring, 5): ``FILTER_BYTES`` bytes."""
    if not isinstance(record_salt, bytes) or not record_salt:
        raise ValueError("record_salt must be non-empty bytes, distinct per record")
    position_key, noise_key = derive_keys(consortium_key, kind)
    normalized = normalize_fuzzy(kind, value)
    bits = _bloom(tokens(kind, normalized), position_key)
    for position, word in enumerate(_noise_words(noise_key, record_salt, normalized)):
        if word < _FLIP_BELOW:
            bits[position >> 3] ^= 0x80 >> (position & 7)
    return bytes(bits)


def to_hex(encoding: bytes) -> str:
    if len(encoding) != FILTER_BYTES:
        raise ValueError(f"a fuzzy encoding has {FILTER_BYTES} bytes")
    return encoding.hex()


_HEX = re.compile(rf"[0-9a-f]{{{ENCODING_HEX_CHARS}}}")


def is_fuzzy_encoding(text: object) -> bool:
    """True for exactly ``ENCODING_HEX_CHARS`` lowercase hex characters."""
    return isinstance(text, str) and _HEX.fullmatch(text) is not None


def from_hex(text: str) -> bytes:
    if not is_fuzzy_encoding(text):
        raise ValueError(f"a fuzzy encoding is exactly {ENCODING_HEX_CHARS} lowercase hex characters")
    return bytes.fromhex(text)


def popcount(encoding: bytes) -> int:
    return int.from_bytes(encoding, "big").bit_count()


def dice(a: bytes, b: bytes) -> float:
    """Dice coefficient of the set bits of two encodings of equal length (0.0 when both are empty)."""
    if len(a) != len(b):
        raise ValueError("encodings of different lengths")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    total = x.bit_count() + y.bit_count()
    return 2 * (x & y).bit_count() / total if total else 0.0
