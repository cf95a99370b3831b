"""Error reports to Sentry (or any Sentry-compatible receiver: GlitchTip, Bugsink) when `SENTRY_DSN` is set.

An error report must carry no more than a log line may: no identifier, hash, token, key or seller reference.
So the SDK is set up to send what locates a bug and nothing a partner sent: the exception's type and its
stack (files, functions, line numbers, the source lines), the release and the environment. Dropped before
anything leaves the process: the exception's message (it may quote a value), local variables, the request
(URL, query string, headers, cookies, body), the user, breadcrumbs (log messages such as Django's
"Not Found: <path>"), and performance traces.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration

KEPT_FRAME_FIELDS = ("filename", "module", "function", "lineno", "abs_path", "in_app", "context_line")


def scrub(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Keep the event's type and stack only (see the module docstring)."""
    kept: dict[str, Any] = {
        key: event[key]
        for key in ("event_id", "timestamp", "platform", "level", "logger", "release", "environment", "sdk")
        if key in event
    }
    exceptions = []
    for exception in (event.get("exception") or {}).get("values") or []:
        frames = [
            {field: frame[field] for field in KEPT_FRAME_FIELDS if field in frame}
            for frame in (exception.get("stacktrace") or {}).get("frames") or []
        ]
        exceptions.append(
            {
                "type": exception.get("type"),
                "module": exception.get("module"),
                "stacktrace": {"frames": frames},
            }
        )
    if exceptions:
        kept["exception"] = {"values": exceptions}
    elif "logentry" in event or "message" in event:
        # A logged error without an exception: its template only (ours have no values in them), never the
        # formatted message.
        template = (event.get("logentry") or {}).get("message")
        kept["message"] = (
            template if isinstance(template, str) and "%" not in template else "(message dropped)"
        )
    return kept


def init(dsn: str, environment: str, release: str | None = None) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[DjangoIntegration(transaction_style="url")],
        send_default_pii=False,
        include_local_variables=False,
        max_breadcrumbs=0,
        traces_sample_rate=0.0,
        before_send=scrub,  # type: ignore[arg-type]
        before_send_transaction=lambda event, hint: None,
    )
