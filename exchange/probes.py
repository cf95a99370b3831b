"""Health probes answered before host validation and the HTTPS redirect.

A load balancer's or an orchestrator's probe talks plain HTTP inside the network, to the container's own
address: in production settings Django would answer it 301 (SECURE_SSL_REDIRECT) or 400 (the Host header is
not in ALLOWED_HOSTS). `/healthz` says only that the process is up, carries no data and needs no
authentication, so this middleware answers it first, whatever the scheme and Host; every other path still
goes through SecurityMiddleware and host validation.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

PROBE_PATHS = frozenset({"/healthz"})


class ProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in PROBE_PATHS:
            return self.get_response(request)
        if request.method not in {"GET", "HEAD"}:
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return JsonResponse({"status": "ok"})
