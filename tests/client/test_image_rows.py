"""Image rows of the submission CSV (issue 13): a product photo, by path or https:// URL, hashed on the
partner's side with PDQ; only the full hash, its quality and the sub-crop hashes are sent."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from exchange.client import ExchangeClient, read_submission_file, read_submission_rows, submit_csv
from exchange.client import images as client_images
from exchange.client.cli import main
from exchange.client.csvinput import CSV_KINDS, CsvResult
from exchange.contract import IMAGE_KIND, IMAGE_MIN_QUALITY, MAX_IMAGE_CROPS
from exchange.normalization import transport_hash
from exchange.perceptual import pdq_variants
from fixtures import images
from tests.client.helpers import sent_indicators, write
from tests.client.test_client import API_KEY, FakeExchange

HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"
SELLER = "s-1,confirmed,counterfeit,2025-01-31T12:00:00Z"
EMAIL = "counterfeiter.alice@example.com"


def csv_text(*rows: tuple[str, str], seller: str = SELLER) -> str:
    """A submission CSV of one seller with the given (kind, value) rows."""
    return HEADER + "".join(f"{seller},{kind},{value}\n" for kind, value in rows)


def image_payload(path: Path) -> dict[str, Any]:
    variants = pdq_variants(path)
    return {
        "kind": IMAGE_KIND,
        "hash": variants.full.hex,
        "quality": variants.full.quality,
        "crops": list(variants.crops),
    }


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A product photo in a folder beside the CSV: ``photos/bag.jpg``."""
    (tmp_path / "photos").mkdir()
    return images.save(images.product_photo(7, "handbag"), tmp_path / "photos" / "bag.jpg")


# --- local files --------------------------------------------------------------------------------------------


def test_image_row_sends_the_photos_pdq_hash_quality_and_crops(tmp_path: Path, photo: Path) -> None:
    other = images.save(images.product_photo(8, "sneaker"), tmp_path / "elsewhere.png")
    path = write(
        tmp_path,
        csv_text(("image", "photos/bag.jpg"), ("IMAGE", str(other.resolve())), ("email", EMAIL)),
    )

    result = read_submission_file(path)

    assert result.rejected == [] and result.incomplete == []
    bag, sneaker, email = sent_indicators(result)
    assert bag == image_payload(photo)
    assert sneaker == image_payload(other)
    assert bag["hash"] != sneaker["hash"]
    for indicator in (bag, sneaker):
        assert indicator["quality"] >= IMAGE_MIN_QUALITY
        assert 1 <= len(indicator["crops"]) <= MAX_IMAGE_CROPS
        assert all(len(crop) == 64 and crop == crop.lower() for crop in indicator["crops"])
    # the other kinds keep their shape exactly
    assert email == {"kind": "email", "hash": transport_hash("email", EMAIL)}


