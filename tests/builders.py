"""Builders for partner API payloads (raw values are hashed here, as the partner client would)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from exchange.normalization import transport_hash

NOW = datetime.now(UTC)


def th(kind: str, value: str) -> str:
    return transport_hash(kind, value, "DE")


def seller(
    ref: str,
    *indicators: tuple[str, str],
    status: str = "confirmed",
    reasons: tuple[str, ...] = ("counterfeit",),
    reported_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "seller_ref": ref,
        "status": status,
        "reasons": list(reasons),
        "reported_at": (reported_at or NOW - timedelta(days=1)).isoformat(),
        "indicators": [{"kind": kind, "hash": th(kind, value)} for kind, value in indicators],
    }


def submit(client: Any, *sellers: dict[str, Any], key: str | None = None, body: Any = None) -> Any:
    payload = json.dumps(body if body is not None else {"sellers": list(sellers)})
    return client.post(
        "/api/v1/submissions/",
        payload,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()),
    )
