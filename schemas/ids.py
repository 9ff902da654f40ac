"""Time-ordered identifiers: UUIDv7 event IDs and the output IDs derived from them."""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_seq = 0
_rand = random.SystemRandom()


def uuid7_at(when_ns: int) -> bytes:
    """A UUIDv7 for an explicit time (a backfilled or simulated event): no monotonic clamp, random counter."""
    value = ((when_ns // 1_000_000) << 80) | (0x7 << 76) | (_rand.getrandbits(12) << 64) | (0b10 << 62)
    return (value | _rand.getrandbits(62)).to_bytes(16, "big")


def uuid7_bytes(now_ns: int | None = None) -> bytes:
    """16 bytes of a UUIDv7 (RFC 9562): 48-bit Unix ms, version, 12-bit counter, variant, 62 random bits.

    The counter keeps IDs made in the same millisecond strictly increasing within this process, so index
    keys built from them append in order.
    """
    global _last_ms, _seq
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        if ms > _last_ms:
            _last_ms, _seq = ms, _rand.getrandbits(8)
        else:
            ms, _seq = _last_ms, _seq + 1
            if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _seq = _last_ms + 1, 0
                ms = _last_ms
        seq = _seq
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | _rand.getrandbits(62)
    return value.to_bytes(16, "big")


def event_id_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def output_id_from(raw: bytes) -> str:
    """'out_' + base32hex of the UUIDv7 bytes: 30 characters, lexicographic order == time order."""
    return "out_" + base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


def new_event_id() -> str:
    return event_id_text(uuid7_bytes())


def timestamp_from_uuid7(raw: bytes) -> int:
    """Unix milliseconds embedded in a UUIDv7."""
    return int.from_bytes(raw[:6], "big")
