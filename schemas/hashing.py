"""Canonical bytes and content hashes. The same content must hash the same on every machine and release."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no insignificant whitespace, UTF-8 kept as is (not \\u-escaped).

    Close to RFC 8785 for the values we hash (strings, integers, finite floats, lists, objects). NaN and
    infinities are refused because they have no JSON form.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()
