"""Document fingerprints, spec version 1 (``docs/hashing-spec.md``, "Document fingerprints, version 1").

Falsified documents (a brand's letter of authorisation, a supplier's invoice) are reused by counterfeiters
with their own company name, a new date and a new number. An exact hash of the file misses every such copy;
a partner therefore also sends a **keyed MinHash** of the document's text, whose agreement estimates the
Jaccard similarity of the two documents' word shingles, keyed with the *consortium key* that the partners
share and the exchange does not hold, so the exchange cannot fingerprint a guessed document and test it.

Pure Python (the standard library and ``pypdf``, pinned in ``DOCUMENT_PINNED_LIBRARIES``; no Django): it runs
on the partner's machine with the reference client, like ``exchange.fuzzy`` and ``exchange.perceptual``.

1. ``extract_text(path)``: the text of a PDF (pypdf; no OCR) or of a UTF-8 text file, recognised by their
   bytes, not their name. Refused with a ``DocumentError(reason, message)`` (never quoting the contents) when
   the file is missing or unreadable, empty, too large, an image (no OCR: send a photo as an ``image`` row),
   of another type, encrypted, or a PDF without extractable text.
2. ``normalize_text(text)``: NFKC, case-fold, apostrophes and format characters dropped, every other
   punctuation, symbol, separator or control character a space; every word holding a digit becomes ``0``
   (invoice numbers, amounts, numeric dates, postcodes), a written-out date (``0 january 0``, ``march 0``)
   becomes ``0``, and a run of ``0`` words is one ``0``. Words are joined by single spaces.
3. ``shingles(normalized, k=SHINGLE_WORDS)``: the set of every ``k`` consecutive words.
4. ``signature(text or shingles, consortium_key)``: ``NUM_PERM`` 32-bit minima. The key of the hash functions
   is ``derive_key(consortium_key)`` (HKDF-SHA256 as in ``exchange.fuzzy``, its own salt and info); the value
   of hash function ``j`` on a shingle is the little-endian unsigned 32-bit word ``j % 16`` of
   ``BLAKE2b-512(shingle, key=derived key, salt=str(j // 16))`` (the blakeHash style of the fuzzy encodings),
   and the signature holds, for each ``j``, the smallest value over the document's shingles.
5. ``to_hex`` / ``from_hex``: lowercase hex of the values as big-endian 32-bit words (``MINHASH_HEX_LENGTH``
   characters); ``jaccard_estimate(a, b)``: the share of positions where the two agree.
6. ``lsh_bands(signature)``: the exchange's index keys: ``LSH_BANDS`` bands of ``LSH_ROWS`` values each, each
   band's key the BLAKE2b-128 of (band number, its values); two documents are candidates when one key agrees.

What a partner sends for a document (``document_payload``): ``{"kind": "document", "hash": <SHA-256 of the
file's bytes, 64 lowercase hex: the transport hash, keyed on the server like every other>, "minhash": <hex
signature>}``. Neither the text nor the bytes of the file ever leave the partner's machine.
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.contract import is_transport_hash
from exchange.fuzzy import hkdf_sha256

__all__ = [
    "DEFAULT_JACCARD_THRESHOLD",
    "DOCUMENT_KIND",
    "DOCUMENT_PINNED_LIBRARIES",
    "DOCUMENT_SPEC_VERSION",
    "KDF_INFO",
    "KDF_SALT",
    "LSH_BANDS",
    "LSH_ROWS",
    "MAX_DOCUMENT_BYTES",
    "MAX_PDF_PAGES",
    "MAX_TEXT_CHARS",
    "MINHASH_HEX_LENGTH",
    "MIN_CONSORTIUM_KEY_BYTES",
    "MIN_WORDS",
    "MONTHS",
    "NUM_PERM",
    "SHINGLE_WORDS",
    "DocumentError",
    "DocumentFingerprint",
    "candidate_probability",
    "derive_key",
    "document_payload",
    "extract_text",
    "fingerprint",
    "fingerprint_text",
    "from_hex",
    "is_minhash_hex",
    "jaccard_estimate",
    "lsh_bands",
    "normalize_text",
    "parse_consortium_key",
    "read_consortium_key_file",
    "shingles",
    "signature",
    "to_hex",
]

DOCUMENT_SPEC_VERSION = 1
DOCUMENT_KIND = "document"

NUM_PERM = 256  # hash functions; the estimate's standard error at J = 0.8 is sqrt(0.8 * 0.2 / 256) = 0.025
MINHASH_HEX_LENGTH = NUM_PERM * 8  # 32-bit values, 8 hex characters each
SHINGLE_WORDS = 3  # k: words per shingle, chosen by measurement (tests/bench/bench_documents.py --shingles)
MIN_WORDS = 20  # fewer words after normalisation: too little text for a similarity to mean anything
DEFAULT_JACCARD_THRESHOLD = 0.8  # near-duplicate at or above this estimated Jaccard similarity (configurable)
# LSH banding for the exchange's index: 32 bands x 8 rows use all 256 values. A pair of Jaccard s becomes a
# candidate with probability 1 - (1 - s^8)^32: 0.997 at 0.8, 0.12 at 0.5, 0.002 at 0.3 (candidate_probability).
LSH_BANDS = 32
LSH_ROWS = 8
assert LSH_BANDS * LSH_ROWS == NUM_PERM

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # a letter or an invoice is far smaller; more is not read
MAX_PDF_PAGES = 50
MAX_TEXT_CHARS = 1_000_000
MIN_CONSORTIUM_KEY_BYTES = 32

KDF_SALT = b"bad-actor-exchange document fingerprints v1"
KDF_INFO = b"v1 document minhash"
# The text extractor, pinned exactly like the normalisation libraries: another version may lay out a PDF's
# text differently, and the test vectors (docs/document-vectors-v1.json) hold with this one.
DOCUMENT_PINNED_LIBRARIES: dict[str, str] = {"pypdf": "7.1.1"}

# Month names (English, German, French, Spanish, Italian, and the English three-letter abbreviations; with and
# without accents) that make a written-out date; with its day and year (already "0") the whole date becomes "0".
MONTHS: frozenset[str] = frozenset({
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "januar", "februar", "märz", "marz", "maerz", "juni", "juli", "oktober", "dezember",
    "janvier", "février", "fevrier", "mars", "avril", "mai", "juin", "juillet", "août", "aout", "septembre",
    "octobre", "novembre", "décembre", "decembre",
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "setiembre",
    "octubre", "noviembre", "diciembre",
    "gennaio", "febbraio", "aprile", "maggio", "giugno", "luglio", "settembre", "ottobre", "dicembre",
})  # fmt: skip

_APOSTROPHES = frozenset("'’ʼ`")
_MONTH = "(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + ")"
# On words already masked: "0 january 0", "0 of january 0", "0 de marzo de 0", "january 0", "0 january".
_DATE = re.compile(rf"(?<!\S)(?:0 (?:of |de )?{_MONTH}(?: (?:de )?0)?|{_MONTH} 0)(?!\S)")
_ZERO_RUN = re.compile(r"(?<!\S)0(?: 0)+(?!\S)")
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")  # C0 controls but tab, newlines, form feed, ESC
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")


class DocumentError(ValueError):
    """A document that cannot be fingerprinted, or a signature that is not one; ``reason`` is a short code.

    Messages name the file (its name only) and the reason, never anything of its contents."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- 1. text --------------------------------------------------------------------------------------------------


