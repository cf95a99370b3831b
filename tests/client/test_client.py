"""The reference partner client: CSV reading, HTTP behaviour against a fake exchange, and the command line."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from exchange.client import (
    ApiError,
    CsvFormatError,
    ExchangeClient,
    Indicator,
    SellerReport,
    TransportError,
    file_sha256,
    parse_reported_at,
    read_submission_csv,
    read_submission_file,
    read_submission_rows,
    submit_csv,
    submit_sellers,
)
from exchange.client.cli import main
from exchange.client.csvinput import CSV_KINDS
from exchange.contract import Limits
from exchange.normalization import is_transport_hash, transport_hash
from tests.client.helpers import run_cli

API_KEY = "acme_live_9f8e7d6c5b4a"
HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"
SECRET_EMAIL = "counterfeiter.alice@example.com"
SECRET_PHONE = "+49 30 1234567"


# --- a fake exchange -------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class FakeExchange:
    """A tiny in-process HTTP server: records requests, answers from a script, then with a default 201."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Reply] = []
        self.default: Callable[[Recorded], Reply] = self.accept
        self.submissions = 0
        self.me: dict[str, Any] | None = None  # what GET /api/v1/me/ answers (None: 404, an older exchange)
        self._lock = threading.Lock()
        exchange = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                recorded = Recorded("POST", self.path, dict(self.headers.items()), json.loads(raw or b"null"))
                with exchange._lock:
                    exchange.requests.append(recorded)
                    scripted = exchange.script.pop(0) if exchange.script else None
                # The default answers outside the lock: it may wait for other requests (the parallel tests).
                reply = scripted or exchange.default(recorded)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = (
                    b""
                    if reply.body is None
                    else (reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
                )
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                recorded = Recorded("GET", self.path, dict(self.headers.items()), None)
                with exchange._lock:
                    exchange.requests.append(recorded)
                body = json.dumps(exchange.me).encode() if exchange.me is not None else b"{}"
                self.send_response(200 if exchange.me is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def accept(self, request: Recorded) -> Reply:
        if request.path == "/api/v1/submissions/":
            with self._lock:
                self.submissions += 1
                number = self.submissions
            sellers = request.body["sellers"]
            indicators = sum(len(seller["indicators"]) for seller in sellers)
            return Reply(
                201,
                {
                    "submission": f"sub_{number:016x}",
                    "sellers": len(sellers),
                    "indicators": indicators,
                    "sightings_created": indicators,
                },
            )
        if request.path == "/api/v1/lookups/":
            return Reply(
                200,
                {"results": [{"hash": item["hash"], "match": False} for item in request.body["indicators"]]},
            )
        return Reply(200, {"retracted": True})

    def submissions_requests(self) -> list[Recorded]:
        return [request for request in self.requests if request.path == "/api/v1/submissions/"]


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    fake = FakeExchange()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_client(url: str, sleeps: Sleeps, **options: Any) -> ExchangeClient:
    options.setdefault("max_retries", 3)
    return ExchangeClient(url, API_KEY, timeout=5, sleep=sleeps, jitter=lambda: 0.0, **options)


def seller(ref: str = "s-1", indicators: int = 1) -> SellerReport:
    return SellerReport(
        ref,
        "confirmed",
        ["counterfeit"],
        "2025-01-31T12:00:00Z",
        [Indicator("phone", transport_hash("phone", f"+49 30 123456{n}")) for n in range(indicators)],
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_csv(tmp_path: Path, text: str, name: str = "reports.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the HTTP client -------------------------------------------------------------------------------------


def test_submit_batch_posts_hashes_with_bearer_key_and_idempotency_key(
    exchange: FakeExchange, sleeps: Sleeps
) -> None:
    answer = make_client(exchange.url + "/", sleeps).submit_batch([seller()], idempotency_key="key-1")

    assert answer["submission"] == "sub_0000000000000001"
    [request] = exchange.requests
    assert request.path == "/api/v1/submissions/"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["Content-Type"] == "application/json"
    [sent] = request.body["sellers"]
    assert sent["seller_ref"] == "s-1"
    assert sent["status"] == "confirmed"
    assert sent["reasons"] == ["counterfeit"]
    assert sent["reported_at"] == "2025-01-31T12:00:00Z"
    assert sent["indicators"] == [{"kind": "phone", "hash": transport_hash("phone", "+49 30 1234560")}]
    assert sleeps == []


def test_submit_batch_accepts_plain_dicts_and_makes_a_uuid_key(
    exchange: FakeExchange, sleeps: Sleeps
) -> None:
    make_client(exchange.url, sleeps).submit_batch([seller().to_payload()])
    key = exchange.requests[0].headers["Idempotency-Key"]
    assert len(key) == 36 and key.count("-") == 4


def test_5xx_is_retried_with_the_same_idempotency_key_and_growing_backoff(
    exchange: FakeExchange, sleeps: Sleeps
) -> None:
    exchange.script = [Reply(503), Reply(502, b"<html>bad gateway</html>"), Reply(500)]

    answer = make_client(exchange.url, sleeps).submit_batch([seller()])

    assert answer["submission"] == "sub_0000000000000001"
    keys = {request.headers["Idempotency-Key"] for request in exchange.requests}
    assert len(exchange.requests) == 4 and len(keys) == 1
    bodies = {json.dumps(request.body, sort_keys=True) for request in exchange.requests}
    assert len(bodies) == 1
    assert sleeps == [0.25, 0.5, 1.0]  # half of 0.5 * 2**attempt, plus jitter (0 here)


def test_backoff_jitter_stays_within_half_and_full_delay(sleeps: Sleeps) -> None:
    low = ExchangeClient("http://x.test", API_KEY, jitter=lambda: 0.0, backoff_base=1, backoff_max=8)
    high = ExchangeClient("http://x.test", API_KEY, jitter=lambda: 1.0, backoff_base=1, backoff_max=8)
    assert [low._backoff(n) for n in range(5)] == [0.5, 1, 2, 4, 4]
    assert [high._backoff(n) for n in range(5)] == [1, 2, 4, 8, 8]


def test_429_honours_retry_after_seconds(exchange: FakeExchange, sleeps: Sleeps) -> None:
    exchange.script = [
        Reply(429, {"error": {"code": "throttled", "message": "slow down"}}, {"Retry-After": "7"})
    ]
    answer = make_client(exchange.url, sleeps).lookup([Indicator("phone", "a" * 64)])
    assert answer["results"][0]["hash"] == "a" * 64
    assert sleeps == [7.0]


def test_retry_after_as_http_date_is_honoured_and_capped(exchange: FakeExchange, sleeps: Sleeps) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    exchange.script = [Reply(503, headers={"Retry-After": later})]
    make_client(exchange.url, sleeps, max_retry_after=60).submit_batch([seller()])
    assert sleeps == [60]


def test_persisting_5xx_gives_api_error_after_max_retries(exchange: FakeExchange, sleeps: Sleeps) -> None:
    exchange.script = [Reply(503, {"error": {"code": "unavailable", "message": "maintenance"}})] * 4
    with pytest.raises(ApiError) as caught:
        make_client(exchange.url, sleeps, max_retries=3).submit_batch([seller()])
    assert caught.value.status == 503
    assert caught.value.code == "unavailable"
    assert len(exchange.requests) == 4 and len(sleeps) == 3


def test_4xx_is_final_and_carries_the_api_error(exchange: FakeExchange, sleeps: Sleeps) -> None:
    details = {"sellers[0].indicators[0].hash": "not a transport hash"}
    exchange.script = [Reply(400, {"error": {"code": "invalid", "message": "bad batch", "details": details}})]

    with pytest.raises(ApiError) as caught:
        make_client(exchange.url, sleeps).submit_batch([seller()])

    assert (caught.value.status, caught.value.code, caught.value.message) == (400, "invalid", "bad batch")
    assert caught.value.details == details
    assert len(exchange.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [401, 403, 404, 409, 413, 422])
def test_other_4xx_are_not_retried(exchange: FakeExchange, sleeps: Sleeps, status: int) -> None:
    exchange.script = [Reply(status, b"nope")]
    with pytest.raises(ApiError) as caught:
        make_client(exchange.url, sleeps).retract("s-1", "appeal upheld")
    assert caught.value.status == status
    assert caught.value.code == f"http_{status}"
    assert len(exchange.requests) == 1


def test_dropped_connection_is_retried(exchange: FakeExchange, sleeps: Sleeps) -> None:
    exchange.script = [Reply(0, drop=True)]
    answer = make_client(exchange.url, sleeps).submit_batch([seller()], idempotency_key="k")
    assert answer["submission"] == "sub_0000000000000001"
    assert [request.headers["Idempotency-Key"] for request in exchange.requests] == ["k", "k"]
    assert sleeps == [0.25]


def test_unreachable_exchange_gives_transport_error_after_retries(sleeps: Sleeps) -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", sleeps, max_retries=2)
    with pytest.raises(TransportError, match="after 3 attempts"):
        client.submit_batch([seller()])
    assert sleeps == [0.25, 0.5]


def test_redirects_are_reported_not_followed(exchange: FakeExchange, sleeps: Sleeps) -> None:
    exchange.script = [Reply(308, headers={"Location": "https://elsewhere.test/api/v1/submissions/"})]
    with pytest.raises(ApiError) as caught:
        make_client(exchange.url, sleeps).submit_batch([seller()])
    assert caught.value.code == "redirect"
    assert "elsewhere.test" in caught.value.message
    assert len(exchange.requests) == 1


def test_retract_quotes_the_seller_ref_and_sends_the_reason(exchange: FakeExchange, sleeps: Sleeps) -> None:
    make_client(exchange.url, sleeps).retract("shop/42 ü", "appeal upheld")
    [request] = exchange.requests
    assert request.path == "/api/v1/sellers/shop%2F42%20%C3%BC/retract/"
    assert request.body == {"reason": "appeal upheld"}


def test_appeal_quotes_the_seller_ref_and_sends_hashes_outcome_and_note(
    exchange: FakeExchange, sleeps: Sleeps
) -> None:
    client = make_client(exchange.url, sleeps)
    client.appeal("shop/42", "rejected", [("a" * 64, True), ("b" * 64, None)], note="case 7")
    [request] = exchange.requests
    assert request.path == "/api/v1/sellers/shop%2F42/appeals/"
    assert request.body == {
        "outcome": "rejected",
        "documents": [{"sha256": "a" * 64, "falsified": True}, {"sha256": "b" * 64}],
        "note": "case 7",
    }
    client.appeal("shop-43", "pending")
    assert exchange.requests[1].body == {"outcome": "pending"}  # no documents, the note unchanged
    for bad in (("", "pending", []), ("s", "won", []), ("s", "pending", [("not a hash", None)])):
        with pytest.raises(ValueError):
            client.appeal(*bad)
    assert len(exchange.requests) == 2


def test_cli_appeal_hashes_the_documents_locally(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    letter, licence = tmp_path / "letter.pdf", tmp_path / "licence.pdf"
    letter.write_bytes(b"%PDF-1.4 a doctored bank letter")
    licence.write_bytes(b"%PDF-1.4 a business licence")
    code, out, _ = run_cli(
        "appeal", "--url", exchange.url, "--key-file", str(key_file), "s-1", "--outcome", "rejected",
        "--document", str(licence), "--falsified", str(letter), "--note", "forged letter",
    )  # fmt: skip
    assert code == 0 and json.loads(out) == {"retracted": True}
    [request] = exchange.requests
    assert request.path == "/api/v1/sellers/s-1/appeals/"
    assert request.body == {
        "outcome": "rejected",
        "documents": [
            {"sha256": file_sha256(licence), "falsified": False},
            {"sha256": file_sha256(letter), "falsified": True},
        ],
        "note": "forged letter",
    }
    assert file_sha256(letter) == hashlib.sha256(letter.read_bytes()).hexdigest()
    assert "doctored" not in json.dumps(request.body)

    code, _, err = run_cli(
        "appeal", "--url", exchange.url, "--key-file", str(key_file), "s-1", "--outcome", "pending",
        "--document", str(tmp_path / "missing.pdf"),
    )  # fmt: skip
    assert code == 2 and "cannot read document" in err
    assert len(exchange.requests) == 1


def test_lookup_sends_kind_and_hash_only(exchange: FakeExchange, sleeps: Sleeps) -> None:
    make_client(exchange.url, sleeps).lookup([{"kind": "email", "hash": "b" * 64, "note": "dropped"}])
    assert exchange.requests[0].body == {"indicators": [{"kind": "email", "hash": "b" * 64}]}


def test_client_never_shows_its_key() -> None:
    client = ExchangeClient("https://exchange.example.org", API_KEY)
    assert API_KEY not in repr(client)
    assert API_KEY not in str(vars(client).get("api_key", ""))


@pytest.mark.parametrize("url", ["exchange.example.org", "ftp://exchange.example.org", "https://"])
def test_client_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ValueError):
        ExchangeClient(url, API_KEY)


# --- reading the CSV -------------------------------------------------------------------------------------


def test_csv_rows_become_sellers_with_hashed_indicators(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER
        + f"s-1,confirmed,counterfeit|trademark,2025-01-31T12:00:00+01:00,email,{SECRET_EMAIL}\n"
        + f"s-1,confirmed,trademark|counterfeit,2025-01-31T11:00:00Z,phone,{SECRET_PHONE}\n"
        + "s-2,Suspected,Counterfeit,2025-02-01,store_name,Lucky Star\n",
    )
    sellers, rejected = read_submission_csv(path)

    assert rejected == []
    first, second = sellers
    assert first.seller_ref == "s-1"
    assert first.reasons == ["counterfeit", "trademark"]
    assert first.reported_at == "2025-01-31T11:00:00Z"
    assert first.indicators == [
        Indicator("email", transport_hash("email", SECRET_EMAIL)),
        Indicator("phone", transport_hash("phone", SECRET_PHONE)),
    ]
    assert (second.status, second.reasons, second.reported_at) == (
        "suspected",
        ["counterfeit"],
        "2025-02-01T00:00:00Z",
    )
    payload = json.dumps([s.to_payload() for s in sellers])
    assert SECRET_EMAIL not in payload and "1234567" not in payload
    assert all(is_transport_hash(i["hash"]) for s in sellers for i in s.to_payload()["indicators"])


def test_bad_rows_are_rejected_with_line_numbers_and_the_rest_is_kept(tmp_path: Path) -> None:
    rows = [
        "good,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567",  # line 2
        "bad-kind,confirmed,counterfeit,2025-01-31,fax,+49 30 1234567",  # 3
        "bad-status,banned,counterfeit,2025-01-31,phone,+49 30 1234567",  # 4
        "bad-reason,confirmed,piracy,2025-01-31,phone,+49 30 1234567",  # 5
        "no-reason,confirmed,,2025-01-31,phone,+49 30 1234567",  # 6
        "bad-date,confirmed,counterfeit,31/01/2025,phone,+49 30 1234567",  # 7
        f"future,confirmed,counterfeit,{(datetime.now(UTC) + timedelta(days=2)).date()},phone,+49 30 1234567",  # 8
        f"bad-value,confirmed,counterfeit,2025-01-31,email,{SECRET_EMAIL.replace('@', ' at ')}",  # 9
        ",confirmed,counterfeit,2025-01-31,phone,+49 30 1234567",  # 10
        "short,confirmed,counterfeit",  # 11
        "",  # 12: blank, ignored
        "national,confirmed,counterfeit,2025-01-31,phone,030 1234567",  # 13: no default region
    ]
    sellers, rejected = read_submission_csv(write_csv(tmp_path, HEADER + "\n".join(rows) + "\n"))

    assert [s.seller_ref for s in sellers] == ["good"]
    by_line = {row.line: row for row in rejected}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert "unknown kind 'fax'" in by_line[3].reason
    assert "status must be one of confirmed, suspected" in by_line[4].reason
    assert "unknown reason 'piracy'" in by_line[5].reason
    assert "reasons is empty" in by_line[6].reason
    assert "ISO-8601" in by_line[7].reason
    assert "future" in by_line[8].reason
    assert by_line[9].reason.startswith("email value rejected:")
    assert "seller_ref is empty" in by_line[10].reason
    assert "expected 6 columns, got 3" in by_line[11].reason
    assert "default region" in by_line[13].reason
    assert str(by_line[9]).startswith("line 9 (seller 'bad-value'): ")
    assert all("counterfeiter" not in str(row) and "1234567" not in str(row) for row in rejected)


def test_default_region_applies_to_national_numbers(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER + "s,confirmed,other,2025-01-31,phone,030 1234567\n")
    sellers, rejected = read_submission_csv(path, default_region="de")
    assert rejected == []
    assert sellers[0].indicators == [Indicator("phone", transport_hash("phone", "+49301234567"))]


def test_conflicting_seller_rows_reject_the_whole_seller(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER
        + "s-1,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567\n"
        + "s-2,confirmed,counterfeit,2025-01-31,phone,+49 30 7654321\n"
        + "s-1,suspected,counterfeit|design,2025-01-31,store_name,Lucky\n"
        + "s-1,confirmed,counterfeit,2025-01-31,email,x@@y\n",
    )
    sellers, rejected = read_submission_csv(path)

    assert [s.seller_ref for s in sellers] == ["s-2"]
    assert [row.line for row in rejected] == [2, 4, 5]
    assert "conflicting reasons and status across this seller's rows (lines 2, 4, 5)" in rejected[0].reason
    assert rejected[1].reason == rejected[0].reason
    assert rejected[2].reason.startswith("email value rejected")


def test_same_instant_in_different_offsets_is_no_conflict(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER
        + "s,confirmed,counterfeit,2025-01-31T13:00:00+01:00,phone,+49 30 1234567\n"
        + "s,confirmed,counterfeit,2025-01-31T12:00:00,store_name,Lucky\n",
    )
    sellers, rejected = read_submission_csv(path)
    assert rejected == [] and len(sellers[0].indicators) == 2


def test_duplicate_indicators_are_sent_once_and_counted(tmp_path: Path) -> None:
    text = (
        HEADER
        + "s,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567\n"
        + "s,confirmed,counterfeit,2025-01-31,phone,+49 (30) 123-4567\n"
        + "s,confirmed,counterfeit,2025-01-31,store_name,Lucky\n"
        + "other,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567\n"
    )
    result = read_submission_rows(io.StringIO(text))
    assert result.duplicate_indicators == 1
    assert result.rows == 4
    assert [len(s.indicators) for s in result.sellers] == [2, 1]
    assert result.rejected == []


def test_line_numbers_count_physical_lines_of_quoted_fields(tmp_path: Path) -> None:
    text = (
        HEADER
        + 's,confirmed,counterfeit,2025-01-31,shipping_address,"12 Main St\nSpringfield"\n'
        + "s,confirmed,counterfeit,2025-01-31,fax,123\n"
    )
    result = read_submission_rows(io.StringIO(text))
    assert [row.line for row in result.rejected] == [4]


def test_header_may_be_reordered_with_bom_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(
        "\ufeffKind,Value,Seller_Ref,Status,Reasons,Reported_At,comment\n"
        "email,a@example.com,s,confirmed,other,2025-01-31,internal note\n",
        encoding="utf-8",
    )
    sellers, rejected = read_submission_csv(path)
    assert rejected == [] and sellers[0].indicators[0] == Indicator(
        "email", transport_hash("email", "a@example.com")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("seller_ref,status,kind,value\n", r"lacks column\(s\) reasons, reported_at")],
)
def test_unusable_files_raise_csv_format_error(text: str, message: str) -> None:
    with pytest.raises(CsvFormatError, match=message):
        read_submission_rows(io.StringIO(text))


def test_reported_at_is_refused_outside_the_exchanges_bounds() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_reported_at("2000-01-01T01:00:00+01:00", now) == "2000-01-01T00:00:00Z"  # the first instant
    assert parse_reported_at("2025-06-01T00:04:00Z", now) == "2025-06-01T00:04:00Z"  # within the clock skew
    assert parse_reported_at("2025-01-31T10:00:00+14:00", now) == "2025-01-30T20:00:00Z"
    for text, reason in [
        ("1999-12-31T23:59:59Z", "before 2000-01-01"),
        ("2000-01-01T00:30:00+01:00", "before 2000-01-01"),
        ("0001-01-01T00:00:00+01:00", "before 2000-01-01"),  # would overflow if converted first
        ("9999-12-31T23:59:59-01:00", "future"),
        ("2025-06-01T00:06:00Z", "future"),
        ("2025-01-31T10:00:00+15:00", "offset beyond +-14:00"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_reported_at(text, now)


def test_reported_at_forms() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_reported_at("2025-01-31", now) == "2025-01-31T00:00:00Z"
    assert parse_reported_at("2025-01-31T10:15:00", now) == "2025-01-31T10:15:00Z"
    assert parse_reported_at("2025-01-31T10:15:00Z", now) == "2025-01-31T10:15:00Z"
    assert parse_reported_at(" 2025-01-31T12:15:00+02:00 ", now) == "2025-01-31T10:15:00Z"
    with pytest.raises(ValueError, match="future"):
        parse_reported_at("2025-06-02", now)


# --- the per-seller policy ------------------------------------------------------------------------------


def five_rows_one_bad(tmp_path: Path) -> Path:
    """s-1 has five rows, line 4 with an unknown kind; s-2 is clean."""
    rows = [
        "s-1,confirmed,counterfeit,2025-01-31,email,one@example.com",  # line 2
        "s-1,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567",  # 3
        "s-1,confirmed,counterfeit,2025-01-31,fax,+49 30 7654321",  # 4: rejected
        "s-1,confirmed,counterfeit,2025-01-31,store_name,Lucky Star",  # 5
        "s-1,confirmed,counterfeit,2025-01-31,device_id,abc-123",  # 6
        "s-2,suspected,other,2025-02-01,email,two@example.com",  # 7
    ]
    return write_csv(tmp_path, HEADER + "\n".join(rows) + "\n")


def test_a_seller_with_a_rejected_row_is_held_back_by_default(tmp_path: Path) -> None:
    result = read_submission_file(five_rows_one_bad(tmp_path))

    assert [s.seller_ref for s in result.sellers] == ["s-2"]
    assert [row.line for row in result.rejected] == [4]
    [held] = result.held_back
    assert (held.seller_ref, held.valid_lines, held.sent) == ("s-1", (2, 3, 5, 6), False)
    assert str(held) == (
        "seller 's-1' not sent: line 4 rejected (unknown kind 'fax'; valid kinds: "
        + ", ".join(CSV_KINDS)
        + "); its valid lines 2, 3, 5, 6 held back"
    )
    assert "7654321" not in str(held)


def test_send_valid_rows_sends_the_other_four_rows_and_says_so(tmp_path: Path) -> None:
    result = read_submission_file(five_rows_one_bad(tmp_path), send_valid_rows=True)

    assert [(s.seller_ref, len(s.indicators)) for s in result.sellers] == [("s-1", 4), ("s-2", 1)]
    assert result.held_back == []
    [partial] = result.incomplete
    assert partial.sent
    assert str(partial).startswith("seller 's-1' sent with 4 of its 5 rows: line 4 rejected (unknown kind")


def test_a_seller_whose_rows_disagree_is_not_sent_even_with_send_valid_rows(tmp_path: Path) -> None:
    text = (
        HEADER
        + "s-1,confirmed,counterfeit,2025-01-31,email,one@example.com\n"
        + "s-1,confirmed,counterfeit,2025-02-01,phone,+49 30 1234567\n"
        + "s-2,confirmed,counterfeit,2025-01-31,email,two@example.com\n"
    )
    result = read_submission_rows(io.StringIO(text), send_valid_rows=True)
    assert [s.seller_ref for s in result.sellers] == ["s-2"]
    assert [str(row) for row in result.rejected] == [
        f"line {line} (seller 's-1'): conflicting reported_at across this seller's rows (lines 2, 3)"
        for line in (2, 3)
    ]


def test_several_rejected_rows_of_one_seller_are_named_together(tmp_path: Path) -> None:
    text = (
        HEADER
        + "s-1,confirmed,counterfeit,2025-01-31,email,one@example.com\n"
        + "s-1,banned,counterfeit,2025-01-31,phone,+49 30 1234567\n"  # a bad status counts for s-1 too
        + "s-1,confirmed,counterfeit,2025-01-31,fax,1\n"
    )
    [held] = read_submission_rows(io.StringIO(text)).held_back
    assert (
        str(held)
        == "seller 's-1' not sent: lines 3, 4 rejected (see the rejected rows); its valid line 2 held back"
    )


# --- submitting a CSV ------------------------------------------------------------------------------------


def many_sellers_csv(tmp_path: Path, count: int) -> Path:
    rows = [f"s-{n},confirmed,counterfeit,2025-01-31,store_name,Shop {n}" for n in range(count)]
    rows.append("s-bad,confirmed,counterfeit,2025-01-31,fax,1")  # a seller whose only row is rejected
    return write_csv(tmp_path, HEADER + "\n".join(rows) + "\n")


def test_submit_csv_sends_batches_each_with_its_own_key(
    exchange: FakeExchange, sleeps: Sleeps, tmp_path: Path
) -> None:
    progress: list[str] = []
    summary = submit_csv(
        make_client(exchange.url, sleeps),
        many_sellers_csv(tmp_path, 5),
        batch_size=2,
        progress=progress.append,
    )

    requests = exchange.submissions_requests()
    assert [len(r.body["sellers"]) for r in requests] == [2, 2, 1]
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 3
    assert summary.ok
    assert (summary.rows, summary.sellers, summary.indicators) == (6, 5, 5)
    assert (summary.batches_total, summary.batches_sent, summary.sellers_sent) == (3, 3, 5)
    assert summary.sightings_created == 5
    assert summary.submissions == [f"sub_{n:016x}" for n in (1, 2, 3)]
    assert [row.line for row in summary.rejected] == [7]
    assert summary.held_back == [] and not summary.complete
    assert progress[0].startswith("batch 1/3 sent: 2 sellers so far") and "sellers/s" in progress[0]
    text = summary.format()
    assert "\nbatches sent: 3\nsellers sent: 5\nindicators sent: 5\nnew sightings: 5\n" in text
    assert "rejected rows:\n  line 7 (seller 's-bad'): unknown kind 'fax'" in text


def test_a_failed_batch_is_reported_and_the_others_still_go(
    exchange: FakeExchange, sleeps: Sleeps, tmp_path: Path
) -> None:
    exchange.script = [
        Reply(201, {"submission": "sub_000000000000000a"}),
        Reply(400, {"error": {"code": "invalid", "message": "bad"}}),
    ]
    summary = submit_csv(make_client(exchange.url, sleeps), many_sellers_csv(tmp_path, 5), batch_size=2)

    assert not summary.ok
    assert summary.batches_sent == 2 and summary.sellers_sent == 3
    [failure] = summary.failures
    assert (failure.number, failure.sellers, failure.status) == (2, 2, 400)
    assert failure.idempotency_key == exchange.submissions_requests()[1].headers["Idempotency-Key"]
    assert (
        f"batch 2 (2 sellers, Idempotency-Key {failure.idempotency_key}): HTTP 400 invalid: bad"
        in summary.format()
    )


def test_an_authentication_failure_stops_the_run(
    exchange: FakeExchange, sleeps: Sleeps, tmp_path: Path
) -> None:
    exchange.script = [Reply(401, {"error": {"code": "unauthenticated", "message": "bad key"}})]
    summary = submit_csv(make_client(exchange.url, sleeps), many_sellers_csv(tmp_path, 5), batch_size=2)
    assert len(exchange.requests) == 1
    assert summary.batches_skipped == 2 and not summary.ok
    assert "batches not attempted after a fatal error: 2" in summary.format()


def test_parallel_batches_are_in_flight_together_and_summarised_in_batch_order(
    exchange: FakeExchange, sleeps: Sleeps, tmp_path: Path
) -> None:
    """Issue 17: `parallel` batches are sent at once. The fake exchange answers a submission only when three
    are in flight together (a barrier), so sending them one after the other would time out."""
    together = threading.Barrier(3, timeout=5)

    def accept_when_three_wait(request: Recorded) -> Reply:
        together.wait()
        return exchange.accept(request)

    exchange.default = accept_when_three_wait
    progress: list[str] = []
    summary = submit_csv(
        make_client(exchange.url, sleeps),
        many_sellers_csv(tmp_path, 12),
        batch_size=2,
        parallel=3,
        progress=progress.append,
    )
    requests = exchange.submissions_requests()
    assert len(requests) == 6 and len({r.headers["Idempotency-Key"] for r in requests}) == 6
    sent = sorted(seller["seller_ref"] for r in requests for seller in r.body["sellers"])
    assert sent == sorted(f"s-{n}" for n in range(12))
    assert summary.ok and (summary.batches_sent, summary.sellers_sent, summary.sightings_created) == (
        6,
        12,
        12,
    )
    assert sorted(summary.submissions) == [f"sub_{n:016x}" for n in range(1, 7)]
    assert [line.split(" sent")[0] for line in progress] == [f"batch {n}/6" for n in range(1, 7)]


def test_with_parallel_batches_an_authentication_failure_skips_the_batches_not_started(
    exchange: FakeExchange, sleeps: Sleeps, tmp_path: Path
) -> None:
    exchange.default = lambda request: Reply(
        401, {"error": {"code": "unauthenticated", "message": "bad key"}}
    )
    summary = submit_csv(
        make_client(exchange.url, sleeps), many_sellers_csv(tmp_path, 20), batch_size=2, parallel=2
    )
    attempted = len(exchange.submissions_requests())
    assert 1 <= attempted <= 2  # at most the batches already in flight
    assert len(summary.failures) == attempted and summary.batches_skipped == 10 - attempted
    assert not summary.ok and summary.batches_sent == 0


def test_parallel_below_one_is_refused(exchange: FakeExchange, sleeps: Sleeps) -> None:
    with pytest.raises(ValueError, match="parallel must be 1 or more"):
        submit_sellers(make_client(exchange.url, sleeps), [], parallel=0)


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api.key"
    path.write_text(f"  {API_KEY}\n\n", encoding="utf-8")
    return path


def test_cli_hash_prints_the_transport_hash() -> None:
    code, out, err = run_cli(
        "hash", "--kind", "phone", "--default-region", "DE", "--show-normalized", "030 1234567"
    )
    assert code == 0
    assert out == transport_hash("phone", "+49301234567") + "\n"
    assert err == "+49301234567\n"


def test_cli_hash_rejects_without_echoing_the_value() -> None:
    code, out, err = run_cli("hash", "--kind", "email", SECRET_EMAIL.replace("@", "#"))
    assert code == 2 and out == ""
    assert "email: an email address needs exactly one '@'" in err
    assert "counterfeiter" not in err


def test_cli_rejects_a_bad_default_region() -> None:
    code, _, err = run_cli("hash", "--kind", "phone", "--default-region", "Germany", "030 1234567")
    assert code == 2 and "--default-region" in err


def test_cli_dry_run_writes_the_payloads_it_would_send(tmp_path: Path) -> None:
    payloads_file = tmp_path / "payloads.json"
    code, out, _ = run_cli(
        "submit",
        "--dry-run",
        "--payloads-file",
        str(payloads_file),
        "--batch-size",
        "2",
        str(many_sellers_csv(tmp_path, 3)),
    )
    assert code == 3  # line 5 was rejected
    payloads = json.loads(payloads_file.read_text(encoding="utf-8"))
    assert [len(p["sellers"]) for p in payloads] == [2, 1]
    assert payloads[0]["sellers"][0]["indicators"] == [
        {"kind": "store_name", "hash": transport_hash("store_name", "Shop 0")}
    ]
    assert out.startswith("dry run: nothing was sent\n") and "batches to send: 2\n" in out
    assert "line 5 (seller 's-bad')" in out
    assert "batches sent" not in out
    assert "Shop 0" not in out + payloads_file.read_text(encoding="utf-8")


def test_cli_dry_run_makes_no_request_even_with_url_and_key(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    exchange.me = limits_answer(max_batch_sellers=1, max_seller_indicators=1, max_lookup_indicators=1)
    code, out, err = run_cli(
        "submit",
        "--dry-run",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        str(five_rows_one_bad(tmp_path)),
    )
    assert exchange.requests == []
    assert code == 3
    assert "dry run without --default-region" in err
    # The contract's default limits stand in for the live ones: one batch, s-2 within 100 indicators.
    assert "sellers to send: 1\nindicators to send: 1\nbatches to send: 1\n" in out
    assert "sellers held back: 1\n" in out and "rows held back: 4\n" in out


def test_cli_dry_run_of_a_clean_file_exits_0_without_url_or_key(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER + "s,confirmed,other,2025-01-31,phone,030 1234567\n")
    code, out, _ = run_cli("submit", "--dry-run", "--default-region", "DE", str(path))
    assert code == 0
    assert "rows rejected: 0\n" in out and "sellers to send: 1\n" in out


def test_cli_holds_back_a_seller_with_a_rejected_row_and_exits_3(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    code, out, _ = run_cli(
        "submit",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--quiet",
        str(five_rows_one_bad(tmp_path)),
    )
    assert code == 3
    [post] = exchange.submissions_requests()
    assert [seller["seller_ref"] for seller in post.body["sellers"]] == ["s-2"]
    assert "sellers held back: 1\n" in out and "sellers sent: 1\n" in out
    assert "sellers held back (a row was rejected; --send-valid-rows sends their valid rows):\n" in out
    assert "  seller 's-1' not sent: line 4 rejected (unknown kind 'fax';" in out


def test_cli_send_valid_rows_sends_the_valid_rows_and_still_exits_3(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    code, out, _ = run_cli(
        "submit",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--quiet",
        "--send-valid-rows",
        str(five_rows_one_bad(tmp_path)),
    )
    assert code == 3
    [post] = exchange.submissions_requests()
    assert [(s["seller_ref"], len(s["indicators"])) for s in post.body["sellers"]] == [("s-1", 4), ("s-2", 1)]
    assert "sellers held back: 0\n" in out and "sellers sent: 2\n" in out
    assert (
        "sellers sent without their rejected rows (--send-valid-rows):\n  seller 's-1' sent with 4 of" in out
    )


def test_cli_exits_0_when_every_row_was_sent(exchange: FakeExchange, key_file: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER + "s,confirmed,other,2025-01-31,email,a@example.com\n")
    code, out, _ = run_cli("submit", "--url", exchange.url, "--key-file", str(key_file), "--quiet", str(path))
    assert code == 0
    assert "rows rejected: 0\n" in out and "sellers sent: 1\n" in out


def test_cli_help_documents_the_exit_codes() -> None:
    for argv in (["--help"], ["submit", "--help"]):
        out = io.StringIO()
        with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
            main(argv)
        assert done.value.code == 0
        text = out.getvalue()
        assert "exit codes:" in text
        assert "  3  submit: rows were rejected" in text and "  1  the exchange refused a batch" in text


def test_cli_payloads_file_needs_dry_run(tmp_path: Path) -> None:
    code, _, err = run_cli("submit", "--payloads-file", str(tmp_path / "p.json"), str(tmp_path / "x.csv"))
    assert code == 2 and "--payloads-file goes with --dry-run" in err


def test_cli_submit_shows_progress_and_summary(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    code, out, err = run_cli(
        "submit",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--batch-size",
        "2",
        str(many_sellers_csv(tmp_path, 3)),
    )
    assert code == 3  # all sent but one rejected row
    assert exchange.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert "batch 1/2 sent" in err and "batch 2/2 sent" in err
    assert "batches sent: 2\nsellers sent: 3\n" in out and "rows rejected: 1\n" in out
    assert API_KEY not in out + err


def test_cli_submit_exits_non_zero_when_a_batch_fails(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    exchange.script = [Reply(503)]
    code, out, _ = run_cli(
        "submit",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--max-retries",
        "0",
        "--quiet",
        str(many_sellers_csv(tmp_path, 3)),
    )
    assert code == 1  # a failed batch outranks the rejected row (3)
    assert "failed batches:" in out and "HTTP 503" in out


@pytest.mark.parametrize("parallel", ["0", "33"])
def test_cli_submit_refuses_a_parallel_out_of_range(
    exchange: FakeExchange, key_file: Path, tmp_path: Path, parallel: str
) -> None:
    code, _, err = run_cli(
        "submit", "--url", exchange.url, "--key-file", str(key_file), "--parallel", parallel,
        str(many_sellers_csv(tmp_path, 3)),
    )  # fmt: skip
    assert code == 2 and "--parallel must be between 1 and 32" in err
    assert exchange.requests == []  # nothing was sent


def test_cli_submit_sends_four_batches_at_once_by_default(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    together = threading.Barrier(4, timeout=5)

    def accept_when_four_wait(request: Recorded) -> Reply:
        if request.path == "/api/v1/submissions/":
            together.wait()
        return exchange.accept(request)

    exchange.default = accept_when_four_wait
    code, out, _ = run_cli(
        "submit", "--url", exchange.url, "--key-file", str(key_file), "--batch-size", "1", "--quiet",
        str(many_sellers_csv(tmp_path, 8)),
    )  # fmt: skip
    assert code == 3 and "batches sent: 8\nsellers sent: 8\n" in out  # the rejected row aside


def test_cli_submit_reports_an_unreadable_csv(key_file: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "submit", "--url", "http://127.0.0.1:9", "--key-file", str(key_file), str(tmp_path / "no.csv")
    )
    assert code == 2 and "cannot read" in err


def test_cli_needs_a_key_file_with_a_key(exchange: FakeExchange, tmp_path: Path) -> None:
    empty = write_csv(tmp_path, "\n", name="empty.key")
    code, _, err = run_cli(
        "retract", "--url", exchange.url, "--key-file", str(empty), "s-1", "--reason", "appeal"
    )
    assert code == 2 and "must contain exactly one API key" in err
    assert exchange.requests == []


def test_cli_lookup_hashes_locally_and_prints_the_answer(exchange: FakeExchange, key_file: Path) -> None:
    code, out, _ = run_cli(
        "lookup",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--kind",
        "email",
        SECRET_EMAIL,
        "b@example.com",
    )
    assert code == 0
    hashes = [transport_hash("email", SECRET_EMAIL), transport_hash("email", "b@example.com")]
    assert [r.path for r in exchange.requests] == ["/api/v1/me/", "/api/v1/lookups/"]  # limits, then lookup
    assert exchange.requests[1].body == {"indicators": [{"kind": "email", "hash": h} for h in hashes]}
    assert json.loads(out)["results"][0]["hash"] == hashes[0]
    assert SECRET_EMAIL not in json.dumps(exchange.requests[1].body)


def test_cli_lookup_names_the_bad_value_by_position(exchange: FakeExchange, key_file: Path) -> None:
    # With --default-region the values are checked before any request; without it the platform's region is
    # asked first (test_cli_takes_the_platforms_default_region_from_me), and still nothing is looked up.
    for region in (["--default-region", "DE"], []):
        exchange.requests.clear()
        code, _, err = run_cli(
            "lookup", "--url", exchange.url, "--key-file", str(key_file), *region, "--kind", "phone", "+49 123", "x"
        )  # fmt: skip
        assert code == 2 and "value #1 rejected" in err
        assert [r.path for r in exchange.requests] == ([] if region else ["/api/v1/me/"])


def test_cli_retract_prints_the_answer_and_api_errors(exchange: FakeExchange, key_file: Path) -> None:
    code, out, _ = run_cli(
        "retract", "--url", exchange.url, "--key-file", str(key_file), "s-1", "--reason", "appeal upheld"
    )
    assert code == 0 and json.loads(out) == {"retracted": True}

    exchange.script = [Reply(404, {"error": {"code": "not_found", "message": "no such seller"}})]
    code, _, err = run_cli(
        "retract", "--url", exchange.url, "--key-file", str(key_file), "s-9", "--reason", "appeal"
    )
    assert code == 1 and "HTTP 404 not_found: no such seller" in err


def test_client_runs_without_django() -> None:
    script = (
        "import sys, exchange.client, exchange.client.cli, exchange.normalization\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')]\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2])


def test_module_entry_point_prints_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.client", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "submit" in done.stdout and "lookup" in done.stdout and "retract" in done.stdout
    assert "appeal" in done.stdout


# --- the exchange's limits, learnt from /me/ ----------------------------------------------------------------


def limits_answer(**limits: int) -> dict[str, Any]:
    return {
        "platform": "acme",
        "key_prefix": "bax_0123456789",
        "scopes": ["submit", "read"],
        "limits": limits,
    }


def test_limits_come_from_me_and_default_when_the_exchange_does_not_say(
    exchange: FakeExchange, sleeps: Sleeps
) -> None:
    client = make_client(exchange.url, sleeps)
    assert client.limits() == Limits()  # 404: an exchange without /me/ (or a key without read scope)
    exchange.me = limits_answer(max_batch_sellers=7, max_seller_indicators=3, max_lookup_indicators=5)
    assert client.limits() == Limits(7, 3, 5)  # the body limit the exchange did not say: the contract's
    exchange.me = limits_answer(max_body_bytes=65_536)
    assert client.limits() == Limits(max_body_bytes=65_536)
    exchange.me = limits_answer(max_batch_sellers=0, max_seller_indicators=True)  # malformed: defaults
    assert client.limits() == Limits()
    assert exchange.requests[-1].method == "GET" and exchange.requests[-1].body is None


def test_batches_keep_their_request_body_within_a_byte_limit() -> None:
    """Photos make a seller's JSON large (19 hashes each): batches are cut by the body's size as the client
    sends it, not only by count; a seller too large on its own goes alone; order and membership are kept."""
    from exchange.client.submission import batched

    sellers = [seller(f"s-{n}", indicators=1 + n % 3) for n in range(10)]
    body = lambda batch: len(json.dumps({"sellers": [s.to_payload() for s in batch]}, separators=(",", ":")))  # noqa: E731
    single = max(body([s]) for s in sellers)
    for limit in (single, single + 150, 2 * single, 10_000):
        batches = list(batched(sellers, 4, limit))
        assert [s.seller_ref for batch in batches for s in batch] == [s.seller_ref for s in sellers]
        assert all(body(batch) <= limit and len(batch) <= 4 for batch in batches)
        # greedy: no batch could have taken the next seller too
        assert all(len(a) == 4 or body([*a, b[0]]) > limit for a, b in itertools.pairwise(batches))
    assert [len(b) for b in batched(sellers, 4, 10)] == [1] * 10  # each over the limit alone: sent alone
    assert [len(b) for b in batched(sellers, 4, None)] == [4, 4, 2]


def test_cli_submit_splits_batches_to_the_exchanges_body_limit(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    exchange.me = limits_answer(
        max_batch_sellers=500, max_seller_indicators=100, max_lookup_indicators=100, max_body_bytes=700
    )
    rows = [f"s-{n},confirmed,counterfeit,2025-01-31,store_name,Shop number {n}" for n in range(12)]
    csv = write_csv(tmp_path, HEADER + "\n".join(rows) + "\n")
    code, _out, err = run_cli("submit", "--url", exchange.url, "--key-file", str(key_file), str(csv))
    assert code == 0, err
    posts = [r for r in exchange.requests if r.method == "POST"]
    assert len(posts) > 1 and all(int(r.headers["Content-Length"]) <= 700 for r in posts)
    sent = sorted(s["seller_ref"] for r in posts for s in r.body["sellers"])  # batches go 4 at a time
    assert sent == sorted(f"s-{n}" for n in range(12))


def test_cli_submit_keeps_to_the_exchanges_limits(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    exchange.me = limits_answer(max_batch_sellers=2, max_seller_indicators=1, max_lookup_indicators=100)
    # s-0 has two indicators (many_sellers_csv adds a second row for it): over the limit of 1 per seller.
    rows = [f"s-{n},confirmed,counterfeit,2025-01-31,store_name,Shop {n}" for n in range(5)]
    rows.append("s-0,confirmed,counterfeit,2025-01-31,phone,+49 30 1234567")
    csv = write_csv(tmp_path, HEADER + "\n".join(rows) + "\n")
    code, out, err = run_cli(
        "submit", "--url", exchange.url, "--key-file", str(key_file), "--batch-size", "500", str(csv)
    )
    assert code == 3  # s-0's rows are rejected: over the exchange's limit
    assert "--batch-size lowered to 2" in err
    posts = [r for r in exchange.requests if r.method == "POST"]
    assert [len(r.body["sellers"]) for r in posts] == [2, 2]  # s-1..s-4; s-0 is not sent
    assert all(seller["seller_ref"] != "s-0" for r in posts for seller in r.body["sellers"])
    assert "line 2 (seller 's-0'): 2 distinct indicators for one seller; the exchange takes at most 1" in out
    assert "line 7 (seller 's-0')" in out


def test_cli_submit_says_nothing_was_sent_when_the_exchange_is_unreachable(
    key_file: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        "submit",
        "--url",
        "http://127.0.0.1:9",
        "--key-file",
        str(key_file),
        "--max-retries",
        "0",
        str(many_sellers_csv(tmp_path, 2)),
    )
    assert code == 1 and "nothing was sent: cannot reach the exchange" in err


def test_cli_lookup_refuses_more_values_than_the_exchange_screens(
    exchange: FakeExchange, key_file: Path
) -> None:
    exchange.me = limits_answer(max_batch_sellers=10, max_seller_indicators=10, max_lookup_indicators=1)
    code, _, err = run_cli(
        "lookup",
        "--url",
        exchange.url,
        "--key-file",
        str(key_file),
        "--kind",
        "email",
        "a@example.com",
        "b@example.com",
    )
    assert code == 2 and "2 values given; the exchange screens at most 1 per lookup" in err
    assert [r.method for r in exchange.requests] == ["GET"]  # nothing was looked up


# --- issue 19, item 5: the default region is the platform's, from /me/, unless --default-region is given ------

NATIONAL = "030 1234567"  # a national German number: hashable only with a default region


def test_client_reads_the_platforms_default_region_from_me(exchange: FakeExchange, sleeps: Sleeps) -> None:
    client = make_client(exchange.url, sleeps)
    assert client.default_region() is None  # 404: an exchange without /me/
    exchange.me = {**limits_answer(max_batch_sellers=7), "default_region": "de"}
    assert client.settings() == (Limits(max_batch_sellers=7), "DE")
    for malformed in (None, "", "Germany", 49):
        exchange.me = {**limits_answer(), "default_region": malformed}
        assert client.default_region() is None


def test_cli_takes_the_platforms_default_region_from_me(
    exchange: FakeExchange, key_file: Path, tmp_path: Path
) -> None:
    exchange.me = {**limits_answer(), "default_region": "DE"}
    code, out, err = run_cli(
        "lookup", "--url", exchange.url, "--key-file", str(key_file), "--kind", "phone", NATIONAL
    )
    assert code == 0, err
    assert [r.path for r in exchange.requests] == ["/api/v1/me/", "/api/v1/lookups/"]  # one /me/ for both
    sent = exchange.requests[1].body["indicators"][0]["hash"]
    assert sent == transport_hash("phone", NATIONAL, "DE") and "default region DE" in err
    csv = write_csv(tmp_path, HEADER + f"s-1,confirmed,counterfeit,2025-01-31,phone,{NATIONAL}\n")
    exchange.requests.clear()
    code, out, err = run_cli("submit", "--url", exchange.url, "--key-file", str(key_file), str(csv))
    assert code == 0, out + err
    [post] = [r for r in exchange.requests if r.method == "POST"]
    assert post.body["sellers"][0]["indicators"] == [
        {"kind": "phone", "hash": transport_hash("phone", NATIONAL, "DE")}
    ]
    assert [r.path for r in exchange.requests].count("/api/v1/me/") == 1


def test_cli_default_region_option_overrides_the_platforms(exchange: FakeExchange, key_file: Path) -> None:
    exchange.me = {**limits_answer(), "default_region": "AT"}
    code, _, err = run_cli(
        "lookup", "--url", exchange.url, "--key-file", str(key_file), "--default-region", "DE", "--kind", "phone",
        NATIONAL,
    )  # fmt: skip
    assert code == 0, err
    assert exchange.requests[1].body["indicators"][0]["hash"] == transport_hash("phone", NATIONAL, "DE")
    assert "default region" not in err


def test_cli_without_any_region_rejects_a_national_number(exchange: FakeExchange, key_file: Path) -> None:
    exchange.me = limits_answer()  # an exchange that does not say, or a platform without a region
    code, _, err = run_cli(
        "lookup", "--url", exchange.url, "--key-file", str(key_file), "--kind", "phone", NATIONAL
    )
    assert code == 2 and "value #1 rejected" in err and "no default region" in err
    assert [r.method for r in exchange.requests] == ["GET"]  # nothing was looked up
