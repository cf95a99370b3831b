"""No raw identifier, transport hash, keyed token or API key secret ever reaches a log line.

A full partner flow (submit, a refused submission carrying a raw email, lookups, reads, retraction, failed
authentication with a wrong and with a malformed key) runs with every logger at DEBUG; every captured record
(message, arguments and formatted line) is then searched for the canaries.
"""

from __future__ import annotations

import logging

import pytest

from exchange.logformat import JsonFormatter, KeyValueFormatter
from exchange.models import Indicator
from tests.builders import seller, submit, th

pytestmark = pytest.mark.django_db

RAW = {
    "email": "canary.person@example.com",
    "phone": "+49 30 9998887",
    "bank_account": "DE89370400440532013000",
    "crypto_wallet": "bc1qcanarywallet0000000000",
}


def run_full_flow(acme, bazaar) -> None:
    indicators = list(RAW.items())
    assert submit(acme.client(), seller("acme-canary", *indicators)).status_code == 201
    assert submit(bazaar.client(), seller("baz-canary", ("email", RAW["email"]))).status_code == 201
    # A partner that forgot to hash: refused without echoing the value.
    raw_body = {"sellers": [seller("acme-raw", ("email", "x@y.com"))]}
    raw_body["sellers"][0]["indicators"][0]["hash"] = RAW["email"]
    refused = submit(acme.client(), body=raw_body)
    assert refused.status_code == 400 and RAW["email"] not in refused.content.decode()
    lookup = {"indicators": [{"kind": kind, "hash": th(kind, value)} for kind, value in indicators]}
    assert bazaar.client().post("/api/v1/lookups/", lookup, format="json").status_code == 200
    detail = acme.client().get("/api/v1/sellers/acme-canary/").json()
    assert acme.client().get(f"/api/v1/clusters/{detail['cluster']['id']}/").status_code == 200
    assert acme.client().get("/api/v1/sellers/?status=confirmed").status_code == 200
    retract = acme.client().post("/api/v1/sellers/acme-canary/retract/", {"reason": "appeal"}, format="json")
    assert retract.status_code == 200
    prefix, _, secret = acme.secret.rpartition("_")
    wrong = acme.client()
    wrong.credentials(HTTP_AUTHORIZATION=f"Bearer {prefix}_{'W' * len(secret)}")
    assert wrong.get("/api/v1/me/").status_code == 401
    garbled = acme.client()
    garbled.credentials(HTTP_AUTHORIZATION=f"Token {acme.secret}")
    assert garbled.get("/api/v1/me/").status_code == 401
    unknown = acme.client()
    unknown.credentials(HTTP_AUTHORIZATION=f"Bearer bax_0123456789_{secret}")
    assert unknown.get("/api/v1/me/").status_code == 401


def test_logs_carry_no_identifier_hash_token_or_key_secret(acme, bazaar, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("exchange", "exchange.auth", "exchange.ingest", "exchange.graph", "django.request"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    run_full_flow(acme, bazaar)

    canaries = {f"raw {kind}": value for kind, value in RAW.items()}
    canaries |= {f"transport hash {kind}": th(kind, value) for kind, value in RAW.items()}
    canaries |= {f"token {kind}": token for kind, token in Indicator.objects.values_list("kind", "token")}
    for platform in (acme, bazaar):
        canaries[f"{platform.platform.slug} key"] = platform.secret
        # bax_<lookup>_<secret>: the secret itself may contain "_" (token_urlsafe), so split from the left.
        canaries[f"{platform.platform.slug} key secret part"] = platform.secret.split("_", 2)[2]
    canaries["digest"] = acme.key.digest

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s")
    lines = [formatter.format(record) + repr(record.__dict__) for record in caplog.records]
    # And as the server writes them: logfmt (the default) and LOG_FORMAT=json.
    lines += [KeyValueFormatter().format(record) for record in caplog.records]
    lines += [JsonFormatter().format(record) for record in caplog.records]
    assert len(lines) >= 10, "the flow should have logged (submissions, auth failures, reclustering)"
    assert any("auth_failed" in line for line in lines)
    leaks = {name: line[:200] for line in lines for name, value in canaries.items() if value in line}
    assert not leaks, f"secrets in logs: {leaks}"
