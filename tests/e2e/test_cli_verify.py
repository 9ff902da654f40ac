"""`lineage verify` as an auditor runs it on a data dir: a clean demo store verifies, one altered byte in the
log is located by partition and offset, and an empty dir is not mistaken for a verified one."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.servers import run_cli

pytestmark = pytest.mark.e2e

OUTPUT_ID = re.compile(r"\bout_[0-9a-v]{26}\b")


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    output_id: str  # the first output the demo suggests tracing


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data_dir = tmp_path_factory.mktemp("verify-demo")
    done = run_cli("demo", "--no-serve", "--days", "1", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    return Demo(data_dir, OUTPUT_ID.findall(done.stdout)[0])


def _flat(text: str) -> str:
    """Whitespace collapsed, so a message reads the same however the terminal wrapped it."""
    return " ".join(text.split())


def _count(db: Path, table: str) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count


def test_verify_of_a_demo_store_exits_0_and_reports_its_records_and_checkpoints(demo: Demo) -> None:
    records = _count(demo.data_dir / "log.db", "events")
    checkpoints = _count(demo.data_dir / "index.db", "checkpoints")
    outputs = _count(demo.data_dir / "index.db", "outputs")
    assert records > 0 and checkpoints > 0

    done = run_cli("verify", "--data-dir", str(demo.data_dir))

    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"verified {records} records, {checkpoints} signed checkpoints and {outputs} indexed outputs: "
            "no problems") in _flat(done.stdout)


def test_one_altered_byte_in_the_log_is_named_by_partition_offset_and_event(demo: Demo, tmp_path: Path) -> None:
    data_dir = tmp_path / "tampered"
    shutil.copytree(demo.data_dir, data_dir)
    traced = run_cli("trace", demo.output_id, "--data-dir", str(data_dir), "--json")
    assert traced.returncode == 0, traced.stderr
    record = json.loads(traced.stdout)["output"]
    offset, text = record["log_position"]["offset"], record["output"]["text"].encode("utf-8")
    with closing(sqlite3.connect(data_dir / "log.db", isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("DROP TRIGGER events_no_delete")
        value = bytearray(conn.execute("SELECT value FROM events WHERE seq = ?", (offset,)).fetchone()[0])
        # Rewrite one digit of the forecast text: the record still decodes, only the number changed.
        start = value.find(text)
        assert start >= 0, "the output text is not stored verbatim in the event"
        at = start + next(i for i, ch in enumerate(text) if chr(ch).isdigit())
        value[at] = ord("9") if value[at] != ord("9") else ord("1")
        conn.execute("UPDATE events SET value = ? WHERE seq = ?", (bytes(value), offset))

    done = run_cli("verify", "--data-dir", str(data_dir))

    assert done.returncode == 1, done.stdout + done.stderr
    out = _flat(done.stdout)
    assert f"partition 0 offset {offset} event {record['event_id']}:" in out
    assert "bytes differ from what was chained" in out


def test_verify_pins_the_signing_key_it_is_given(demo: Demo) -> None:
    own = run_cli("verify", "--data-dir", str(demo.data_dir), "--key", str(demo.data_dir / "signing-key.pem"))
    other_raw = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    other = run_cli("verify", "--data-dir", str(demo.data_dir), "--key", base64.b64encode(other_raw).decode())

    assert own.returncode == 0, own.stdout + own.stderr
    assert other.returncode == 1, other.stdout + other.stderr
    assert "signed with unknown key" in _flat(other.stdout)


def test_verify_of_an_empty_dir_says_there_is_nothing_to_verify(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    done = run_cli("verify", "--data-dir", str(empty))

    assert done.returncode != 0
    assert "nothing to verify" in _flat(done.stdout + done.stderr)
    assert list(empty.iterdir()) == [], "verify must not create a store where there was none"


def test_verify_help_explains_proof_and_key() -> None:
    done = run_cli("verify", "--help")

    assert done.returncode == 0, done.stderr
    out = _flat(done.stdout)
    assert "--proof" in out and "Check one saved proof" in out and "offline" in out
    assert "--key" in out and "PEM file or base64 raw Ed25519 public key" in out
