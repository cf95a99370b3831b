"""A request id on every log line of a request, and on the response (`X-Request-ID`), to follow one request
through the logs (and, with a proxy, from the proxy's access log into ours).

The id is the exchange's own (32 random hex digits). A client's `X-Request-ID` is never used: whatever a
partner puts there would reach every log line, and nothing a partner sends may (a phone number makes a fine
"id"). Only with `EXCHANGE_TRUST_PROXY` on, a proxy's id is taken over when it has the shape of nginx's
`$request_id` or a UUID (hex digits and hyphens, nothing else), so the proxy's and our lines share it.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
PROXY_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current() -> str | None:
    """The id of the request being served in this context, or None (the worker, a management command)."""
    return _current.get()


def _stamp_records() -> None:
    """Every log record carries `request_id` from the moment it is made (formatters read it from the record,
    so a record formatted later, by another handler or thread, keeps the id of the request that made it)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = _current.get()
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_stamp_records()


def choose(request: HttpRequest) -> str:
    offered = request.headers.get(HEADER, "")
    if getattr(settings, "EXCHANGE_TRUST_PROXY", False) and PROXY_ID.fullmatch(offered):
        return offered
    return secrets.token_hex(16)


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = choose(request)
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request_id
        return response
