"""Indicator normalisation and transport hashing, spec version 1.

This module is the hashing spec in code; ``docs/hashing-spec.md`` is the same spec in prose and
``docs/hashing-vectors-v1.json`` holds the test vectors both must agree on. Partners run it on their own
machines (through ``exchange.client``), so it is pure Python with no Django import.

Every value goes through ``normalize(kind, value)`` to one canonical string, and the transport hash is the
SHA-256 of that string's UTF-8 bytes as 64 lowercase hex characters. Two partners that hold the same
identifier written differently must arrive at the same canonical string; anything that changes a canonical
form for an existing input is a new spec version, never an edit of v1.

Rejection reasons never quote the input value: they end up in logs and on terminals, and the whole point of
the exchange is that raw identifiers stay with the partner.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Callable
from functools import cache
from urllib.parse import urlsplit

import idna
import phonenumbers
from publicsuffixlist import PublicSuffixList
from stdnum import get_cc_module, iban
from stdnum.exceptions import InvalidChecksum, ValidationError

from exchange.contract import DOCUMENT_KIND, FUZZY_WIRE_KINDS, IMAGE_KIND, is_transport_hash

__all__ = [
    "KINDS",
    "LINK_KINDS",
    "PINNED_LIBRARIES",
    "REASONS",
    "SIMILARITY_KINDS",
    "SPEC_VERSION",
    "STATUSES",
    "STRONG_KINDS",
    "WEAK_KINDS",
    "NormalizationError",
    "is_transport_hash",
    "normalize",
    "normalize_region",
    "transport_hash",
]

SPEC_VERSION = 1

# The normalisation libraries whose data decide what a value normalises to, pinned exactly for this spec
# version: two partners on different phonenumbers or Public Suffix List releases could accept, or cut, the
# same input differently and never match. pyproject pins these versions; docs/hashing-spec.md lists them; a
# test checks that the installed ones are these and that every published vector still holds with them.
# Moving a pin is a reviewed change: re-run the vectors, and bump SPEC_VERSION if a canonical form changed.
PINNED_LIBRARIES: dict[str, str] = {
    "phonenumbers": "9.0.43",
    "python-stdnum": "2.2",
    "idna": "3.20",
    "publicsuffixlist": "1.1.2.20261023",
}

STRONG_KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "tax_id",
    "business_registration",
    "bank_account",
    "payment_account",
    "crypto_wallet",
)
WEAK_KINDS: tuple[str, ...] = (
    "store_name",
    "website_domain",
    "shipping_address",
    "return_address",
    "device_id",
)
KINDS: tuple[str, ...] = STRONG_KINDS + WEAK_KINDS
# Kinds that link by similarity rather than by a transport hash of a normalised value: they are not normalised
# here (a product photo's PDQ hash is computed by exchange.perceptual, a document's keyed MinHash by
# exchange.documents, a name's or an address's keyed Bloom filter by exchange.fuzzy). Every kind the exchange
# stores, links and shows is in LINK_KINDS; KINDS are the ones this spec normalises and hashes.
SIMILARITY_KINDS: tuple[str, ...] = (IMAGE_KIND, DOCUMENT_KIND, *FUZZY_WIRE_KINDS)
LINK_KINDS: tuple[str, ...] = KINDS + SIMILARITY_KINDS

STATUSES: tuple[str, ...] = ("confirmed", "suspected")
REASONS: tuple[str, ...] = (
    "counterfeit",
    "trademark",
    "copyright",
    "design",
    "geographical_indication",
    "falsified_documents",
    "other",
)

# Longer inputs are certainly not one identifier (and would make a cheap denial of service).
MAX_INPUT_LENGTH = 1000

# ISO 3166-1 alpha-2, plus XK (Kosovo), which registries and phone plans use although ISO has not assigned it.
# Frozen here rather than taken from a library so that the set of accepted prefixes is part of spec v1.
_ISO_3166_ALPHA2_AND_XK = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW
    BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
    FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN
    IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF
    PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK
    YE YT ZA ZM ZW
"""
COUNTRY_CODES: frozenset[str] = frozenset(_ISO_3166_ALPHA2_AND_XK.split())
# Greek VAT numbers are written with "EL"; the canonical form always uses the ISO code.
COUNTRY_ALIASES: dict[str, str] = {"EL": "GR"}

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

