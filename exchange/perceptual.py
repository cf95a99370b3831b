"""Perceptual image hashes, version 1: PDQ of a local image file (run on the partner's side).

Pure Python plus ``pdqhash`` (Meta's PDQ reference C++ code, Python bindings), Pillow (decoding) and numpy; no
Django. A partner hashes its product photos locally and sends only the 256-bit PDQ hash as 64 lowercase hex
characters with its quality score; the exchange never receives an image (docs/hashing-spec.md, "Perceptual
image hashes, version 1").

- ``pdq_hash(path)`` -> ``PdqHash(hex, quality)``; refuses an unreadable, empty or non-image file, and a hash
  whose quality is below ``PDQ_QUALITY_THRESHOLD`` (flat images: PDQ itself says such hashes are unreliable),
  with an ``ImageHashError`` naming the reason (never the file's contents).
- ``hamming(a, b)``: the number of differing bits of two hex hashes; ``is_match`` compares it with a threshold
  (``PDQ_MATCH_THRESHOLD`` = 31, PDQ's published default).
- The hex form is ThreatExchange's: the 256 bits most significant first (bit 255 of PDQ's ``Hash256`` is the
  first hex digit's high bit), the same string as the reference ``pdq-photo-hasher`` and
  ``threatexchange``'s ``PdqSignal``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from exchange.contract import IMAGE_MIN_QUALITY, MAX_IMAGE_CROPS, TRANSPORT_HASH_LENGTH, is_transport_hash

__all__ = [
    "CROP_VARIANT_GRID",
    "CROP_VARIANT_SCALES",
    "MAX_IMAGE_PIXELS",
    "PDQ_BITS",
    "PDQ_HEX_LENGTH",
    "PDQ_MATCH_THRESHOLD",
    "PDQ_QUALITY_THRESHOLD",
    "PERCEPTUAL_PINNED_LIBRARIES",
    "PERCEPTUAL_SPEC_VERSION",
    "ImageHashError",
    "PdqHash",
    "PdqVariants",
    "check_pdq_hex",
    "chunk_keys",
    "crop_boxes",
    "hamming",
    "is_match",
    "is_pdq_hex",
    "neighbour_masks",
    "pdq_hash",
    "pdq_hash_image",
    "pdq_variants",
    "pdq_variants_image",
    "probe_keys",
    "variant_distance",
]

PERCEPTUAL_SPEC_VERSION = 1
PDQ_BITS = 256
PDQ_HEX_LENGTH = PDQ_BITS // 4
# A PDQ hash travels in the transport hashes' alphabet and length (64 lowercase hex characters): one rule,
# exchange.contract's, checks both.
assert PDQ_HEX_LENGTH == TRANSPORT_HASH_LENGTH
PDQ_MATCH_THRESHOLD = 31  # PDQ's published default: distance <= 31 of 256 bits is a match
PDQ_QUALITY_THRESHOLD = IMAGE_MIN_QUALITY  # PDQ's published cut-off: hashes of quality < 50 are unreliable
MAX_IMAGE_PIXELS = 100_000_000  # larger files are refused (decompression bombs), not decoded
# The decoder and the hasher, pinned exactly like the normalisation libraries: the test vectors
# (docs/pdq-vectors-v1.json) hold with these versions. numpy is only the array type between them.
PERCEPTUAL_PINNED_LIBRARIES: dict[str, str] = {"pdqhash": "0.2.8", "pillow": "13.0.0"}


class ImageHashError(ValueError):
    """An image that cannot be hashed, or a hash that is not one; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PdqHash:
    hex: str  # 64 lowercase hex characters
    quality: int  # 0-100; >= PDQ_QUALITY_THRESHOLD for every hash this module returns


def is_pdq_hex(value: object) -> bool:
    return is_transport_hash(value)