def extract_text(path: str | Path) -> str:
    """The text of the PDF or UTF-8 text file at ``path`` (module docstring, 1)."""
    return _extract(Path(path), _read(Path(path)))


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DocumentError(
            "unreadable", f"cannot read the document {path.name!r}: {error.strerror}"
        ) from None
    if not path.is_file():
        raise DocumentError("unreadable", f"{path.name!r} is not a file")
    if size == 0:
        raise DocumentError("empty", f"the document {path.name!r} is empty (0 bytes)")
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentError(
            "too_large", f"the document {path.name!r} is larger than {MAX_DOCUMENT_BYTES // 2**20} MB"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise DocumentError(
            "unreadable", f"cannot read the document {path.name!r}: {error.strerror}"
        ) from None


def _extract(path: Path, data: bytes) -> str:
    if not data:
        raise DocumentError("empty", f"the document {path.name!r} is empty (0 bytes)")
    if data.lstrip()[:5] == b"%PDF-":
        text = _pdf_text(path, data)
    elif data.startswith(_IMAGE_MAGIC) or data[8:12] == b"WEBP":
        raise DocumentError(
            "image_document",
            f"{path.name!r} is an image: documents are read as text (PDF or plain text) and images are not "
            "OCRed; send a photo or scan as an `image` row (a perceptual hash) instead",
        )
    else:
        text = _plain_text(path, data)
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentError(
            "too_large", f"the document {path.name!r} has more than {MAX_TEXT_CHARS} characters of text"
        )
    return text


def _plain_text(path: Path, data: bytes) -> str:
    unsupported = DocumentError(
        "unsupported_type",
        f"{path.name!r} is neither a PDF nor UTF-8 text (a Word or other office file? export it as PDF)",
    )
    # An office file (a ZIP: .docx, .odt, .xlsx) or other binary data: control bytes that text does not hold.
    if data.startswith(b"PK\x03\x04") or _BINARY.search(data[:65536]):
        raise unsupported
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unsupported from None


def _pdf_text(path: Path, data: bytes) -> str:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs what it repairs in damaged files; those lines are noise on a partner's console.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # "" opens files with only an owner password
            raise DocumentError(
                "encrypted", f"the PDF {path.name!r} is password-protected: save an unprotected copy"
            )
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentError("too_large", f"the PDF {path.name!r} has more than {MAX_PDF_PAGES} pages")
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise DocumentError(
            "unreadable", f"the PDF {path.name!r} is damaged or unsupported ({type(error).__name__})"
        ) from None
    if not any(ch.isalnum() for ch in text):
        raise DocumentError(
            "no_text",
            f"the PDF {path.name!r} has no extractable text (a scan or an image?): OCR is not done; send "
            "the scan's pages as `image` rows instead",
        )
    return text


# --- 2. normalisation -----------------------------------------------------------------------------------------


def _separate(text: str) -> str:
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf" or ch in _APOSTROPHES:
            continue
        out.append(" " if category[0] in "PSZC" else ch)
    return "".join(out)


def normalize_text(text: str) -> str:
    """The document's text in the form that is shingled (module docstring, 2)."""
    folded = _separate(unicodedata.normalize("NFKC", text).casefold())
    words = ["0" if any(ch.isdigit() for ch in word) else word for word in folded.split()]
    masked = _ZERO_RUN.sub("0", " ".join(words))
    masked = _DATE.sub("0", masked)
    return _ZERO_RUN.sub("0", masked)


# --- 3. shingles and 4. the keyed MinHash ---------------------------------------------------------------------


def shingles(normalized: str, k: int = SHINGLE_WORDS) -> frozenset[str]:
    """Every ``k`` consecutive words of the normalised text, joined by single spaces, as a set."""
    words = normalized.split()
    return frozenset(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))