# Address abbreviations expanded word by word. Deliberately small: every entry changes hashes, and a
# wrong expansion is harmless only as long as it is applied the same way everywhere.
ADDRESS_ABBREVIATIONS: dict[str, str] = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "blvd": "boulevard",
    "ln": "lane",
    "bldg": "building",
    "fl": "floor",
    "flr": "floor",
    "apt": "apartment",
    "ste": "suite",
    "rm": "room",
}

ADDRESS_APOSTROPHES = frozenset("'\u2019\u02bc`")

# Bech32 addresses are case-insensitive (written lower-case by convention); these human-readable parts are
# the ones v1 recognises. Everything else that is not 0x-hex is treated as case-sensitive (base58 etc.).
BECH32_PREFIXES: tuple[str, ...] = ("bc1", "tb1", "bcrt1", "ltc1", "tltc1")
_BECH32_DATA = re.compile(r"[02-9ac-hj-np-z]{6,}")
_HEX_WALLET = re.compile(r"0x[0-9a-f]+")

_TAX_ID_SEPARATORS = re.compile(r"[\s.\-/:]+")
_EXPLICIT_COUNTRY = re.compile(r"([A-Z]{2})[\s.\-/:]")
_ALNUM = re.compile(r"[A-Z0-9]+")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}")
_BANK_PART = re.compile(r"[A-Z0-9]+")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_UUID_HEX = re.compile(r"[0-9a-f]{32}")
# A host name IDNA would return unchanged: lowercase ASCII letters, digits and inner hyphens, labels of 1-63
# (the label rules `_plain_ascii_host` finishes).
_LDH_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class NormalizationError(ValueError):
    """A value that cannot be normalised for its kind.

    ``kind`` is the indicator kind and ``reason`` a short human explanation that never contains the value.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def normalize(kind: str, value: str, default_region: str | None = None) -> str:
    """Return the canonical v1 form of ``value`` as an indicator of ``kind``.

    ``default_region`` is the partner's ISO 3166 country code; it is used for national phone numbers and
    for tax ids, business registrations and bank accounts written without a country prefix.
    Raises ``NormalizationError`` for an unknown kind or a value that is not a valid identifier of the kind.
    """
    normalizer = _NORMALIZERS.get(kind)
    if normalizer is None:
        raise NormalizationError(kind, f"unknown indicator kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if not isinstance(value, str):
        raise NormalizationError(kind, "value must be a string")
    if len(value) > MAX_INPUT_LENGTH:
        raise NormalizationError(kind, f"value is longer than {MAX_INPUT_LENGTH} characters")
    region = normalize_region(default_region, kind)
    return normalizer(value, region)


def transport_hash(kind: str, value: str, default_region: str | None = None) -> str:
    """Return the transport hash (SHA-256 of the canonical form, 64 lowercase hex) of ``value``."""
    return hashlib.sha256(normalize(kind, value, default_region).encode("utf-8")).hexdigest()


def normalize_region(default_region: str | None, kind: str = "default_region") -> str | None:
    """Validate a default region (case-insensitive ISO 3166 alpha-2) and return it upper-cased, or None."""
    if default_region is None or default_region == "":
        return None
    region = default_region.strip().upper()
    if region not in COUNTRY_CODES:
        raise NormalizationError(kind, "default region must be an ISO 3166 two-letter country code")
    return region


# --- per-kind rules --------------------------------------------------------------------------------------


def _normalize_email(value: str, region: str | None, kind: str = "email") -> str:
    text = unicodedata.normalize("NFC", value.strip()).lower()
    if not text:
        raise NormalizationError(kind, "empty value")
    if text.count("@") != 1:
        raise NormalizationError(kind, "an email address needs exactly one '@'")
    local, _, domain = text.rpartition("@")
    if any(ch.isspace() for ch in text):
        raise NormalizationError(kind, "an email address cannot contain whitespace")
    local = local.split("+", 1)[0]
    if not local:
        raise NormalizationError(kind, "empty local part (before '@')")
    if not domain:
        raise NormalizationError(kind, "empty domain (after '@')")
    domain = _encode_hostname(domain, kind)
    if "." not in domain:
        raise NormalizationError(kind, "the email domain needs at least two labels")
    if domain in GMAIL_DOMAINS:
        # Gmail ignores dots in the local part and googlemail.com is the same mailbox.
        local = local.replace(".", "")
        domain = "gmail.com"
        if not local:
            raise NormalizationError(kind, "empty local part (before '@')")
    return f"{local}@{domain}"


def _normalize_phone(value: str, region: str | None) -> str:
    text = value.strip()
    if not text:
        raise NormalizationError("phone", "empty value")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if region is None:
                reason = "national number without a default region; use +<country code> or set a region"
            else:
                reason = "unknown country calling code"
        else:
            reason = "not a phone number"
        raise NormalizationError("phone", reason) from None
    if not phonenumbers.is_valid_number(number):
        raise NormalizationError("phone", "not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _vat_module_accepts(country: str, compact: str) -> bool:
    try:
        module = get_cc_module(country.lower(), "vat")
    except ImportError:  # pragma: no cover - get_cc_module returns None for unknown modules
        return False
    return bool(module is not None and (module.is_valid(compact) or module.is_valid(compact[2:])))


def _make_registration_normalizer(kind: str) -> Callable[[str, str | None], str]:
    def normalize_registration(value: str, region: str | None) -> str:
        text = unicodedata.normalize("NFKC", value).strip().upper()
        if not text:
            raise NormalizationError(kind, "empty value")
        compact = _TAX_ID_SEPARATORS.sub("", text)
        country = _registration_country(text, compact, region)
        if country is None:
            raise NormalizationError(
                kind, "no country prefix and no default region; start the value with the ISO country code"
            )
        body = compact[2:] if compact[:2] in (country, *_aliases_of(country)) else compact
        if body and not _ALNUM.fullmatch(body):
            raise NormalizationError(kind, "only letters A-Z, digits, spaces, '.', '-', '/' and ':' allowed")
        if not 4 <= len(body) <= 30:
            raise NormalizationError(kind, "must have 4 to 30 letters or digits after the country code")
        return country + body

    return normalize_registration


def _aliases_of(country: str) -> tuple[str, ...]:
    return tuple(alias for alias, target in COUNTRY_ALIASES.items() if target == country)


def _known_prefix(prefix: str) -> str | None:
    prefix = COUNTRY_ALIASES.get(prefix, prefix)
    return prefix if prefix in COUNTRY_CODES else None


def _registration_country(text: str, compact: str, region: str | None) -> str | None:
    """Decide which country a tax id or registration number belongs to (see the spec for the order)."""
    if region is not None and compact.startswith(region):
        return region
    explicit = _EXPLICIT_COUNTRY.match(text)
    if explicit and _known_prefix(explicit.group(1)):
        return _known_prefix(explicit.group(1))
    prefix = _known_prefix(compact[:2])
    if region is None:
        return prefix
    # With a default region, a foreign prefix written without a separator only counts when the value is a
    # valid number of that country for python-stdnum ("ATU13585627"); "HRB 12345" stays a German register.
    if prefix is not None and _vat_module_accepts(prefix, compact):
        return prefix
    return region


def _normalize_bank_account(value: str, region: str | None) -> str:
    kind = "bank_account"
    text = unicodedata.normalize("NFKC", value).strip().upper()
    if not text:
        raise NormalizationError(kind, "empty value")
    if text.startswith("IBAN") and text[4:5] in (" ", ":"):
        text = text[5:].strip()
    compact = re.sub(r"[\s\-.]+", "", text)
    if _IBAN_SHAPE.match(compact) and ":" not in compact:
        if not _ALNUM.fullmatch(compact):
            raise NormalizationError(kind, "an IBAN has only letters and digits")
        if not 15 <= len(compact) <= 34:
            raise NormalizationError(kind, "an IBAN has 15 to 34 characters")
        try:
            iban.validate(compact)
        except InvalidChecksum:
            raise NormalizationError(kind, "IBAN checksum failed") from None
        except ValidationError:
            raise NormalizationError(kind, "not a valid IBAN for its country") from None
        return compact
    parts = compact.split(":")
    if len(parts) != 3:
        raise NormalizationError(kind, "expected an IBAN or COUNTRY:BANKCODE:ACCOUNT")
    country, bank_code, account = parts
    country = COUNTRY_ALIASES.get(country, country)
    if country not in COUNTRY_CODES:
        raise NormalizationError(kind, "COUNTRY in COUNTRY:BANKCODE:ACCOUNT must be an ISO country code")
    if not (_BANK_PART.fullmatch(bank_code) and _BANK_PART.fullmatch(account)):
        raise NormalizationError(kind, "bank code and account must be non-empty letters and digits")
    return f"{country}:{bank_code}:{account}"


def _normalize_payment_account(value: str, region: str | None) -> str:
    kind = "payment_account"
    text = unicodedata.normalize("NFC", value).strip()
    provider, sep, account = text.partition(":")
    provider = provider.strip().lower()
    account = account.strip()
    if not sep or not provider or not account:
        raise NormalizationError(
            kind, "expected PROVIDER:ACCOUNT (a provider name, a colon, the account id or email)"
        )
    if not _PROVIDER.fullmatch(provider):
        raise NormalizationError(kind, "provider must be letters, digits, '.', '_' or '-'")
    if any(ch.isspace() for ch in account):
        raise NormalizationError(kind, "account cannot contain whitespace")
    if "@" in account[1:]:
        # Anything with an '@' that is not a leading handle marker ("@someone") must be an email address.
        return f"{provider}:{_normalize_email(account, region, kind)}"
    return f"{provider}:{account.lower()}"


def _normalize_crypto_wallet(value: str, region: str | None) -> str:
    kind = "crypto_wallet"
    text = value.strip()
    if not text:
        raise NormalizationError(kind, "empty value")
    if any(ch.isspace() for ch in text):
        raise NormalizationError(kind, "a wallet address cannot contain whitespace")
    if not text.isascii() or not text.isprintable():
        raise NormalizationError(kind, "a wallet address has only printable ASCII characters")
    lowered = text.lower()
    if _HEX_WALLET.fullmatch(lowered):
        return lowered  # EVM and other 0x-hex addresses: the mixed case is only a checksum (EIP-55)
    for prefix in BECH32_PREFIXES:
        if lowered.startswith(prefix) and _BECH32_DATA.fullmatch(lowered[len(prefix) :]):
            if text != lowered and text != text.upper():
                raise NormalizationError(kind, "a bech32 address cannot mix upper and lower case")
            return lowered
    return text  # base58 and the rest are case-sensitive


def _is_removed_from_store_name(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "PSZ" or category in ("Cc", "Cf")


def _nfkc_casefold(value: str) -> str:
    # Case folding can un-normalise a few characters, hence NFKC on both sides (Unicode's NFKC_Casefold).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def _normalize_store_name(value: str, region: str | None) -> str:
    # Symbols go before NFKC too, or compatibility decomposition would turn "™" into letters ("tm").
    text = "".join(ch for ch in value if not _is_removed_from_store_name(ch))
    text = "".join(ch for ch in _nfkc_casefold(text) if not _is_removed_from_store_name(ch))
    if not text:
        raise NormalizationError("store_name", "no letters or digits left after removing punctuation")
    return text


def _encode_hostname(host: str, kind: str) -> str:
    host = host.rstrip(".")
    if not host:
        raise NormalizationError(kind, "empty domain")
    if _plain_ascii_host(host):  # most hosts: what IDNA would return, without its per-character checks
        return host
    if host.startswith("[") or _is_ip_address(host):
        raise NormalizationError(kind, "IP addresses are not accepted, only domain names")
    try:
        return idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError:
        raise NormalizationError(kind, "invalid domain name") from None


def _plain_ascii_host(host: str) -> bool:
    """True when IDNA (UTS 46, STD3 rules) would return `host` as it is and it is no IP address: lowercase
    letter-digit-hyphen labels of 1-63 characters, none with hyphens in its 3rd and 4th positions (which also
    leaves "xn--" labels to IDNA's checks), at most 253 characters, and a last label that is not all digits
    (an IPv4 address's is)."""
    if len(host) > 253 or not _LDH_HOST.fullmatch(host):
        return False
    labels = host.split(".")
    return not labels[-1].isdigit() and all(label[2:4] != "--" for label in labels)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@cache
def _public_suffix_list() -> PublicSuffixList:
    # accept_unknown=False: a host under a TLD the bundled list does not know has no registered domain.
    return PublicSuffixList(accept_unknown=False)


def _normalize_website_domain(value: str, region: str | None) -> str:
    kind = "website_domain"
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise NormalizationError(kind, "empty value")
    if any(ch.isspace() for ch in text):
        raise NormalizationError(kind, "a domain or URL cannot contain whitespace")
    try:
        parts = urlsplit(text if "://" in text else "//" + text)
        host = parts.hostname
    except ValueError:
        raise NormalizationError(kind, "not a domain name or URL") from None
    if not host:
        raise NormalizationError(kind, "no host name in the URL")
    ascii_host = _encode_hostname(host, kind)
    if ascii_host.startswith("www."):
        ascii_host = ascii_host[4:]
    registered = _public_suffix_list().privatesuffix(ascii_host)
    if registered is None:
        raise NormalizationError(
            kind, "no registered domain (a public suffix or an unknown top-level domain)"
        )
    return str(registered)


def _normalize_address(kind: str) -> Callable[[str, str | None], str]:
    def normalize_address(value: str, region: str | None) -> str:
        chars = []
        for ch in _nfkc_casefold(value):
            category = unicodedata.category(ch)
            if category == "Cf" or ch in ADDRESS_APOSTROPHES:
                continue  # zero-width characters and apostrophes join, they do not separate ("Mary's")
            chars.append(" " if category[0] in "PSZ" or category == "Cc" else ch)
        words = [ADDRESS_ABBREVIATIONS.get(word, word) for word in "".join(chars).split()]
        if not words:
            raise NormalizationError(kind, "no letters or digits in the address")
        return " ".join(words)

    return normalize_address


def _normalize_device_id(value: str, region: str | None) -> str:
    kind = "device_id"
    text = value.strip().lower()
    if not text:
        raise NormalizationError(kind, "empty value")
    if any(ch.isspace() for ch in text):
        raise NormalizationError(kind, "a device id cannot contain whitespace")
    candidate = text.removeprefix("urn:uuid:").removeprefix("{").removesuffix("}").replace("-", "")
    if _UUID_HEX.fullmatch(candidate):
        return str(uuid.UUID(hex=candidate))
    return text


_NORMALIZERS: dict[str, Callable[[str, str | None], str]] = {
    "email": _normalize_email,
    "phone": _normalize_phone,
    "tax_id": _make_registration_normalizer("tax_id"),
    "business_registration": _make_registration_normalizer("business_registration"),
    "bank_account": _normalize_bank_account,
    "payment_account": _normalize_payment_account,
    "crypto_wallet": _normalize_crypto_wallet,
    "store_name": _normalize_store_name,
    "website_domain": _normalize_website_domain,
    "shipping_address": _normalize_address("shipping_address"),
    "return_address": _normalize_address("return_address"),
    "device_id": _normalize_device_id,
}
assert tuple(_NORMALIZERS) == KINDS
