"""A real webhook receiver for the tests: `http.server` over TLS with a certificate made here (a throwaway CA
signs a certificate for localhost and 127.0.0.1, with `cryptography`). It verifies every delivery's signature
with the partner client's `verify` and records the events by id (deduplication, as a partner would), and
answers as the test tells it (status, Retry-After, a delay, a redirect)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.client.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    verify,
)

# What a receiver answers in its body: it must never end up in the exchange's database.
RESPONSE_CANARY = "RESPONSE-BODY-CANARY-7f3a"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what the exchange trusts (EXCHANGE_WEBHOOK_CA_FILE)
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA and a server certificate it signs, for localhost and 127.0.0.1, valid for a day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Webhook test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


@dataclass
class Delivery:
    path: str
    event_id: str | None
    verified: bool
    headers: dict[str, str]


class Receiver:
    """Start with `with Receiver(...) as receiver:`; `receiver.url("/hook")` is where to send.

    `secrets()` gives the secrets a delivery may be signed with (read at each request: the test may rotate);
    `answer(event, nth)` decides the reply to the nth delivery (0-based, verified or not)."""

    def __init__(
        self,
        tls: TlsFiles | None,
        secrets: Callable[[], list[str]],
        answer: Callable[[dict[str, Any] | None, int], Answer] = lambda event, nth: Answer(),
        on_request: Callable[[], None] = lambda: None,
    ) -> None:
        self.tls, self.secrets, self.answer, self.on_request = tls, secrets, answer, on_request
        self.events: dict[str, dict[str, Any]] = {}  # by id: each event once, however often it came
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}{path}"

    @property
    def verified(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.verified]

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                receiver.on_request()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event: dict[str, Any] | None
                try:
                    event = verify(body, self.headers.get(SIGNATURE_HEADER, ""), receiver.secrets())
                except WebhookSignatureError:
                    event = None
                with receiver.lock:
                    nth = len(receiver.deliveries)
                    receiver.deliveries.append(
                        Delivery(
                            self.path,
                            self.headers.get(EVENT_ID_HEADER),
                            event is not None,
                            dict(self.headers),
                        )
                    )
                answer = receiver.answer(event, nth) if event is not None else Answer(400)
                if answer.delay:
                    time.sleep(answer.delay)
                if event is not None and 200 <= answer.status < 300:
                    with receiver.lock:
                        receiver.events.setdefault(event["id"], event)
                payload = json.dumps({"received": True, "note": RESPONSE_CANARY}).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up (timed out) or was killed meanwhile

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None and self.thread is not None
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
