"""One JSON error shape for every API error:

    {"error": {"code": "not_found", "message": "Human readable.", "details": {...} | null}}

`details` names the failing item and field for validation errors, e.g.
``{"sellers[3].indicators[1].hash": ["Not a transport hash: ..."]}``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger("exchange.api")

DEFAULT_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The exchange's database is unavailable; retry shortly."
    default_code = "service_unavailable"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict."
    default_code = "conflict"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _flatten(detail: Any, path: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail into {"sellers[0].status": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # DRF names a list's failing items by position: {1: {...}}
                child = f"{path}[{key}]"
                for k, v in _flatten(value, child).items():
                    out.setdefault(k, []).extend(v)
                continue
            name = key if key != "non_field_errors" else ""
            child = f"{path}.{name}" if path and name else (name or path)
            for k, v in _flatten(value, child).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[path or "body"] = [str(item) for item in detail]
        else:
            for index, value in enumerate(detail):
                if value:
                    for k, v in _flatten(value, f"{path}[{index}]").items():
                        out.setdefault(k, []).extend(v)
    else:
        out[path or "body"] = [str(detail)]
    return out


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, OperationalError | InterfaceError):
        # A database outage (restart, failover) is temporary: clients (ours included) retry a 503.
        logger.warning("event=database_unavailable error=%s", type(exc).__name__)
        unavailable = Response(
            error_body("service_unavailable", str(ServiceUnavailable.default_detail)), status=503
        )
        unavailable["Retry-After"] = "5"
        return unavailable
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = DEFAULT_CODES.get(response.status_code, "error")
    details: Any = None
    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        first_field, messages = next(iter(details.items()), ("body", ["Invalid input."]))
        message = f"{first_field}: {messages[0]}" if first_field != "body" else messages[0]
    elif isinstance(exc, exceptions.Throttled):
        wait = getattr(exc, "wait", None)
        message = "Request was throttled." + (f" Retry in {int(wait)} s." if wait else "")
        details = {"retry_after_seconds": int(wait) if wait is not None else None}
    else:
        detail: Any = exc.detail  # a dict's keys are str here: the views raise {"message", "code", ...}
        if isinstance(detail, dict):
            message = str(detail.get("message") or "Request failed.")
            details = {k: v for k, v in detail.items() if k not in {"message", "code"}} or None
            code = str(detail.get("code") or code)
        else:
            message = str(detail)
            code = getattr(detail, "code", None) or code
            if code in {"error", "invalid"} and response.status_code != 400:
                code = DEFAULT_CODES.get(response.status_code, code)
    response.data = error_body(code, message, details)
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_or_default_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def json_or_default_500(request: HttpRequest) -> HttpResponse:
    """Django's last resort for an exception nothing else handled, the admin's included. Called while the
    exception is being handled, so `sys.exc_info()` names it: a database outage (a restart, a failover; the
    session and login middleware meet it before any view) is a 503 to retry, not a 500."""
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        logger.warning("event=database_unavailable error=%s", type(sys.exc_info()[1]).__name__)
        if _is_api(request):
            response: HttpResponse = JsonResponse(
                error_body("service_unavailable", str(ServiceUnavailable.default_detail)), status=503
            )
        else:
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "5"
        return response
    if _is_api(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    from django.views.defaults import server_error

    return server_error(request)


def json_or_default_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(error_body("payload_too_large", "The request body is too large."), status=413)
        return JsonResponse(error_body("bad_request", "Bad request."), status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception or Exception())
