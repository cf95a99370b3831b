"""exchange/requestid.py: every log line of a request carries the request's id, which the response names in
`X-Request-ID`; a client's own X-Request-ID never reaches the logs (only a trusted proxy's, of a fixed shape)."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.test import Client, override_settings

from exchange.logformat import JsonFormatter, KeyValueFormatter

OURS = re.compile(r"[0-9a-f]{32}")
NGINX_ID = "0123456789abcdef0123456789abcdef"


def failed_auth_records(
    caplog: pytest.LogCaptureFixture, offered: str | None = None
) -> tuple[str, list[logging.LogRecord]]:
    caplog.set_level(logging.INFO)
    headers = {"Authorization": "Bearer bax_nope_nope"} | (
        {} if offered is None else {"X-Request-ID": offered}
    )
    response = Client().get("/api/v1/me/", headers=headers)
    assert response.status_code == 401
    records = [r for r in caplog.records if "auth_failed" in r.getMessage()]
    assert records, "the refused key is logged"
    return response["X-Request-ID"], records


@pytest.mark.django_db
def test_every_line_of_a_request_names_the_id_the_response_gives(caplog):
    request_id, records = failed_auth_records(caplog)
    assert OURS.fullmatch(request_id)
    for record in records:
        assert KeyValueFormatter().format(record).endswith(f" request_id={request_id}")
        assert json.loads(JsonFormatter().format(record))["request_id"] == request_id
    again, _ = failed_auth_records(caplog)
    assert again != request_id


@pytest.mark.django_db
@pytest.mark.parametrize("offered", ["+4930123456789", "alice@example.com", NGINX_ID, "a" * 64])
def test_a_clients_request_id_is_never_used(caplog, offered):
    request_id, records = failed_auth_records(caplog, offered)
    assert request_id != offered and OURS.fullmatch(request_id)
    assert all(offered not in KeyValueFormatter().format(record) for record in records)


@pytest.mark.django_db
@override_settings(EXCHANGE_TRUST_PROXY=True)
@pytest.mark.parametrize(
    ("offered", "taken"),
    [
        (NGINX_ID, True),
        ("123e4567-e89b-12d3-a456-426614174000", True),
        ("+4930123456789", False),
        ("", False),
    ],
)
def test_behind_a_trusted_proxy_its_id_of_a_fixed_shape_is_taken_over(caplog, offered, taken):
    request_id, _ = failed_auth_records(caplog, offered)
    assert (request_id == offered) is taken


def test_lines_outside_a_request_have_no_request_id():
    record = logging.getLogger("exchange.worker").makeRecord(
        "exchange.worker", logging.INFO, __file__, 1, "event=x", (), None
    )
    assert "request_id" not in KeyValueFormatter().format(record)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
