"""Reference partner client of the bad-actor intelligence exchange (library and ``python -m exchange.client``).

Raw identifiers never leave the partner: values are normalised and hashed locally by the published hashing
spec (``exchange.normalization``, v1) and only transport hashes are sent; the product photos of ``image`` rows
are hashed locally with PDQ (``exchange.client.images``) and only their hashes are sent; names and addresses
also go as fuzzy encodings keyed with the partners' consortium key (``exchange.client.fuzzy``). No Django needed: the
client imports nothing of the server; its dependencies are the spec's exactly pinned normalisation libraries
(phonenumbers, python-stdnum, idna, publicsuffixlist) and PDQ's (pdqhash, Pillow), and its HTTP is the
standard library's. A partner
installs it alone: ``pip install ./exchange/client`` (the distribution in ``exchange/client/pyproject.toml``).

Typical use::

    from exchange.client import ExchangeClient, submit_csv

    client = ExchangeClient("https://exchange.example.org", api_key)
    summary = submit_csv(client, "reports.csv", default_region="DE")
    print(summary.format())  # summary.complete: every row was sent; summary.held_back: sellers not sent

or, for prepared data, ``client.submit_batch(sellers)``, ``client.lookup(indicators)``,
``client.retract(seller_ref, reason)`` and ``client.appeal(seller_ref, outcome, [(file_sha256(path), False)])``.
A webhook receiver checks each delivery with ``verify_webhook(body, headers["Exchange-Signature"], secret)``
(``exchange.client.webhooks``).
"""

from exchange.client.api import ApiError, ExchangeClient, ExchangeError, TransportError, file_sha256
from exchange.client.csvinput import (
    CsvFormatError,
    CsvResult,
    IncompleteSeller,
    Indicator,
    RejectedRow,
    SellerReport,
    parse_reported_at,
    read_submission_csv,
    read_submission_file,
    read_submission_rows,
)
from exchange.client.submission import BatchFailure, SubmitSummary, batched, submit_csv, submit_sellers
from exchange.client.webhooks import WebhookSignatureError
from exchange.client.webhooks import verify as verify_webhook

__all__ = [
    "ApiError",
    "BatchFailure",
    "CsvFormatError",
    "CsvResult",
    "ExchangeClient",
    "ExchangeError",
    "IncompleteSeller",
    "Indicator",
    "RejectedRow",
    "SellerReport",
    "SubmitSummary",
    "TransportError",
    "WebhookSignatureError",
    "batched",
    "file_sha256",
    "parse_reported_at",
    "read_submission_csv",
    "read_submission_file",
    "read_submission_rows",
    "submit_csv",
    "submit_sellers",
    "verify_webhook",
]
