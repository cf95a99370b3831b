"""A date-time a partner sends (a seller's `reported_at`, a `?updated_since=` filter): parsed and bounded.

Python accepts years 1-9999 and UTC offsets up to +-23:59; PostgreSQL stores less than that and cannot hand
back what falls outside its range, so a year-1 `reported_at` spread by `LEAST(...)` into first-seen values
made every page showing that seller a 500. Nothing the exchange does needs a time before it could have
existed or after now, so one function refuses both before anything reaches the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils.dateparse import parse_datetime

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)  # a partner's clock may run this far ahead of ours
MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use (Line Islands +14:00; -12:00 the other way)
EXAMPLE = "2026-05-01T12:00:00Z"


class PartnerTimestampError(ValueError):
    """Why a value is not an acceptable partner timestamp (the message never echoes the value)."""


def parse_partner_timestamp(value: object, now: datetime) -> datetime:
    """`value` as an aware UTC datetime, or PartnerTimestampError saying what is wrong with it.

    Accepted: ISO-8601 with a timezone, offset within +-14:00, from 2000-01-01 up to `now` plus a clock skew.
    """
    # ASCII only: Django's fallback parser reads other scripts' digits (an offset of `+١٤:00`), the schema not.
    if not isinstance(value, str) or not value or not value.isascii():
        raise PartnerTimestampError(f"must be an ISO-8601 date-time with a timezone, e.g. {EXAMPLE}")
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well-formed but impossible: month 13, February 30, offset +24:00
        raise PartnerTimestampError(f"is not a valid date-time (e.g. {EXAMPLE})") from None
    if parsed is None:
        raise PartnerTimestampError(f"must be an ISO-8601 date-time with a timezone, e.g. {EXAMPLE}")
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
