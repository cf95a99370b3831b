"""The file of a ``document`` row (issue 13): a local PDF or text file, fingerprinted here.

The value of a ``document`` row in the submission CSV is the path of a document file (relative to the CSV
file's folder, or absolute). It is fingerprinted on the partner's machine (``exchange.documents.fingerprint``:
the SHA-256 of its bytes and a keyed MinHash of its text, keyed with the consortium key) and only those are
sent; the file, its text and its path never are. Documents are not downloaded: a URL is refused.

The consortium key comes from ``--consortium-key-file PATH`` or the environment variable
``EXCHANGE_CONSORTIUM_KEY_FILE`` (``exchange.documents.read_consortium_key_file``: at least 32 bytes, as hex or
raw). Without it a document row is rejected, naming the option: the exchange must not receive an unkeyed
fingerprint, and a fingerprint with another key would never match.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from exchange.documents import DocumentError, DocumentFingerprint, fingerprint

__all__ = ["CONSORTIUM_KEY_ENV", "DocumentHasher"]

CONSORTIUM_KEY_ENV = "EXCHANGE_CONSORTIUM_KEY_FILE"
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


class DocumentHasher:
    """Fingerprints the documents of one CSV read: ``fingerprint(value)`` for a row's value (a file path).

    Relative paths are taken from ``base_dir`` (the CSV file's folder; None: the current directory). A file
    named by several rows is read once (so is a refusal)."""

    def __init__(
        self, base_dir: str | os.PathLike[str] | None = None, consortium_key: bytes | None = None
    ) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.consortium_key = consortium_key
        self._done: dict[str, DocumentFingerprint | DocumentError] = {}

    def fingerprint(self, value: str) -> DocumentFingerprint:
        """The fingerprint of the document ``value`` names; ``DocumentError`` if it cannot be had."""
        value = value.strip()
        if not value:
            raise DocumentError("empty_value", "the value is empty: give the path of a PDF or text file")
        if _URL_START.match(value):
            raise DocumentError(
                "not_a_file", "documents are read from local files, not downloaded: give a path"
            )
        if self.consortium_key is None:
            raise DocumentError(
                "no_consortium_key",
                "document rows need the consortium key: --consortium-key-file PATH or the environment "
                f"variable {CONSORTIUM_KEY_ENV}",
            )
        path = Path(value)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        key = os.path.abspath(path)
        if key not in self._done:
            try:
                self._done[key] = fingerprint(path, self.consortium_key)
            except DocumentError as error:
                self._done[key] = error
        found = self._done[key]
        if isinstance(found, DocumentError):
            raise found
        return found