def parse_consortium_key(content: bytes) -> bytes:
    """The consortium key held in a key file's ``content``: hex digits only (whitespace around ignored; an even
    number of them) are decoded; anything else is the key as raw bytes. At least ``MIN_CONSORTIUM_KEY_BYTES``
    either way (a short hex key is refused, not taken for raw bytes)."""
    stripped = content.strip()
    key = (
        bytes.fromhex(stripped.decode("ascii"))
        if re.fullmatch(rb"(?:[0-9a-fA-F]{2})+", stripped)
        else content
    )
    if len(key) < MIN_CONSORTIUM_KEY_BYTES:
        raise ValueError(
            f"the consortium key must be at least {MIN_CONSORTIUM_KEY_BYTES} bytes "
            f"(e.g. {2 * MIN_CONSORTIUM_KEY_BYTES} hex digits: `openssl rand -hex {MIN_CONSORTIUM_KEY_BYTES}`)"
        )
    return key


def read_consortium_key_file(path: str | Path) -> bytes:
    """The consortium key from the file at ``path`` (``parse_consortium_key``); ``ValueError`` if unusable."""
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the consortium key file: {error.strerror or error}") from None
    return parse_consortium_key(content)


def derive_key(consortium_key: bytes) -> bytes:
    """The 64-byte key of the MinHash hash functions: HKDF-SHA256(consortium key, ``KDF_SALT``, ``KDF_INFO``)."""
    if not isinstance(consortium_key, bytes) or len(consortium_key) < MIN_CONSORTIUM_KEY_BYTES:
        raise ValueError(f"the consortium key must be at least {MIN_CONSORTIUM_KEY_BYTES} bytes")
    (key,) = hkdf_sha256(consortium_key, 1, salt=KDF_SALT, info=KDF_INFO)
    return key


