"""UUIDv7 event IDs, output IDs derived from them, canonical JSON and content hashes."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from schemas.hashing import canonical_json, sha256_hex
from schemas.ids import (
    event_id_text,
    new_event_id,
    output_id_from,
    timestamp_from_uuid7,
    uuid7_at,
    uuid7_bytes,
)

BASE32HEX_LOWER = set("0123456789abcdefghijklmnopqrstuv")


def assert_uuid7(raw: bytes) -> None:
    assert len(raw) == 16
    assert raw[6] >> 4 == 0x7, f"version nibble is {raw[6] >> 4:x}, not 7"
    assert raw[8] >> 6 == 0b10, "variant bits are not the RFC 9562 variant 10"
    parsed = uuid.UUID(bytes=raw)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


# -- UUIDv7 ---------------------------------------------------------------------------------------------


def test_uuid7_bytes_have_version_7_and_rfc_variant() -> None:
    for _ in range(200):
        assert_uuid7(uuid7_bytes())


def test_uuid7_at_has_version_7_and_rfc_variant() -> None:
    for _ in range(200):
        assert_uuid7(uuid7_at(time.time_ns()))


def test_uuid7_bytes_embeds_the_current_unix_millisecond() -> None:
    before_ms = time.time_ns() // 1_000_000
    raw = uuid7_bytes()
    after_ms = time.time_ns() // 1_000_000
    # The monotonic clamp may push an ID a few ms ahead of the clock, never behind it.
    assert before_ms <= timestamp_from_uuid7(raw) <= after_ms + 5


def test_ids_made_in_a_tight_loop_are_strictly_increasing() -> None:
    ids = [uuid7_bytes() for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))


def test_ids_stay_increasing_when_the_same_millisecond_counter_runs_out() -> None:
    # Thousands of IDs stamped with one clock reading exhaust the 12-bit counter and borrow the next ms.
    fixed_ns = time.time_ns()
    ids = [uuid7_bytes(fixed_ns) for _ in range(6000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert timestamp_from_uuid7(ids[-1]) > timestamp_from_uuid7(ids[0])
    for raw in ids[::500]:
        assert_uuid7(raw)


def test_ids_stay_increasing_when_the_clock_goes_backwards() -> None:
    now_ns = time.time_ns()
    first = uuid7_bytes(now_ns)
    earlier = uuid7_bytes(now_ns - 10_000_000_000)  # the wall clock stepped back 10 s
    assert earlier > first
    assert timestamp_from_uuid7(earlier) >= timestamp_from_uuid7(first)


def test_ids_from_many_threads_are_unique_and_increasing_per_thread() -> None:
    results: dict[int, list[bytes]] = {}

    def make(n: int) -> None:
        results[n] = [uuid7_bytes() for _ in range(3000)]

    threads = [threading.Thread(target=make, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [raw for ids in results.values() for raw in ids]
    assert len(set(everything)) == len(everything)
    for ids in results.values():
        assert all(a < b for a, b in itertools.pairwise(ids))


def test_uuid7_at_embeds_the_given_millisecond() -> None:
    for when in (
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 13, 5, 7, 123456, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        when_ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
        assert timestamp_from_uuid7(uuid7_at(when_ns)) == when_ns // 1_000_000


def test_uuid7_at_does_not_move_the_monotonic_clock() -> None:
    # A backfilled event stamped in the future must not drag later live IDs into the future.
    uuid7_at(time.time_ns() + 3_600_000_000_000)
    live_ms = timestamp_from_uuid7(uuid7_bytes())
    assert live_ms <= time.time_ns() // 1_000_000 + 5


def test_event_id_text_is_canonical_uuid_text() -> None:
    raw = uuid7_bytes()
    text = event_id_text(raw)
    assert len(text) == 36
    assert text == text.lower()
    assert uuid.UUID(text).bytes == raw
    assert uuid.UUID(new_event_id()).version == 7


# -- output IDs -----------------------------------------------------------------------------------------


def test_output_id_shape() -> None:
    oid = output_id_from(uuid7_bytes())
    assert oid.startswith("out_")
    assert len(oid) == 30
    assert set(oid[4:]) <= BASE32HEX_LOWER


def test_output_id_decodes_back_to_the_same_bytes() -> None:
    raw = uuid7_bytes()
    body = output_id_from(raw)[4:].upper()
    assert base64.b32hexdecode(body + "=" * (-len(body) % 8)) == raw


def test_output_ids_sort_like_their_bytes() -> None:
    rng = random.Random(7)
    raws = [rng.randbytes(16) for _ in range(2000)]
    raws += [bytes(16), b"\xff" * 16, b"\x00" * 15 + b"\x01", b"\x7f" + b"\xff" * 15, b"\x80" + bytes(15)]
    by_bytes = sorted(raws)
    by_output_id = sorted(raws, key=output_id_from)
    assert by_output_id == by_bytes


def test_output_ids_made_in_a_loop_sort_in_creation_order() -> None:
    ids = [output_id_from(uuid7_bytes()) for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


# -- canonical JSON and hashes ----------------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level_without_whitespace() -> None:
    value = {"b": 1, "a": {"d": [3, {"z": 1, "y": 2}], "c": 2}}
    assert canonical_json(value) == '{"a":{"c":2,"d":[3,{"y":2,"z":1}]},"b":1}'


def test_canonical_json_ignores_insertion_order() -> None:
    one = {"temperature": 0.2, "model": "m", "stop": ["\n"]}
    two = {"stop": ["\n"], "model": "m", "temperature": 0.2}
    assert canonical_json(one) == canonical_json(two)
    assert sha256_hex(canonical_json(one)) == sha256_hex(canonical_json(two))


def test_canonical_json_keeps_non_ascii_as_is() -> None:
    text = canonical_json({"city": "Zürich", "note": "⚡ Überlast", "jp": "電力"})
    assert "Zürich" in text and "⚡ Überlast" in text and "電力" in text
    assert "\\u" not in text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_refuses_values_with_no_json_form(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": [1, bad]})


def test_sha256_hex_of_text_equals_hash_of_its_utf8_bytes() -> None:
    text = "Lastprognose für Zürich ⚡"
    assert sha256_hex(text) == sha256_hex(text.encode("utf-8"))
    assert sha256_hex(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert sha256_hex(text) != sha256_hex(text.encode("latin-1", errors="replace"))


def test_sha256_hex_known_vector() -> None:
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
