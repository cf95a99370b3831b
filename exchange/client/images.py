"""The photo of an ``image`` row (issue 13): a local file or an https:// URL, hashed here with PDQ.

The value of an ``image`` row in the submission CSV is the path of a product photo (relative to the CSV
file's folder, or absolute) or an ``https://`` URL that the client downloads. Either way the photo is hashed
on the partner's machine (``exchange.perceptual.pdq_variants``: the full photo's PDQ, its quality and the
sub-crop hashes) and only those hashes are sent; the image, its path and its URL never are.

Downloads: https only (a plain http:// photo could be swapped in transit, and a redirect to a non-https URL
is refused too); at most ``MAX_DOWNLOAD_BYTES`` and ``DOWNLOAD_TIMEOUT`` seconds for the whole transfer; no
retries (a failed download is a rejected row, reported by line). Certificates are verified as the API's
requests verify them, with the standard library's default context: the system's CAs, or the file named by
``SSL_CERT_FILE`` (a private CA). Every refusal is an ``ImageHashError`` with a short ``reason`` code; its
message never quotes the URL (it may carry a token) nor anything of the file's contents.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from exchange.perceptual import ImageHashError, PdqVariants, pdq_variants

__all__ = ["DOWNLOAD_TIMEOUT", "MAX_DOWNLOAD_BYTES", "PhotoHasher"]

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # product photos are a few MB at most; more is not a photo to hash
DOWNLOAD_TIMEOUT = 30.0  # seconds for one download, connecting and reading included
MAX_REDIRECTS = 5
USER_AGENT = "exchange-partner-client/1 (product photo download)"
_CHUNK = 64 * 1024
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SAFE_NAME = re.compile(r"[A-Za-z0-9._\-]{1,100}")


class _HttpsRedirectsOnly(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme.lower() != "https":
            raise ImageHashError(
                "not_https",
                "the image URL redirects to a URL that is not https://; such redirects are refused",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class PhotoHasher:
    """Hashes the photos of one CSV read: ``variants(value)`` for a row's value (a path or an https:// URL).

    Relative paths are taken from ``base_dir`` (the CSV file's folder; None: the current directory). A
    photo named by several rows is read or downloaded once (so is a refusal).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
        self.max_bytes = MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
        self._opener = urllib.request.build_opener(_HttpsRedirectsOnly)
        self._done: dict[str, PdqVariants | ImageHashError] = {}

    def variants(self, value: str) -> PdqVariants:
        """The PDQ variants of the photo that ``value`` names; ``ImageHashError`` if it cannot be had."""
        value = value.strip()
        if not value:
            raise ImageHashError(
                "empty_value", "the value is empty: give the path of a photo file or an https:// URL"
            )
        is_url = _URL_START.match(value) is not None
        key = value if is_url else os.path.abspath(self._path(value))
        if key not in self._done:
            try:
                self._done[key] = (
                    self._download_and_hash(value) if is_url else pdq_variants(self._path(value))
                )
            except ImageHashError as error:
                self._done[key] = error
        found = self._done[key]
        if isinstance(found, ImageHashError):
            raise found
        return found

    def _path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path

    def _download_and_hash(self, url: str) -> PdqVariants:
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError:
            raise _malformed() from None
        scheme = parts.scheme.lower()
        if scheme == "http":
            raise ImageHashError(
                "not_https",
                "plain http:// image URLs are refused (the photo could be swapped in transit): use https://",
            )
        if scheme != "https":
            raise ImageHashError("bad_url", f"only https:// image URLs are downloaded, not {scheme[:20]}://")
        if not parts.hostname:
            raise ImageHashError("bad_url", "the image URL has no host")
        data = self._download(url)
        # Hashed from a private temporary file named like the URL's last path segment, so that the refusals of
        # exchange.perceptual (not an image, damaged, flat) name it as they name a local file.
        name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        name = name if _SAFE_NAME.fullmatch(name) and name not in (".", "..") else "downloaded-image"
        with tempfile.TemporaryDirectory(prefix="exchange-photo-") as folder:
            path = Path(folder) / name
            path.write_bytes(data)
            return pdq_variants(path)

    def _download(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        too_large = ImageHashError("too_large", f"the image download is larger than {_size(self.max_bytes)}")
        timed_out = ImageHashError(
            "download_failed", f"the image download took longer than {self.timeout:g} s"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length", "")
                if length.strip().isdigit() and int(length) > self.max_bytes:
                    raise too_large
                chunks: list[bytes] = []
                received = 0
                # read1: at most one receive per call, so that a server dripping bytes meets the deadline
                while chunk := response.read1(_CHUNK):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise too_large
                    if time.monotonic() > deadline:
                        raise timed_out
                    chunks.append(chunk)
                return b"".join(chunks)
        except ImageHashError:
            raise
        except (ValueError, http.client.InvalidURL):  # their messages quote the URL
            raise _malformed() from None
        except urllib.error.HTTPError as error:
            reason = http.client.responses.get(error.code, "error")
            raise ImageHashError(
                "download_failed", f"the image URL answered HTTP {error.code} ({reason})"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise ImageHashError(
                "download_failed", f"cannot download the image: {_describe(error)}"
            ) from None


def _malformed() -> ImageHashError:
    return ImageHashError("bad_url", "the image URL is malformed (a space or control character, a bad port?)")


def _size(count: int) -> str:
    megabytes, rest = divmod(count, 1024 * 1024)
    return f"{megabytes} MB" if megabytes and not rest else f"{count} bytes"


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"its certificate does not verify ({error.verify_message}); a private CA's certificate file "
            "can be named in SSL_CERT_FILE"
        )
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "the connection closed before the whole image arrived"
    return str(error) or type(error).__name__
