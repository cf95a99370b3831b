"""HTTP access to the exchange's Partner API v1, with retries.

The HTTP is the standard library's (urllib, no requests). Importing this module still loads the hashing
spec's pinned normalisation libraries and PDQ's, through ``exchange.client.csvinput``
(``exchange.normalization`` and, for image rows, ``exchange.perceptual``). TLS is the standard library's
default context: the system's CAs, or a private CA's file named in ``SSL_CERT_FILE`` (image downloads
verify the same way).
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exchange.client.csvinput import Indicator, SellerReport
from exchange.contract import (
    APPEAL_OUTCOMES,
    IDEMPOTENCY_KEY_RULE,
    MAX_APPEAL_DOCUMENTS,
    Limits,
    is_idempotency_key,
    is_transport_hash,
)
from exchange.normalization import NormalizationError, normalize_region

__all__ = ["ApiError", "ExchangeClient", "ExchangeError", "TransportError"]

USER_AGENT = "exchange-partner-client/1"


def region_of(answer: Mapping[str, Any]) -> str | None:
    """``answer["default_region"]`` of a ``me()`` answer as an ISO 3166 code; None if missing or malformed."""
    value = answer.get("default_region")
    try:
        return normalize_region(value) if isinstance(value, str) else None
    except NormalizationError:
        return None


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class ExchangeError(Exception):
    """Base class of every error the client raises after it has given up."""


class ApiError(ExchangeError):
    """The exchange answered with an error (a 4xx, or a 5xx/429 that persisted through every retry).

    ``status`` is the HTTP status; ``code``, ``message`` and ``details`` come from the API's error body
    ``{"error": {"code", "message", "details"}}`` (or are derived from the status when the body has none).
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class TransportError(ExchangeError):
    """The exchange could not be reached (connection refused, reset, timeout) through every retry."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would replay the Authorization header to wherever a redirect points; a partner API never
    # redirects, so a redirect means a wrong base URL and is reported instead of followed.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ExchangeClient:
    """A client for the exchange's Partner API v1.

    ``base_url`` is the exchange's root (``https://exchange.example.org``; ``/api/v1/...`` is appended) and
    ``api_key`` the platform's API key, sent as ``Authorization: Bearer <key>`` and never logged.

    Every request is retried on connection errors, timeouts, 5xx and 429 up to ``max_retries`` times, with
    exponential backoff (``backoff_base * 2**attempt`` seconds, capped at ``backoff_max``) and jitter; a
    ``Retry-After`` header on a 429/503 is honoured (capped at ``max_retry_after``). Other 4xx answers are
    final and raise ``ApiError`` at once. ``sleep`` and ``jitter`` are injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http:// or https:// URL")
        if not api_key or any(ch.isspace() for ch in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        if max_retries < 0:
            raise ValueError("max_retries must be zero or more")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._jitter = jitter
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:
        return f"ExchangeClient({self.base_url!r}, api_key=<hidden>)"

    # --- the API ------------------------------------------------------------------------------------------

    def submit_batch(
        self, sellers: Sequence[SellerReport | Mapping[str, Any]], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit one batch of seller reports; return the exchange's answer (``submission``, counts, ...).

        ``sellers`` are ``SellerReport`` objects or payload dicts (``seller_ref``, ``status``, ``reasons``,
        ``reported_at``, ``indicators``: ``[{"kind", "hash"}]``). The exchange validates a batch as a whole
        and accepts at most 1000 sellers. ``idempotency_key`` defaults to a new UUID4; the same key is sent
        on every retry, so a batch whose first attempt did reach the exchange is stored exactly once. Pass
        your own key to resume safely after a crash.
        """
        key = idempotency_key or str(uuid.uuid4())
        if not is_idempotency_key(key):
            raise ValueError(f"idempotency_key must be {IDEMPOTENCY_KEY_RULE}")
        payload = {"sellers": [seller_payload(seller) for seller in sellers]}
        return self._request("POST", "submissions/", payload, headers={"Idempotency-Key": key})

    def lookup(self, indicators: Iterable[Indicator | Mapping[str, str]]) -> dict[str, Any]:
        """Screen hashed indicators: whether each is linked to sellers reported by other platforms.

        ``indicators`` are ``Indicator`` objects (of any kind: exact, ``Indicator.of_photo``,
        ``Indicator.of_document``, or a fuzzy ``encoding``) or ``{"kind", "hash"}`` dicts (use
        ``exchange.normalization.transport_hash`` to compute the hash). A document's result also says how many
        of the matching sellers were reported for ``falsified_documents`` (``reported_falsified``). Lookups
        count against a quota.
        """
        payload = {"indicators": [indicator_payload(indicator) for indicator in indicators]}
        return self._request("POST", "lookups/", payload)

    def me(self) -> dict[str, Any]:
        """The calling key's platform, scopes and the exchange's limits (``GET /api/v1/me/``)."""
        return self._request("GET", "me/", None)

    def limits(self) -> Limits:
        """The exchange's live limits (batch size, indicators per seller and per lookup), from ``me()``;
        the contract's defaults for whatever the exchange does not report, and when the exchange refuses to
        say (a key without the ``read`` scope, an exchange without ``/me/``). Raises ``TransportError`` when
        the exchange cannot be reached."""
        try:
            return Limits.from_answer(self.me())
        except ApiError:
            return Limits()

    def settings(self) -> tuple[Limits, str | None]:
        """The exchange's limits (as ``limits()``) and the platform's default region (``region_of``), from one
        ``me()``; the defaults and None when the exchange refuses to say."""
        try:
            answer = self.me()
        except ApiError:
            return Limits(), None
        return Limits.from_answer(answer), region_of(answer)

    def default_region(self) -> str | None:
        """The platform's default region that the operator set (``default_region`` of ``me()``), or None."""
        return self.settings()[1]

    def retract(self, seller_ref: str, reason: str) -> dict[str, Any]:
        """Retract the report of one of your sellers (e.g. after a successful appeal); it stops linking."""
        if not seller_ref:
            raise ValueError("seller_ref must not be empty")
        path = f"sellers/{urllib.parse.quote(seller_ref, safe='')}/retract/"
        return self._request("POST", path, {"reason": reason})

    def appeal(
        self,
        seller_ref: str,
        outcome: str,
        documents: Sequence[tuple[str, bool | None]] = (),
        note: str | None = None,
    ) -> dict[str, Any]:
        """Record the appeal of one of your sellers, or update it: `outcome` is pending, upheld (the ban is
        lifted: the exchange retracts the report) or rejected. `documents` are the appeal's files as
        (SHA-256 of the file, `file_sha256`; whether you found it falsified, None for unchanged): only the
        hashes are sent. The answer's `document_checks` says, per document, whether another platform reported
        it falsified and how many did; each document counts against the key's daily lookup quota."""
        if not seller_ref:
            raise ValueError("seller_ref must not be empty")
        if outcome not in APPEAL_OUTCOMES:
            raise ValueError(f"outcome must be one of: {', '.join(APPEAL_OUTCOMES)}")
        if len(documents) > MAX_APPEAL_DOCUMENTS:
            raise ValueError(f"at most {MAX_APPEAL_DOCUMENTS} documents per request")
        body: dict[str, Any] = {"outcome": outcome}
        if documents:
            if not all(is_transport_hash(sha256) for sha256, _ in documents):
                raise ValueError("a document is the SHA-256 of its file: 64 lowercase hex characters")
            body["documents"] = [
                {"sha256": sha256} if falsified is None else {"sha256": sha256, "falsified": falsified}
                for sha256, falsified in documents
            ]
        if note is not None:
            body["note"] = note
        return self._request("POST", f"sellers/{urllib.parse.quote(seller_ref, safe='')}/appeals/", body)

    # --- plumbing -----------------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/{path}"
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode("utf-8")
        request_headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=body, headers=request_headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return _parse_success(response.status, response.read())
            except urllib.error.HTTPError as exc:
                status = exc.code
                error_body = _read_quietly(exc)
                if status not in RETRYABLE_STATUSES or attempt >= self.max_retries:
                    raise _api_error(status, error_body, exc.headers.get("Location")) from None
                delay = self._retry_after(exc.headers.get("Retry-After"))
                if delay is None:
                    delay = self._backoff(attempt)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if attempt >= self.max_retries or _is_permanent(exc):
                    raise TransportError(
                        f"cannot reach the exchange at {self.base_url} after {attempt + 1} attempts: "
                        f"{_describe_transport_error(exc)}"
                    ) from None
                delay = self._backoff(attempt)
            attempt += 1
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential delay is fixed, half random, so retries of many clients
        # spread out but never hammer the exchange immediately.
        delay = min(self.backoff_max, self.backoff_base * 2**attempt)
        return delay / 2 + self._jitter() * delay / 2

    def _retry_after(self, header: str | None) -> float | None:
        if not header:
            return None
        header = header.strip()
        if header.isdigit():
            seconds = float(header)
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        return min(max(seconds, 0.0), self.max_retry_after)


def seller_payload(seller: SellerReport | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object the API expects for one seller."""
    if isinstance(seller, SellerReport):
        return seller.to_payload()
    return dict(seller)


def indicator_payload(indicator: Indicator | Mapping[str, str]) -> dict[str, Any]:
    """The JSON object the API expects for one indicator."""
    if isinstance(indicator, Indicator):
        return indicator.to_payload()
    return {"kind": indicator["kind"], "hash": indicator["hash"]}


def _parse_success(status: int, raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(
            status, "invalid_response", "the exchange answered with something that is not JSON"
        ) from None
    return data if isinstance(data, dict) else {"data": data}


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _api_error(status: int, raw: bytes, location: str | None) -> ApiError:
    if 300 <= status < 400:
        return ApiError(
            status,
            "redirect",
            f"the exchange redirected to {location or 'another URL'}; check the base URL (http vs https?)",
        )
    try:
        error = json.loads(raw)["error"]
        return ApiError(status, str(error["code"]), str(error["message"]), error.get("details"))
    except (ValueError, KeyError, TypeError):
        reason = http.client.responses.get(status, "error")
        return ApiError(status, f"http_{status}", f"{reason} (the answer carried no API error body)")


def _unwrap(exc: BaseException) -> BaseException:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return exc.reason
    return exc


def _is_permanent(exc: BaseException) -> bool:
    # A certificate that does not verify will not verify on the next attempt either.
    return isinstance(_unwrap(exc), ssl.SSLCertVerificationError)


def _describe_transport_error(exc: BaseException) -> str:
    exc = _unwrap(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as an appeal's document is sent (the file itself never is)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