_WORDS_PER_DIGEST = 16  # a BLAKE2b-512 digest is 16 32-bit words
_UNPACK = struct.Struct(f"<{_WORDS_PER_DIGEST}I").unpack
_SALTS = [str(i).encode() for i in range(NUM_PERM // _WORDS_PER_DIGEST)]


def _hash_values(shingle: str, key: bytes) -> tuple[int, ...]:
    data = shingle.encode("utf-8")
    values: tuple[int, ...] = ()
    for salt in _SALTS:
        values += _UNPACK(hashlib.blake2b(data, key=key, salt=salt).digest())
    return values


def signature(source: str | Iterable[str], consortium_key: bytes) -> tuple[int, ...]:
    """The keyed MinHash (``NUM_PERM`` 32-bit values) of a text (normalised and shingled here) or of shingles.

    ``DocumentError("too_little_text")`` when a text has fewer than ``MIN_WORDS`` words after normalisation,
    or there are no shingles."""
    if isinstance(source, str):
        normalized = normalize_text(source)
        if len(normalized.split()) < MIN_WORDS:
            raise DocumentError(
                "too_little_text", f"the document has fewer than {MIN_WORDS} words of text to compare"
            )
        source = shingles(normalized)
    key = derive_key(consortium_key)
    rows = [_hash_values(shingle, key) for shingle in set(source)]
    if not rows:
        raise DocumentError("too_little_text", "no shingles: the document has too little text to compare")
    return tuple(min(column) for column in zip(*rows, strict=True))


# --- 5. serialisation and similarity --------------------------------------------------------------------------

_HEX = re.compile(rf"[0-9a-f]{{{MINHASH_HEX_LENGTH}}}")


def to_hex(values: Iterable[int]) -> str:
    values = tuple(values)
    if len(values) != NUM_PERM or not all(0 <= v < 2**32 for v in values):
        raise ValueError(f"a document signature is {NUM_PERM} unsigned 32-bit values")
    return struct.pack(f">{NUM_PERM}I", *values).hex()


def is_minhash_hex(text: object) -> bool:
    """True for exactly ``MINHASH_HEX_LENGTH`` lowercase hex characters."""
    return isinstance(text, str) and _HEX.fullmatch(text) is not None


def from_hex(text: str) -> tuple[int, ...]:
    if not is_minhash_hex(text):
        raise DocumentError(
            "not_a_signature",
            f"a document signature is exactly {MINHASH_HEX_LENGTH} lowercase hex characters",
        )
    return struct.unpack(f">{NUM_PERM}I", bytes.fromhex(text))


def jaccard_estimate(a: str | tuple[int, ...], b: str | tuple[int, ...]) -> float:
    """The share of the ``NUM_PERM`` positions where two signatures (values or hex) agree."""
    va = from_hex(a) if isinstance(a, str) else a
    vb = from_hex(b) if isinstance(b, str) else b
    if len(va) != len(vb) or not va:
        raise ValueError("signatures of different lengths")
    return sum(x == y for x, y in zip(va, vb, strict=True)) / len(va)


# --- 6. LSH banding (the exchange's index) --------------------------------------------------------------------


def lsh_bands(values: str | tuple[int, ...], bands: int = LSH_BANDS, rows: int = LSH_ROWS) -> list[str]:
    """One key per band: hex of BLAKE2b-128(band number as 2 bytes big-endian || the band's ``rows`` values as
    32-bit big-endian words, person ``doc-lsh-v1``). Two signatures are candidates when a key agrees."""
    if isinstance(values, str):
        values = from_hex(values)
    if bands * rows > len(values):
        raise ValueError(f"{bands} bands of {rows} rows need {bands * rows} values, not {len(values)}")
    keys = []
    for band in range(bands):
        chunk = values[band * rows : (band + 1) * rows]
        data = struct.pack(f">H{rows}I", band, *chunk)
        keys.append(hashlib.blake2b(data, digest_size=16, person=b"doc-lsh-v1").hexdigest())
    return keys


def candidate_probability(similarity: float, bands: int = LSH_BANDS, rows: int = LSH_ROWS) -> float:
    """The chance that two documents of Jaccard ``similarity`` share a band key: 1 - (1 - s^rows)^bands."""
    return 1 - (1 - similarity**rows) ** bands


# --- what a partner sends -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentFingerprint:
    sha256: str  # the file's bytes: the transport hash (64 lowercase hex)
    minhash: str  # the keyed MinHash of its text (MINHASH_HEX_LENGTH lowercase hex)

    def to_payload(self) -> dict[str, Any]:
        return document_payload(self.sha256, self.minhash)


def document_payload(sha256: str, minhash: str) -> dict[str, Any]:
    """The indicator sent for a document: ``{"kind": "document", "hash": <sha256>, "minhash": <hex>}``."""
    if not is_transport_hash(sha256):
        raise ValueError("a document's hash is the SHA-256 of its file: 64 lowercase hex characters")
    if not is_minhash_hex(minhash):
        raise ValueError(f"a document's minhash is {MINHASH_HEX_LENGTH} lowercase hex characters")
    return {"kind": DOCUMENT_KIND, "hash": sha256, "minhash": minhash}


def fingerprint_text(text: str, consortium_key: bytes) -> str:
    """The hex signature of a text (``signature`` then ``to_hex``)."""
    return to_hex(signature(text, consortium_key))


def fingerprint(path: str | Path, consortium_key: bytes) -> DocumentFingerprint:
    """The fingerprint of the document file at ``path``: its SHA-256 and the keyed MinHash of its text."""
    path = Path(path)
    data = _read(path)
    text = _extract(path, data)
    try:
        minhash = fingerprint_text(text, consortium_key)
    except DocumentError as error:
        raise DocumentError(error.reason, f"the document {path.name!r}: {error}") from None
    return DocumentFingerprint(hashlib.sha256(data).hexdigest(), minhash)