def test_relative_photo_paths_start_from_the_csv_files_folder(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, csv_text(("image", "photos/bag.jpg")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert sent_indicators(read_submission_file(path)) == [image_payload(photo)]


def test_csv_read_from_a_stream_takes_photo_paths_from_the_current_directory(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = csv_text(("image", "photos/bag.jpg"))
    monkeypatch.chdir(tmp_path)
    assert sent_indicators(read_submission_rows(io.StringIO(text))) == [image_payload(photo)]
    # a base_dir overrides it
    monkeypatch.chdir(photo.parent)
    result = read_submission_rows(io.StringIO(text), base_dir=tmp_path)
    assert sent_indicators(result) == [image_payload(photo)]


def test_the_same_photo_given_twice_is_sent_once(tmp_path: Path, photo: Path) -> None:
    path = write(tmp_path, csv_text(("image", "photos/bag.jpg"), ("image", str(photo))))
    result = read_submission_file(path)
    assert sent_indicators(result) == [image_payload(photo)]
    assert result.duplicate_indicators == 1


def test_image_is_a_valid_kind_in_the_unknown_kind_message(tmp_path: Path) -> None:
    result = read_submission_file(write(tmp_path, csv_text(("photo", "bag.jpg"))))
    [rejected] = result.rejected
    assert "valid kinds: " + ", ".join(CSV_KINDS) in rejected.reason
    assert IMAGE_KIND in CSV_KINDS


def _truncated(path: Path) -> None:
    images.save(images.product_photo(3, "watch"), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


BAD_FILES: dict[str, tuple[Callable[[Path], object], str]] = {
    # the file's name: how it is made, and the reason code of its refusal
    "missing.jpg": (lambda path: None, "unreadable"),
    "empty.jpg": (lambda path: path.write_bytes(b""), "empty"),
    "notes.jpg": (
        lambda path: path.write_text(f"{EMAIL},+49 30 1234567\n", encoding="utf-8"),
        "not_an_image",
    ),
    "cut.jpg": (_truncated, "unreadable"),
    "flat.png": (lambda path: Image.new("RGB", (200, 150), (240, 240, 240)).save(path), "low_quality"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_photo_that_cannot_be_hashed_rejects_its_row_and_holds_the_seller_back(
    tmp_path: Path, name: str
) -> None:
    make, reason = BAD_FILES[name]
    make(tmp_path / name)
    path = write(tmp_path, csv_text(("email", EMAIL), ("image", name)))

    result = read_submission_file(path)

    assert result.sellers == []
    [rejected] = result.rejected
    assert (rejected.line, rejected.seller_ref) == (3, "s-1")
    assert rejected.reason.startswith(f"image rejected ({reason}): ")
    assert str(rejected).startswith("line 3 (seller 's-1'): image rejected")
    assert "alice" not in rejected.reason and "+49" not in rejected.reason  # never the file's contents
    [held] = result.held_back
    assert (held.seller_ref, held.valid_lines) == ("s-1", (2,))
    assert str(held).startswith("seller 's-1' not sent: line 3 rejected (image rejected")

    # --send-valid-rows sends the seller's other rows, as for any rejected row
    sent = read_submission_file(path, send_valid_rows=True)
    assert sent_indicators(sent) == [{"kind": "email", "hash": transport_hash("email", EMAIL)}]
    assert [seller.sent for seller in sent.incomplete] == [True]


def test_flat_photo_is_refused_for_its_pdq_quality(tmp_path: Path) -> None:
    Image.new("RGB", (200, 150), (20, 20, 20)).save(tmp_path / "flat.png")
    [rejected] = read_submission_file(write(tmp_path, csv_text(("image", "flat.png")))).rejected
    assert "image rejected (low_quality)" in rejected.reason
    assert f"at least {IMAGE_MIN_QUALITY} is needed" in rejected.reason


@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        ("", "empty_value", "give the path of a photo file or an https:// URL"),
        ("http://127.0.0.1:9/bag.jpg", "not_https", "plain http:// image URLs are refused"),
        ("HTTP://127.0.0.1:9/bag.jpg", "not_https", "use https://"),
        ("ftp://127.0.0.1:9/bag.jpg", "bad_url", "only https:// image URLs are downloaded, not ftp://"),
        ("file:///etc/passwd", "bad_url", "not file://"),
        ("https:///bag.jpg", "bad_url", "no host"),
        ("https://127.0.0.1:9/bag 17.jpg", "bad_url", "the image URL is malformed"),
        ("https://127.0.0.1:port/bag.jpg", "bad_url", "the image URL is malformed"),
        ("https://[::1/bag.jpg", "bad_url", "the image URL is malformed"),
    ],
)
def test_values_that_are_not_a_path_or_an_https_url_are_refused_without_a_request(
    tmp_path: Path, value: str, reason: str, words: str
) -> None:
    # Port 9 (discard) on the loopback: nothing listens, and nothing is asked.
    [rejected] = read_submission_file(write(tmp_path, csv_text(("image", value)))).rejected
    assert rejected.reason.startswith(f"image rejected ({reason}): ") and words in rejected.reason
    assert (
        "127.0.0.1" not in rejected.reason
        and "passwd" not in rejected.reason
        and "bag" not in rejected.reason
    )


# --- https:// URLs, from a real local HTTPS server ----------------------------------------------------------


@dataclass
class Tls:
    ca_file: Path
    server_context: ssl.SSLContext


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost (made here, offline)."""
    folder = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test photo CA"))
        .issuer_name(_name("Test photo CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return Tls(ca_file, context)


@dataclass
class Served:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    declare_length: bool = True
    delay: float = 0.0  # before answering
    drip: float = 0.0  # between the body's 1 kB pieces


class PhotoServer:
    """A real HTTPS server on the loopback: answers each path from ``routes`` and records what was asked."""

    def __init__(self, tls: Tls) -> None:
        self.routes: dict[str, Served] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                served = server.routes.get(self.path.split("?")[0], Served(404, b"not here"))
                time.sleep(served.delay)
                self.send_response(served.status)
                for name, value in served.headers:
                    self.send_header(name, value)
                if served.declare_length:
                    self.send_header("Content-Length", str(len(served.body)))
                else:
                    self.close_connection = True
                self.end_headers()
                piece = 1024 if served.drip else max(1, len(served.body))
                with contextlib.suppress(OSError):  # the client stopped reading (a refused download)
                    for start in range(0, len(served.body), piece):
                        self.wfile.write(served.body[start : start + piece])
                        time.sleep(served.drip)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = tls.server_context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)


@pytest.fixture
def photo_server(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[PhotoServer]:
    """The server, with its CA trusted through SSL_CERT_FILE (as a partner names a private CA)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    for proxy in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    server = PhotoServer(tls)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def url_rows(tmp_path: Path, *values: str) -> CsvResult:
    return read_submission_file(
        write(tmp_path, csv_text(("email", EMAIL), *[("image", value) for value in values]))
    )


def the_rejection(result: CsvResult) -> str:
    [rejected] = result.rejected
    assert (rejected.line, rejected.seller_ref) == (3, "s-1")
    assert [held.valid_lines for held in result.held_back] == [(2,)]
    return rejected.reason


def test_https_photo_is_downloaded_and_hashed_like_the_same_file(
    tmp_path: Path, photo: Path, photo_server: PhotoServer
) -> None:
    photo_server.routes["/catalogue/bag.jpg"] = Served(body=photo.read_bytes())

    result = url_rows(tmp_path, f"{photo_server.url}/catalogue/bag.jpg?sig=s3cr3t")

    assert result.rejected == []
    assert sent_indicators(result)[1] == image_payload(photo)
    [(path, headers)] = photo_server.requests
    assert path == "/catalogue/bag.jpg?sig=s3cr3t"
    assert headers["User-Agent"].startswith("exchange-partner-client/")
    assert "Authorization" not in headers  # the API key is never sent to a photo host


def test_a_photo_url_given_twice_is_downloaded_once(
    tmp_path: Path, photo: Path, photo_server: PhotoServer
) -> None:
    photo_server.routes["/bag.jpg"] = Served(body=photo.read_bytes())
    result = url_rows(tmp_path, f"{photo_server.url}/bag.jpg", f"{photo_server.url}/bag.jpg")
    assert result.duplicate_indicators == 1 and len(photo_server.requests) == 1


def test_https_redirect_to_https_is_followed(tmp_path: Path, photo: Path, photo_server: PhotoServer) -> None:
    photo_server.routes["/old.jpg"] = Served(302, headers=(("Location", f"{photo_server.url}/new.jpg"),))
    photo_server.routes["/new.jpg"] = Served(body=photo.read_bytes())
    result = url_rows(tmp_path, f"{photo_server.url}/old.jpg")
    assert result.rejected == [] and sent_indicators(result)[1] == image_payload(photo)


def test_https_redirect_to_plain_http_is_refused(
    tmp_path: Path, photo: Path, photo_server: PhotoServer
) -> None:
    plain = photo_server.url.replace("https://", "http://")
    photo_server.routes["/old.jpg"] = Served(301, headers=(("Location", f"{plain}/new.jpg"),))
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/old.jpg"))
    assert reason.startswith("image rejected (not_https): ") and "redirects" in reason
    assert [path for path, _ in photo_server.requests] == ["/old.jpg"]


def test_an_untrusted_certificate_is_refused(
    tmp_path: Path, photo: Path, photo_server: PhotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # only the system's CAs: they did not sign the test server's
    photo_server.routes["/bag.jpg"] = Served(body=photo.read_bytes())
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/bag.jpg"))
    assert reason.startswith("image rejected (download_failed): ")
    assert "certificate does not verify" in reason and "SSL_CERT_FILE" in reason


def test_a_failing_url_is_refused_with_its_http_status(tmp_path: Path, photo_server: PhotoServer) -> None:
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/gone.jpg?token=s3cr3t"))
    assert reason == "image rejected (download_failed): the image URL answered HTTP 404 (Not Found)"


def test_an_unreachable_host_is_refused(tmp_path: Path, photo_server: PhotoServer) -> None:
    photo_server.server.shutdown()
    photo_server.server.server_close()
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/bag.jpg"))
    assert reason.startswith("image rejected (download_failed): cannot download the image: ")


@pytest.mark.parametrize("declare_length", [True, False])
def test_a_download_over_the_size_limit_is_refused(
    tmp_path: Path, photo_server: PhotoServer, monkeypatch: pytest.MonkeyPatch, declare_length: bool
) -> None:
    monkeypatch.setattr(client_images, "MAX_DOWNLOAD_BYTES", 100_000)
    photo_server.routes["/huge.jpg"] = Served(body=b"\xff" * 100_001, declare_length=declare_length)
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/huge.jpg"))
    assert reason == "image rejected (too_large): the image download is larger than 100000 bytes"


def test_the_default_size_limit_is_20_mb() -> None:
    assert client_images.MAX_DOWNLOAD_BYTES == 20 * 1024 * 1024
    assert client_images.PhotoHasher().max_bytes == 20 * 1024 * 1024


def test_a_slow_download_is_refused_after_the_timeout(
    tmp_path: Path, photo: Path, photo_server: PhotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_images, "DOWNLOAD_TIMEOUT", 0.3)
    photo_server.routes["/slow.jpg"] = Served(body=photo.read_bytes(), delay=1.0)
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/slow.jpg"))
    assert reason == "image rejected (download_failed): cannot download the image: timed out"


def test_a_download_that_drips_past_the_timeout_is_refused(
    tmp_path: Path, photo: Path, photo_server: PhotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_images, "DOWNLOAD_TIMEOUT", 0.5)
    photo_server.routes["/drip.jpg"] = Served(body=photo.read_bytes()[:20_000], drip=0.05)
    started = time.monotonic()
    reason = the_rejection(url_rows(tmp_path, f"{photo_server.url}/drip.jpg"))
    assert reason == "image rejected (download_failed): the image download took longer than 0.5 s"
    assert time.monotonic() - started < 1.0  # each piece came within the timeout; the deadline stopped it


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (f"{EMAIL}\n".encode(), "not_an_image"),
        (None, "unreadable"),  # a truncated photo
    ],
)
def test_a_downloaded_file_that_is_not_a_photo_is_refused_like_a_local_one(
    tmp_path: Path, photo: Path, photo_server: PhotoServer, body: bytes | None, reason: str
) -> None:
    photo_server.routes["/bag.jpg"] = Served(body=photo.read_bytes()[:2000] if body is None else body)
    refusal = the_rejection(url_rows(tmp_path, f"{photo_server.url}/bag.jpg"))
    assert refusal.startswith(f"image rejected ({reason}): ")
    assert "'bag.jpg'" in refusal  # named like the URL's file, never by a temporary path
    assert "alice" not in refusal and "tmp" not in refusal


# --- what leaves the partner's machine ----------------------------------------------------------------------


def _assert_nothing_of_the_photos_in(sent: str, photos: list[Path], secrets: list[str]) -> None:
    for path in photos:
        data = path.read_bytes()
        assert data not in sent.encode("utf-8")
        for chunk in (data[:48], data[len(data) // 2 : len(data) // 2 + 48]):
            assert base64.b64encode(chunk).decode() not in sent
            assert chunk.hex() not in sent
        assert path.name not in sent and str(path) not in sent
    for secret in secrets:
        assert secret not in sent


def test_dry_run_payloads_carry_the_hashes_and_nothing_of_the_photo(
    tmp_path: Path, photo: Path, photo_server: PhotoServer
) -> None:
    served = images.save(images.product_photo(9, "bottle"), tmp_path / "served-bottle.png")
    photo_server.routes["/served-bottle.png"] = Served(body=served.read_bytes())
    url = f"{photo_server.url}/served-bottle.png?token=s3cr3t-t0ken"
    csv_path = write(tmp_path, csv_text(("image", "photos/bag.jpg"), ("image", url), ("email", EMAIL)))
    payloads_file = tmp_path / "payloads.json"
    out, err = io.StringIO(), io.StringIO()

    code = main(
        ["submit", "--dry-run", "--payloads-file", str(payloads_file), str(csv_path)], stdout=out, stderr=err
    )

    assert code == 0, out.getvalue() + err.getvalue()
    assert out.getvalue().startswith("dry run: nothing was sent\n")
    assert "indicators to send: 3\n" in out.getvalue()
    sent = payloads_file.read_text(encoding="utf-8")
    [batch] = json.loads(sent)
    [seller] = batch["sellers"]
    assert seller["indicators"][:2] == [image_payload(photo), image_payload(served)]
    assert [sorted(indicator) for indicator in seller["indicators"]] == [
        ["crops", "hash", "kind", "quality"],
        ["crops", "hash", "kind", "quality"],
        ["hash", "kind"],
    ]
    _assert_nothing_of_the_photos_in(
        sent + out.getvalue() + err.getvalue(), [photo, served], [url, "s3cr3t", EMAIL, "photos/"]
    )


def test_a_real_submission_sends_the_hashes_and_nothing_of_the_photo(tmp_path: Path, photo: Path) -> None:
    exchange = FakeExchange()
    exchange.thread.start()
    try:
        client = ExchangeClient(exchange.url, API_KEY, timeout=5, max_retries=0)
        summary = submit_csv(client, write(tmp_path, csv_text(("image", "photos/bag.jpg"))))
    finally:
        exchange.server.shutdown()
        exchange.server.server_close()

    assert summary.complete and summary.indicators_sent == 1
    [request] = exchange.submissions_requests()
    assert request.body["sellers"][0]["indicators"] == [image_payload(photo)]
    _assert_nothing_of_the_photos_in(json.dumps(request.body), [photo], ["photos/"])


# --- the command line ---------------------------------------------------------------------------------------


def test_dry_run_names_a_rejected_image_row_by_line_and_holds_its_seller_back(tmp_path: Path) -> None:
    Image.new("RGB", (200, 150), (240, 240, 240)).save(tmp_path / "flat.png")
    csv_path = write(tmp_path, csv_text(("email", EMAIL), ("image", "flat.png")))
    out, err = io.StringIO(), io.StringIO()

    code = main(["submit", "--dry-run", str(csv_path)], stdout=out, stderr=err)

    assert code == 3
    text = out.getvalue()
    assert "rows rejected: 1\n" in text and "sellers held back: 1\n" in text
    assert "  line 3 (seller 's-1'): image rejected (low_quality): the image is too flat" in text
    assert "its valid line 2 held back" in text


def test_submit_help_explains_image_rows() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
        main(["submit", "--help"])
    assert exited.value.code == 0
    text = " ".join(out.getvalue().split())
    assert (
        "An image row's value is a product photo: a file path (relative to the CSV file's folder) or" in text
    )
    assert f"{client_images.MAX_DOWNLOAD_BYTES // 2**20} MB" in text and "SSL_CERT_FILE" in text
    assert "only its hashes are sent, never the photo, its path or its URL" in text
