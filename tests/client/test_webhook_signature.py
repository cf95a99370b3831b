"""The webhook signature partners verify (exchange/client/webhooks.py, no Django): HMAC-SHA256 over
"{timestamp}.{body}", checked in constant time within a tolerance window.

The expected signatures are computed here with `cryptography`'s HMAC (OpenSSL), not the module's own code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from exchange.client import webhooks
from exchange.client.webhooks import WebhookSignatureError, sign, signature_header, verify

SECRET = "whsec_4Qx1yYvGmN3bq2m0vFfW0mLqX6oV7n1aP2sD3fG4hJk"
OTHER_SECRET = "whsec_ZZZZyYvGmN3bq2m0vFfW0mLqX6oV7n1aP2sD3fG4hJk"
BODY = json.dumps({"id": "evt_1", "type": "cluster.joined", "created_at": "2026-05-01T12:00:00Z", "data": {}})
T = 1_777_636_800


def openssl_hmac(secret: str, message: bytes) -> str:
    mac = hmac.HMAC(secret.encode(), hashes.SHA256())
    mac.update(message)
    return mac.finalize().hex()


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    assert sign(SECRET, T, BODY) == openssl_hmac(SECRET, f"{T}.{BODY}".encode())
    assert sign(SECRET, T, BODY.encode()) == sign(SECRET, T, BODY)
    assert signature_header([SECRET], T, BODY) == f"t={T},v1={openssl_hmac(SECRET, f'{T}.{BODY}'.encode())}"


def test_a_good_delivery_verifies_and_returns_the_event() -> None:
    header = signature_header([SECRET], T, BODY)
    event = verify(BODY.encode(), header, SECRET, now=T + 10)
    assert event["id"] == "evt_1" and event["type"] == "cluster.joined"


def test_a_tampered_body_is_refused() -> None:
    header = signature_header([SECRET], T, BODY)
    tampered = BODY.replace("cluster.joined", "cluster.left")
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(tampered, header, SECRET, now=T)


def test_a_wrong_secret_is_refused() -> None:
    header = signature_header([OTHER_SECRET], T, BODY)
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(BODY, header, SECRET, now=T)


@pytest.mark.parametrize("age", [webhooks.DEFAULT_TOLERANCE + 1, -webhooks.DEFAULT_TOLERANCE - 1, 86400])
def test_an_old_or_future_timestamp_is_refused_even_with_a_good_signature(age: int) -> None:
    header = signature_header([SECRET], T, BODY)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify(BODY, header, SECRET, now=T + age)
    assert verify(BODY, header, SECRET, now=T + age, tolerance=abs(age))["id"] == "evt_1"


def test_a_replayed_signature_with_a_new_timestamp_is_refused() -> None:
    """The timestamp is signed: moving it forward to pass the window breaks the signature."""
    signature = sign(SECRET, T, BODY)
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify(BODY, f"t={T + 3600},v1={signature}", SECRET, now=T + 3600)


def test_any_matching_v1_signature_and_any_of_several_secrets_is_enough() -> None:
    header = signature_header([OTHER_SECRET, SECRET], T, BODY)
    assert verify(BODY, header, SECRET, now=T)["id"] == "evt_1"
    single = signature_header([SECRET], T, BODY)
    assert verify(BODY, single, [OTHER_SECRET, SECRET], now=T)["id"] == "evt_1"
    assert verify(BODY, single + ",v0=abc", SECRET, now=T)["id"] == "evt_1"  # other schemes are ignored


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "malformed"),
        ("garbage", "malformed"),
        (f"v1={sign(SECRET, T, BODY)}", "no timestamp"),
        (f"t={T}", "no v1 signature"),
        (f"t=yesterday,v1={sign(SECRET, T, BODY)}", "malformed timestamp"),
        (f"t={T},t={T},v1={sign(SECRET, T, BODY)}", "malformed timestamp"),
        (f"t={T},v1=\u00e9\u00e9", "no signature matches"),
    ],
)
def test_a_malformed_header_is_refused_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(WebhookSignatureError, match=reason):
        verify(BODY, header, SECRET, now=T)


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    for body in ("not json", "[1, 2]", '{"type": "cluster.joined"}'):
        with pytest.raises(WebhookSignatureError, match="not"):
            verify(body, signature_header([SECRET], T, body), SECRET, now=T)


def test_an_empty_secret_never_verifies() -> None:
    header = signature_header([""], T, BODY)
    with pytest.raises(WebhookSignatureError):
        verify(BODY, header, "", now=T)


def test_the_event_types_are_the_servers() -> None:
    assert len(set(webhooks.EVENT_TYPES)) == len(webhooks.EVENT_TYPES) == 9
    assert all(t.count(".") == 1 for t in webhooks.EVENT_TYPES)


def test_the_readme_snippet_verifies_a_delivery_and_refuses_a_forged_one() -> None:
    """The receiver in README.md ("Webhooks"), run as written."""
    import re
    import textwrap
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    code = next(
        block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "def receive" in block
    )
    handled: list[tuple[str, dict]] = []
    namespace: dict[str, Any] = {
        "WEBHOOK_SECRET": SECRET,
        "already_handled": lambda event_id: any(h[1].get("id") == event_id for h in handled),
        "handle": lambda kind, data: handled.append((kind, {"id": "evt_1", **data})),
    }
    exec(compile(textwrap.dedent(code), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    receive = namespace["receive"]
    now = int(time.time())
    good = {"Exchange-Signature": signature_header([SECRET], now, BODY)}
    assert receive(BODY.encode(), good) == 200 and handled == [("cluster.joined", {"id": "evt_1"})]
    assert receive(BODY.encode(), good) == 200 and len(handled) == 1  # the same event again: handled once
    assert receive(BODY.encode(), {"Exchange-Signature": signature_header([OTHER_SECRET], now, BODY)}) == 400
    assert receive(BODY.encode(), {}) == 400
