"""Event time: timezone-aware UTC datetimes on the outside, integer microseconds since the Unix epoch
inside (Avro timestamp-micros, index columns). Integer arithmetic only: a float would round µs away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# What a datetime can hold (years 1 to 9999): larger Avro longs encode but cannot be read back as times.
MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // _US
MAX_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // _US


def to_micros(when: datetime) -> int:
    """µs since the epoch of an aware datetime; a naive one is refused, as its zone is a guess."""
    if when.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware (UTC)")
    return (when - EPOCH) // _US


def iso_from_micros(us: int) -> str:
    """ISO-8601 with a Z, exact to the microsecond (9999-12-31T23:59:59.999999Z stays in year 9999)."""
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")
