"""Names and addresses as typed (issue 14): keyed Bloom-filter encodings made here, on the partner's side.

A ``person_name`` or ``business_name`` row of the submission CSV is sent only as its fuzzy encoding
(``exchange.fuzzy.encode``, the hashing spec's "Fuzzy encodings, version 1"): 1024 bits whose Dice similarity
tracks how alike two spellings are, keyed with the consortium key so that the exchange cannot encode guesses.
A ``shipping_address`` or ``return_address`` row keeps its exact transport hash and, when the consortium key
is given, also sends the address's fuzzy encoding as ``shipping_address_fuzzy`` / ``return_address_fuzzy``.

The record salt that randomises each encoding's noise is the seller's ``seller_ref`` (UTF-8): stable for one
seller, so re-sending it gives the same bits (nothing to average away), and different across sellers, so
identical names do not share a bit pattern.

The consortium key comes from ``--consortium-key-file PATH`` or ``EXCHANGE_CONSORTIUM_KEY_FILE``, as for
document rows. Without it a name row is rejected naming both; an address goes exact only.
"""

from __future__ import annotations

from exchange import fuzzy
from exchange.client.documents import CONSORTIUM_KEY_ENV
from exchange.contract import (
    BUSINESS_NAME_KIND,
    FUZZY_ENCODING_KIND,
    PERSON_NAME_KIND,
    RETURN_ADDRESS_FUZZY_KIND,
    SHIPPING_ADDRESS_FUZZY_KIND,
)
from exchange.normalization import NormalizationError

__all__ = ["ADDRESS_FUZZY_KIND", "NAME_KINDS", "NO_KEY", "NO_KEY_HINT", "FuzzyEncoder", "FuzzyEncodingError"]

# CSV kinds sent only as a fuzzy encoding, and the exact address kinds that also get one.
NAME_KINDS: tuple[str, ...] = (PERSON_NAME_KIND, BUSINESS_NAME_KIND)
ADDRESS_FUZZY_KIND: dict[str, str] = {
    "shipping_address": SHIPPING_ADDRESS_FUZZY_KIND,
    "return_address": RETURN_ADDRESS_FUZZY_KIND,
}
NO_KEY = "no_consortium_key"  # the reason code of FuzzyEncodingError when no key was given
NO_KEY_HINT = f"--consortium-key-file PATH or the environment variable {CONSORTIUM_KEY_ENV}"


class FuzzyEncodingError(ValueError):
    """A value that cannot be sent as a fuzzy encoding: ``reason`` is a short code, the message says why (never
    quoting the value)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FuzzyEncoder:
    """Encodes the names and addresses of one CSV read with the consortium key (None: not given)."""

    def __init__(self, consortium_key: bytes | None = None) -> None:
        self.consortium_key = consortium_key

    def encode(self, wire_kind: str, value: str, seller_ref: str) -> str:
        """The encoding of ``value`` as ``wire_kind`` (a kind of ``exchange.contract.FUZZY_WIRE_KINDS``) for the
        seller ``seller_ref``, as lowercase hex; ``FuzzyEncodingError`` if it cannot be sent."""
        return self.encode_salted(wire_kind, value, seller_ref.encode("utf-8"))

    def encode_salted(self, wire_kind: str, value: str, record_salt: bytes) -> str:
        """As ``encode``, with the record salt given as bytes (a lookup's: random, as it is no stored record)."""
        if self.consortium_key is None:
            raise FuzzyEncodingError("no_consortium_key", f"name rows need the consortium key: {NO_KEY_HINT}")
        try:
            encoding = fuzzy.encode(FUZZY_ENCODING_KIND[wire_kind], value, self.consortium_key, record_salt)
        except NormalizationError as exc:
            raise FuzzyEncodingError("not_normalisable", exc.reason) from None
        ones = fuzzy.popcount(encoding)
        # The exchange refuses these, and one refused indicator would cost the whole batch.
        if ones < fuzzy.MIN_BITS_SET:
            raise FuzzyEncodingError(
                "too_short",
                f"too short to compare: its encoding sets {ones} of {fuzzy.FILTER_BITS} bits, the exchange "
                f"takes {fuzzy.MIN_BITS_SET} or more",
            )
        if ones > fuzzy.MAX_BITS_SET:
            raise FuzzyEncodingError(
                "too_long",
                f"too long to compare: its encoding sets {ones} of {fuzzy.FILTER_BITS} bits, the exchange "
                f"takes at most {fuzzy.MAX_BITS_SET}",
            )
        return fuzzy.to_hex(encoding)
