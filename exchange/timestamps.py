"""A date-time a partner sends (a seller's `reported_at`, a `?updated_since=` filter): parsed and bounded.

Python accepts years 1-9999 and UTC offsets up to +-23:59; PostgreSQL stores less than that and cannot hand
back what falls outside its range, so a year-1 `reported_at` spread by `LEAST(...)` into first-seen values
made every page showing that seller a 500. Nothing the exchange does needs a time before it could have
existed or after now, so one function refuses both before anything reaches the database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

from exchange.contract import TIMESTAMP_CLOCK_SKEW, TIMESTAMP_EARLIEST, TIMESTAMP_MAX_OFFSET

# The bounds are partner-contract facts (exchange.contract), which the reference client checks too.
EARLIEST = TIMESTAMP_EARLIEST
CLOCK_SKEW = TIMESTAMP_CLOCK_SKEW  # a partner's clock may run this far ahead of ours
MAX_OFFSET = TIMESTAMP_MAX_OFFSET  # the widest UTC offset in use (Line Islands +14:00; -12:00 the other way)
EXAMPLE = "2026-05-01T12:00:00Z"
# The syntax, published as the schema's pattern and checked first here (one rule): an RFC 3339 date-time
# whose offset is an upper-case Z or within +-14:00, without a leap second. ASCII digits only: a regex
# engine's \d, and Django's fallback parser, read other scripts' digits (an offset of `+\u0661\u0664:00`).
PARTNER_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$"
)
_SYNTAX = re.compile(PARTNER_TIMESTAMP_PATTERN)


class PartnerTimestampError(ValueError):
    """Why a value is not an acceptable partner timestamp (the message never echoes the value)."""


def parse_partner_timestamp(value: object, now: datetime) -> datetime:
    """`value` as an aware UTC datetime, or PartnerTimestampError saying what is wrong with it.

    Accepted: `PARTNER_TIMESTAMP_PATTERN` (RFC 3339 with a timezone, offset within +-14:00), from 2000-01-01
    up to `now` plus a clock skew.
    """
    if not isinstance(value, str) or not _SYNTAX.fullmatch(value):
        if isinstance(value, str) and _SYNTAX.fullmatch(value + "Z"):
            raise PartnerTimestampError("must include a timezone (e.g. Z or +02:00)")
        raise PartnerTimestampError(f"must be an RFC 3339 date-time with a timezone, e.g. {EXAMPLE}")
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well-formed but impossible: month 13, February 30, offset +24:00
        raise PartnerTimestampError(f"is not a valid date-time (e.g. {EXAMPLE})") from None
    if parsed is None:
        raise PartnerTimestampError(f"must be an RFC 3339 date-time with a timezone, e.g. {EXAMPLE}")
    offset = parsed.utcoffset()
    if offset is None:
        raise PartnerTimestampError("must include a timezone (e.g. Z or +02:00)")
    if abs(offset) > MAX_OFFSET:
        raise PartnerTimestampError("has a UTC offset beyond +-14:00")
    # Aware comparisons subtract offsets without building a datetime, so they cannot overflow at year 1
    # or 9999; astimezone() could, hence it comes last.
    if parsed < EARLIEST:
        raise PartnerTimestampError(f"is before {EARLIEST:%Y-%m-%d}")
    if parsed > now + CLOCK_SKEW:
        raise PartnerTimestampError("is in the future")
    return parsed.astimezone(UTC)
