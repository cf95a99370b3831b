"""Path converters for the references partners put in API URLs.

A URL whose reference cannot exist answers 404 at URL resolution, before any query: PostgreSQL refuses a NUL
in text, so `/api/v1/sellers/%00/` used to be a 500 from inside the lookup. The OpenAPI schema documents
each pattern (drf-spectacular reads a registered converter's regex).
"""

from __future__ import annotations

from exchange.ingest import SELLER_REF_RE


class SellerRefConverter:
    """A seller reference as a submission may store it (the same pattern ingest validates)."""

    regex = SELLER_REF_RE.pattern

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class ClusterRefConverter(SellerRefConverter):
    """An opaque cluster reference (`ac_` + hex today; letters, digits, `_` and `-`, at most 24)."""

    regex = r"[A-Za-z0-9_\-]{1,24}"
