"""Webhooks from the exchange: the event types and the signature every delivery carries (pure, no Django).

The exchange signs each delivery with the platform's webhook secret, as payment providers do::

    Exchange-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``v1`` is HMAC-SHA256, keyed with the secret, over ``f"{t}.{body}"`` (the timestamp, a dot and the raw
request body as sent), in lowercase hex. A header may carry several ``v1=`` values; one matching is enough.
Verify before parsing the body, against the raw bytes (a re-serialised JSON document differs), and refuse
old timestamps so that a captured delivery cannot be replayed later::

    from exchange.client.webhooks import WebhookSignatureError, verify

    try:
        event = verify(request_body, request.headers["Exchange-Signature"], secret)
    except WebhookSignatureError:
        return 400
    if seen_before(event["id"]):  # at least once: the same event may arrive again
        return 200
    handle(event["type"], event["data"])
    return 200

The exchange and this client share this module: the header's name and format, the event types and the
default tolerance are defined here once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_ID_HEADER",
    "EVENT_TYPES",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSignatureError",
    "sign",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "Exchange-Signature"
EVENT_ID_HEADER = "Exchange-Event-Id"
EVENT_TYPE_HEADER = "Exchange-Event-Type"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock

# The events a platform receives, each only about what it may see (its own sellers by reference, other
# platforms as counts). See the README, "Webhooks", for each one's `data`.
CLUSTER_JOINED = "cluster.joined"  # its sellers are now in a cross-platform cluster
CLUSTER_LEFT = "cluster.left"  # its sellers are no longer in a cross-platform cluster
CLUSTER_MERGED = "cluster.merged"  # a cluster its sellers were in merged with others
CLUSTER_SPLIT = "cluster.split"  # a cross-platform cluster its sellers were in split
CLUSTER_CONFIRMED = "cluster.confirmed"  # an exchange analyst confirmed a cluster its sellers are in
CLUSTER_DISMISSED = "cluster.dismissed"  # an exchange analyst dismissed a cluster its sellers are in
CLUSTER_OPINION_ADDED = "cluster.opinion_added"  # another platform gave its opinion on a cluster it is in
REPORT_RETRACTED = "report.retracted"  # a report it was told about (cluster, lookup match) was retracted
REPORT_OVERTURNED = "report.overturned"  # the same, because the seller's appeal was upheld
EVENT_TYPES = (
    CLUSTER_JOINED,
    CLUSTER_LEFT,
    CLUSTER_MERGED,
    CLUSTER_SPLIT,
    CLUSTER_CONFIRMED,
    CLUSTER_DISMISSED,
    CLUSTER_OPINION_ADDED,
    REPORT_RETRACTED,
    REPORT_OVERTURNED,
)


class WebhookSignatureError(ValueError):
    """The delivery is not from the exchange (wrong secret, altered body), or too old, or malformed."""


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str, timestamp: int, body: bytes | str) -> str:
    """The ``v1`` signature: HMAC-SHA256(secret, f"{timestamp}.{body}") in lowercase hex."""
    message = str(int(timestamp)).encode() + b"." + _as_bytes(body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, body: bytes | str) -> str:
    """The ``Exchange-Signature`` value: ``t=<timestamp>`` and one ``v1=`` per secret."""
    parts = [f"t={int(timestamp)}"] + [f"{SCHEME}={sign(secret, timestamp, body)}" for secret in secrets]
    return ",".join(parts)


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise WebhookSignatureError(f"malformed timestamp in the {SIGNATURE_HEADER} header")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
        # Other schemes are ignored: a later version may add one beside v1.
    if timestamp is None:
        raise WebhookSignatureError(f"no timestamp in the {SIGNATURE_HEADER} header")
    if not signatures:
        raise WebhookSignatureError(f"no {SCHEME} signature in the {SIGNATURE_HEADER} header")
    return timestamp, signatures


def verify(
    body: bytes | str,
    header: str,
    secret: str | Iterable[str],
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery's signature and age; return the parsed event.

    ``body`` is the raw request body, ``header`` the ``Exchange-Signature`` value, ``secret`` the platform's
    webhook secret (or several, while you switch to a rotated one). Raises WebhookSignatureError when no
    ``v1`` signature matches (compared in constant time), or the timestamp is more than ``tolerance``
    seconds away from ``now`` (default: the current time), or the body is not a JSON event.
    """
    timestamp, signatures = _parse(header or "")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureError("the signature's timestamp is outside the tolerance window")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [sign(s, timestamp, body) for s in secrets if s]
    # As bytes: compare_digest refuses non-ASCII str, and a header is whatever the sender put there.
    given = [g.encode("utf-8", "replace") for g in signatures]
    if not any(hmac.compare_digest(e.encode(), g) for e in expected for g in given):
        raise WebhookSignatureError("no signature matches the body with this secret")
    try:
        event = json.loads(_as_bytes(body))
    except ValueError:
        raise WebhookSignatureError("the body is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise WebhookSignatureError("the body is not an exchange event")
    return event
