"""Path converters for the references partners put in API URLs.

A URL whose reference cannot exist answers 404 at URL resolution, before any query: PostgreSQL refuses a NUL
in text, so `/api/v1/sellers/%00/` used to be a 500 from inside the lookup. The OpenAPI schema documents
each pattern (drf-spectacular reads a registered converter's regex).
"""

from __future__ import annotations

from django.urls import register_converter

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


# Registered here, once per process: the URLconf may be imported again (tests reload it), and Django refuses
# to register a converter name twice. A reference that cannot exist is a 404 before any query.
register_converter(SellerRefConverter, "seller_ref")
register_converter(ClusterRefConverter, "cluster_ref")