def check_pdq_hex(value: object) -> str:
    """``value`` if it is 64 lowercase hex characters, else ``ImageHashError`` (never quoting the value)."""
    if not isinstance(value, str):
        raise ImageHashError("not_a_string", "a PDQ hash is a string of 64 lowercase hex characters")
    if len(value) != PDQ_HEX_LENGTH:
        raise ImageHashError(
            "wrong_length", f"a PDQ hash has {PDQ_HEX_LENGTH} hex characters, this one has {len(value)}"
        )
    if not is_pdq_hex(value):
        raise ImageHashError("not_hex", "a PDQ hash has only the characters 0-9 and a-f (lowercase)")
    return value


def hamming(a: str, b: str) -> int:
    """The Hamming distance of two PDQ hashes in hex form (0-256)."""
    return (int(check_pdq_hex(a), 16) ^ int(check_pdq_hex(b), 16)).bit_count()


def is_match(a: str, b: str, threshold: int = PDQ_MATCH_THRESHOLD) -> bool:
    return hamming(a, b) <= threshold


def _bits_to_hex(bits: np.ndarray) -> str:
    value = int("".join("1" if b else "0" for b in bits.tolist()), 2)
    return f"{value:0{PDQ_HEX_LENGTH}x}"


def pdq_hash_image(image: Image.Image) -> PdqHash:
    """PDQ of a decoded image (converted to RGB; transparency is composited on white, as it is shown)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    bits, quality = pdqhash.compute(rgb)
    quality = int(quality)
    if quality < PDQ_QUALITY_THRESHOLD:
        raise ImageHashError(
            "low_quality",
            f"the image is too flat to hash reliably (PDQ quality {quality}, "
            f"at least {PDQ_QUALITY_THRESHOLD} is needed): use a photo with visible detail",
        )
    return PdqHash(_bits_to_hex(bits), quality)


def pdq_hash(path: str | Path) -> PdqHash:
    """PDQ of the image file at ``path``; ``ImageHashError`` for a missing, empty, unreadable or flat one."""
    return pdq_hash_image(_open(path))


def _open(path: str | Path) -> Image.Image:
    """The decoded image at ``path``; ``ImageHashError`` for a missing, empty, unreadable or huge one."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageHashError(
            "unreadable", f"cannot read the image file {path.name!r}: {error.strerror}"
        ) from None
    if not path.is_file():
        raise ImageHashError("unreadable", f"{path.name!r} is not a file")
    if size == 0:
        raise ImageHashError("empty", f"the image file {path.name!r} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                if opened.width * opened.height > MAX_IMAGE_PIXELS:
                    raise ImageHashError(
                        "too_large", f"the image {path.name!r} has more than {MAX_IMAGE_PIXELS} pixels"
                    )
                opened.load()
                image = opened.copy()
    except ImageHashError:
        raise
    except UnidentifiedImageError:
        raise ImageHashError("not_an_image", f"{path.name!r} is not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own limit
        raise ImageHashError(
            "too_large", f"the image {path.name!r} has too many pixels to decode safely"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageHashError(
            "unreadable", f"the image file {path.name!r} is damaged or truncated ({type(error).__name__})"
        ) from None
    if image.width < 1 or image.height < 1:
        raise ImageHashError("unreadable", f"the image {path.name!r} has no pixels")
    return image


# --- crops: PDQ's weak spot, and the sub-crop variants that cover it ------------------------------------------

# A crop of a few percent moves the whole 64 x 64 downsample PDQ hashes: on the synthetic product photos of
# fixtures/images.py, a plain PDQ of a photo cropped by up to 5% of each side's length is within 31 bits of its
# original for only about 44% of them. So a photo is also hashed as 18 sub-crops: at 97.5% and 95% of its width
# and height, each at the 9 positions of a 3 x 3 grid (left/centre/right x top/middle/bottom). Two photos'
# distance is the smallest between one's full hash and any hash of the other (``variant_distance``).
CROP_VARIANT_SCALES = (0.975, 0.95)
CROP_VARIANT_GRID = 3
assert len(CROP_VARIANT_SCALES) * CROP_VARIANT_GRID**2 == MAX_IMAGE_CROPS


@dataclass(frozen=True)
class PdqVariants:
    full: PdqHash
    crops: tuple[str, ...]  # hex hashes of the sub-crops whose quality passes the cut-off

    @property
    def hashes(self) -> tuple[str, ...]:
        return (self.full.hex, *self.crops)


def crop_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The sub-crop boxes (left, top, right, bottom) of a ``width`` x ``height`` image, in a fixed order."""
    boxes = []
    steps = CROP_VARIANT_GRID - 1
    for scale in CROP_VARIANT_SCALES:
        cw, ch = width * scale, height * scale
        for gy in range(CROP_VARIANT_GRID):
            for gx in range(CROP_VARIANT_GRID):
                x, y = (width - cw) * gx / steps, (height - ch) * gy / steps
                boxes.append((round(x), round(y), round(x + cw), round(y + ch)))
    return boxes


def pdq_variants_image(image: Image.Image) -> PdqVariants:
    full = pdq_hash_image(image)  # refuses a flat image
    crops = []
    for box in crop_boxes(image.width, image.height):
        try:
            crops.append(pdq_hash_image(image.crop(box)).hex)
        except ImageHashError:  # a flat sub-crop is left out; the full hash passed
            continue
    return PdqVariants(full, tuple(crops))


def pdq_variants(path: str | Path) -> PdqVariants:
    """The full PDQ of the image at ``path`` and its sub-crop variants (the same refusals as ``pdq_hash``)."""
    return pdq_variants_image(_open(path))


def variant_distance(a: PdqVariants | tuple[str, ...], b: PdqVariants | tuple[str, ...]) -> int:
    """min over (a's full hash, any hash of b) and (any hash of a, b's full hash); full hashes come first."""
    ha = a.hashes if isinstance(a, PdqVariants) else a
    hb = b.hashes if isinstance(b, PdqVariants) else b
    return min(min(hamming(ha[0], y) for y in hb), min(hamming(x, hb[0]) for x in ha))


# --- multi-index hashing keys (the exchange's index of stored hashes: exchange.similarity) -------------------------

# A hash is 16 chunks of 16 bits. Two hashes within ``d`` bits of each other differ in at most ``d // 16`` bits
# of at least one chunk (pigeonhole), so looking up each chunk's value and its neighbours within that radius
# finds every stored hash within ``d``: candidates, verified with the full distance.
INDEX_CHUNKS = 16
INDEX_CHUNK_BITS = PDQ_BITS // INDEX_CHUNKS


def chunk_keys(hex_hash: str, space: int = 0) -> list[int]:
    """The hash's 16 index keys: (space * 16 + chunk position) << 16 | the chunk's 16-bit value (first hex
    digits first). Spaces keep kinds of hashes apart in one index (a photo's full hash and its crops)."""
    check_pdq_hex(hex_hash)
    base = space * INDEX_CHUNKS
    return [
        ((base + i) << INDEX_CHUNK_BITS) | int(hex_hash[4 * i : 4 * i + 4], 16) for i in range(INDEX_CHUNKS)
    ]


def probe_keys(
    hex_hash: str, threshold: int = PDQ_MATCH_THRESHOLD, spaces: tuple[int, ...] = (0,)
) -> set[int]:
    """The index keys to look up, in each of ``spaces``, for every stored hash within ``threshold`` bits of
    ``hex_hash``."""
    masks = neighbour_masks(threshold // INDEX_CHUNKS)
    return {key ^ mask for space in spaces for key in chunk_keys(hex_hash, space) for mask in masks}


def neighbour_masks(radius: int, bits: int = INDEX_CHUNK_BITS) -> list[int]:
    """The XOR masks of every ``bits``-bit chunk value within ``radius`` bits of a chunk's (0 first): by
    pigeonhole, a hash within ``threshold`` bits of another agrees with it within ``threshold // INDEX_CHUNKS``
    bits on one chunk."""
    masks = [0]
    for r in range(1, radius + 1):
        masks.extend(sum(1 << b for b in combo) for combo in combinations(range(bits), r))
    return masks
