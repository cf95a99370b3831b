"""The partner contract: what a valid request looks like, shared by the server and the reference client.

Pure (stdlib only, no Django): the reference client (`exchange.client`) imports it without a server
installation, and the server (ingest, lookups, serializers, admin hash search, URL converters) validates with
the same patterns, so a row the client sends is never refused by the server for a rule the client did not
know. The limits here are the DEFAULTS: the server reads its live limits from settings
(`EXCHANGE_MAX_BATCH_SELLERS`, `EXCHANGE_MAX_SELLER_INDICATORS`, `EXCHANGE_MAX_LOOKUP_INDICATORS`), which
default to these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "APPEAL_NOTE_MAX_LENGTH",
    "APPEAL_OUTCOMES",
    "BUSINESS_NAME_KIND",
    "DEFAULT_MAX_BATCH_SELLERS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_LOOKUP_INDICATORS",
    "DEFAULT_MAX_SELLER_INDICATORS",
    "DOCUMENT_KIND",
    "DOCUMENT_KINDS",
    "FUZZY_ENCODING_KIND",
    "FUZZY_FAMILY",
    "FUZZY_WIRE_KINDS",
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "IDEMPOTENCY_KEY_PATTERN",
    "IDEMPOTENCY_KEY_RULE",
    "IMAGE_KIND",
    "IMAGE_KINDS",
    "IMAGE_MIN_QUALITY",
    "MAX_APPEAL_DOCUMENTS",
    "MAX_IMAGE_CROPS",
    "OPINION_KINDS",
    "OPINION_NOTE_MAX_LENGTH",
    "PERSON_NAME_KIND",
    "RETURN_ADDRESS_FUZZY_KIND",
    "SELLER_REF_MAX_LENGTH",
    "SELLER_REF_RE",
    "SELLER_REF_RULE",
    "SHIPPING_ADDRESS_FUZZY_KIND",
    "TIMESTAMP_CLOCK_SKEW",
    "TIMESTAMP_EARLIEST",
    "TIMESTAMP_MAX_OFFSET",
    "TRANSPORT_HASH_LENGTH",
    "TRANSPORT_HASH_RE",
    "Limits",
    "is_idempotency_key",
    "is_seller_ref",
    "is_transport_hash",
]

SELLER_REF_MAX_LENGTH = 128
# Not a lone "." or "..": a reference is a URL path segment (/api/v1/sellers/{seller_ref}/), and HTTP clients
# resolve those two as dot segments (RFC 3986), so such a seller could never be read or retracted. The
# lookahead ends at the next non-reference character, so the pattern also works inside the URL converter.
SELLER_REF_RE = re.compile(rf"(?!\.\.?(?![A-Za-z0-9._:\-]))[A-Za-z0-9._:\-]{{1,{SELLER_REF_MAX_LENGTH}}}")
SELLER_REF_RULE = f"1-{SELLER_REF_MAX_LENGTH} characters of A-Z a-z 0-9 . _ : - (not a lone . or ..)"

TRANSPORT_HASH_LENGTH = 64
TRANSPORT_HASH_RE = re.compile(rf"[0-9a-f]{{{TRANSPORT_HASH_LENGTH}}}")

# The Idempotency-Key header of a submission: 1-255 printable ASCII characters (a UUID per batch is ideal),
# not only spaces. The pattern is what the OpenAPI schema publishes; `is_idempotency_key` is the check.
IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"
IDEMPOTENCY_KEY_RULE = f"1-{IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters, e.g. a UUID per batch"
_IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)

# The bounds of a date-time a partner sends (a seller's `reported_at`): the server's syntax and parsing are in
# `exchange.timestamps` (it needs Django's parser); the bounds are here so that the reference client refuses
# a row the server would refuse (one such row would cost its whole batch).
TIMESTAMP_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
TIMESTAMP_CLOCK_SKEW = timedelta(minutes=5)  # a partner's clock may run this far ahead of the exchange's
TIMESTAMP_MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use (Line Islands +14:00)

# A seller's appeal (POST /api/v1/sellers/{seller_ref}/appeals/): its outcome, at most this many document
# fingerprints per request (each one is checked against other platforms' like a looked-up indicator) and a note.
APPEAL_OUTCOMES: tuple[str, ...] = ("pending", "upheld", "rejected")
MAX_APPEAL_DOCUMENTS = 20
APPEAL_NOTE_MAX_LENGTH = 1000

# A partner's opinion on a cluster (`POST /api/v1/clusters/{ref}/opinions/`): its kinds and what each says, and
# the longest note. The note is free text for the partner's own analysts and the exchange's: it is never shown
# to another platform, and it must not carry identifiers (no seller references of others, no raw values).
OPINION_KINDS: dict[str, str] = {
    "seen_too": "we know this actor too",
    "false_positive": "our seller (seller_ref, required) is not this actor",
    "disputed": "the seller is under appeal on our side",
    "actioned": "we took enforcement on the strength of this signal (acted_at, required)",
}
OPINION_NOTE_MAX_LENGTH = 500

# A reused product photo (issue 13; docs/hashing-spec.md, "Perceptual image hashes, version 1"): an indicator
# of kind `image` carries no transport hash of a value but the photo's PDQ hash, computed on the partner's side:
# {"kind": "image", "hash": <64 lowercase hex: the full photo's PDQ>, "quality": <IMAGE_MIN_QUALITY-100>,
#  "crops": [<64 hex>, ...]} (the sub-crop variants of `exchange.perceptual.pdq_variants`, at most
# MAX_IMAGE_CROPS; those of too low quality are left out). The exchange never receives an image, and the hash
# is not keyed: near-duplicates are found by Hamming distance.
IMAGE_KIND = "image"
# A document (issue 13; docs/hashing-spec.md, "Document fingerprints, version 1"): {"kind": "document", "hash":
# <64 hex: the SHA-256 of the file's bytes, a transport hash keyed on the server like every other>, "minhash":
# <the keyed MinHash of its normalised text, exchange.documents>}. Near-duplicates by estimated Jaccard
# similarity. The exchange never receives the file or its text.
DOCUMENT_KIND = "document"
IMAGE_KINDS = (IMAGE_KIND,)  # as one-value enums for the OpenAPI schema
DOCUMENT_KINDS = (DOCUMENT_KIND,)
# Names and addresses typed differently (issue 14; docs/hashing-spec.md, "Fuzzy encodings, version 1"):
# {"kind": "person_name" | "business_name" | "shipping_address_fuzzy" | "return_address_fuzzy", "encoding":
# <256 lowercase hex: the hardened keyed Bloom-filter encoding of exchange.fuzzy.encode>}. The encoding is made
# on the partner's side with the consortium key (the exchange cannot encode a guess); near-duplicates by Dice
# similarity. An address's fuzzy kind comes beside its exact `shipping_address`/`return_address` hash, never
# instead of it, and the two count as one piece of evidence between two sellers (FUZZY_FAMILY).
PERSON_NAME_KIND = "person_name"
BUSINESS_NAME_KIND = "business_name"
SHIPPING_ADDRESS_FUZZY_KIND = "shipping_address_fuzzy"
RETURN_ADDRESS_FUZZY_KIND = "return_address_fuzzy"
FUZZY_WIRE_KINDS = (
    PERSON_NAME_KIND,
    BUSINESS_NAME_KIND,
    SHIPPING_ADDRESS_FUZZY_KIND,
    RETURN_ADDRESS_FUZZY_KIND,
)
# The wire kind -> the kind of the fuzzy spec it is encoded as (exchange.fuzzy.FUZZY_KINDS: the key derivation's
# `info`, the normalisation and the bits per token).
FUZZY_ENCODING_KIND = {
    PERSON_NAME_KIND: "person_name",
    BUSINESS_NAME_KIND: "business_name",
    SHIPPING_ADDRESS_FUZZY_KIND: "shipping_address",
    RETURN_ADDRESS_FUZZY_KIND: "return_address",
}
# Kinds of one family are one weak piece of evidence between two sellers, not two (graph.linking.rules): a fuzzy
# address and the exact address kind it shadows (an address goes both ways), and a business name and a person's
# name (a business is often named after its owner: two unrelated sellers named Dubois would otherwise link on
# "Dubois" and "Dubois SARL" alone; measured in tests/bench/bench_fuzzy_linking.py).
FUZZY_FAMILY = {
    SHIPPING_ADDRESS_FUZZY_KIND: "shipping_address",
    RETURN_ADDRESS_FUZZY_KIND: "return_address",
    BUSINESS_NAME_KIND: PERSON_NAME_KIND,
}
IMAGE_MIN_QUALITY = 50  # PDQ's published cut-off (exchange.perceptual.PDQ_QUALITY_THRESHOLD)
MAX_IMAGE_CROPS = 18

DEFAULT_MAX_BATCH_SELLERS = 1000
DEFAULT_MAX_SELLER_INDICATORS = 100
DEFAULT_MAX_LOOKUP_INDICATORS = 100
# A request's body: 500 sellers with five photos each (18 crops each) are 3.3 MB.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def is_seller_ref(s: object) -> bool:
    """Whether ``s`` is a seller reference the exchange accepts (`SELLER_REF_RULE`)."""
    return isinstance(s, str) and SELLER_REF_RE.fullmatch(s) is not None


def is_idempotency_key(s: object) -> bool:
    """Whether ``s`` is an Idempotency-Key header value the exchange accepts (`IDEMPOTENCY_KEY_RULE`)."""
    return (
        isinstance(s, str)
        and len(s) <= IDEMPOTENCY_KEY_MAX_LENGTH
        and _IDEMPOTENCY_KEY_RE.fullmatch(s) is not None
    )


def is_transport_hash(s: object) -> bool:
    """Whether ``s`` looks like a transport hash: exactly 64 lowercase hexadecimal characters."""
    return isinstance(s, str) and TRANSPORT_HASH_RE.fullmatch(s) is not None


@dataclass(frozen=True)
class Limits:
    """The server's live limits, as `GET /api/v1/me/` reports them under ``limits`` (the defaults when a
    server does not say: an older exchange, or a test double)."""

    max_batch_sellers: int = DEFAULT_MAX_BATCH_SELLERS
    max_seller_indicators: int = DEFAULT_MAX_SELLER_INDICATORS
    max_lookup_indicators: int = DEFAULT_MAX_LOOKUP_INDICATORS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # a request's JSON body: larger ones are refused with 413

    def as_dict(self) -> dict[str, int]:
        return {
            "max_batch_sellers": self.max_batch_sellers,
            "max_seller_indicators": self.max_seller_indicators,
            "max_lookup_indicators": self.max_lookup_indicators,
            "max_body_bytes": self.max_body_bytes,
        }

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Limits:
        """Read ``answer["limits"]``; a missing or malformed value keeps its default."""
        given = answer.get("limits")
        given = given if isinstance(given, Mapping) else {}
        values: dict[str, int] = {}
        for name, default in cls().as_dict().items():
            value = given.get(name)
            usable = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            values[name] = value if usable and isinstance(value, int) else default
        return cls(**values)
