"""Log formatters under which one record is exactly one line and no logged value can add a key to it.

Log lines are `ts=... level=... logger=... <fields>` (logfmt). The exchange's own loggers (`exchange.*`) write
message templates such as ``"event=auth_failed path=%s ip=%s"``: the template is code, the arguments are
whatever a partner or visitor sent, so every argument is rendered bare when it is a plain token and
otherwise double-quoted with `"`, `\\` and every non-printable character (newline, carriage return, ESC,
NUL, U+2028, ...) escaped. Any other logger (Django's `django.request` "Not Found: %s", `django.security`,
libraries) writes free text, which becomes one quoted `msg=` value; exception and stack text become `exc=`
and `stack=`. So a path ending in ``%0Ats=... level=ERROR`` shows up as ``path="...\\nts=... level=ERROR"``:
one line, one `level`. Templates must therefore never interpolate values themselves (no f-strings).

`LOG_FORMAT=json` selects `JsonFormatter` instead: one JSON object per line, ASCII only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from numbers import Number
from typing import Any

import exchange.requestid  # noqa: F401  (stamps every log record with the request id)

TRUSTED_TEMPLATE_LOGGERS = "exchange"  # this logger and its children log key=value templates
_NOT_BARE = frozenset(' ="\\')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape_controls(text: str) -> str:
    """`text` with only its non-printable characters escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


def escape(text: str) -> str:
    """`text` with quotes, backslashes and every non-printable character escaped (spaces kept)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(map(_escape_char, text))


def quote(value: object) -> str:
    """One logfmt value: bare when it is a non-empty printable token without space, `=` or quotes."""
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and _NOT_BARE.isdisjoint(text):
        return text
    return f'"{escape(text)}"'


class _Quoted:
    """An argument as it appears in a line: `%s` and `%r` both give the quoted form."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return quote(self.value)

    __repr__ = __str__


def _quoted(value: object) -> object:
    # Numbers keep their type so that %d and %.2f still work; their text is always a bare token.
    return value if isinstance(value, Number) else _Quoted(value)


def _utc_timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{int(record.msecs):03d}Z"


def _is_trusted(record: logging.LogRecord) -> bool:
    name = record.name
    trusted = name == TRUSTED_TEMPLATE_LOGGERS or name.startswith(TRUSTED_TEMPLATE_LOGGERS + ".")
    return trusted and isinstance(record.msg, str)


class KeyValueFormatter(logging.Formatter):
    """`ts=<ISO 8601 UTC> level=<LEVEL> logger=<name> <fields>`, one line per record (see module docstring)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        if _is_trusted(record):
            args: Any = record.args
            if isinstance(args, Mapping):
                args = {key: _quoted(value) for key, value in args.items()}
            elif args:
                args = tuple(_quoted(value) for value in args)
            # The template is ours, but a stray newline in it must not split the record either.
            fields = _escape_controls(record.msg % args if args else record.msg)
        else:
            fields = f"msg={quote(record.getMessage())}"
        line = f"ts={self.formatTime(record)} level={quote(record.levelname)} logger={quote(record.name)} {fields}"
        request_id = getattr(record, "request_id", None)
        if request_id:  # ours, 32 hex digits (or a proxy's of that shape): nothing to quote
            line += f" request_id={request_id}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += f" exc={quote(record.exc_text)}"
        if record.stack_info:
            line += f" stack={quote(self.formatStack(record.stack_info))}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (arguments filled in), the request id when serving a
    request, and exc/stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": _utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            data["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii escapes every non-ASCII character, U+2028 and U+0085 included: always one line.
        return json.dumps(data, ensure_ascii=True, default=str)
