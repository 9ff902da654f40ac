"""The integrity chain end to end on the embedded store: leaves grow with the index, checkpoints are
signed, proofs verify offline, and each kind of tampering is detected and located."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lineage_api.services import Services, open_services
from lineage_api.settings import Settings
from producers import ModelCall, Output, Prompt, Recorder
from streams.chain import Checkpoint
from streams.merkle import leaf_hash
from streams.proofs import NotCoveredYetError, output_proof, verify_proof
from streams.signing import SigningKey
from streams.verify import verify_partition


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Services]:
    services = open_services(Settings(data_dir=tmp_path, checkpoint_every_events=25, checkpoint_seconds=3600))
    yield services
    services.close()


def record(services: Services, n: int) -> list[str]:
    with Recorder(log_url=services.settings.resolved_log_url) as recorder:
        ids = [recorder.record(feature="day-ahead-load", prompt=Prompt(template_id="t", messages=()),
                               model=ModelCall(provider="p", requested="m"), output=Output(text=f"forecast {i}"))
               for i in range(n)]
    services.runner.catch_up()
    return ids


def verify(services: Services) -> list[str]:
    report = verify_partition(services.log, services.engine, services.public_keys)
    return [str(p) for p in report.problems]


def raw_log(services: Services) -> sqlite3.Connection:
    """The attacker's view: a direct connection, with the append-only triggers dropped."""
    conn = sqlite3.connect(services.settings.data_dir / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


def test_a_clean_store_verifies_and_checkpoints_are_signed_every_n_records(store: Services) -> None:
    record(store, 30)
    record(store, 30)
    assert verify(store) == []
    report = verify_partition(store.log, store.engine, store.public_keys)
    # Checked after each batch: one checkpoint per 30-record round, each also a ChainCheckpoint event.
    assert report.checkpoints == 2 and report.records == store.log.end_offset() == 62
    key_file = store.settings.resolved_signing_key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_altering_one_byte_of_a_stored_event_is_located(store: Services) -> None:
    ids = record(store, 40)
    offset = store.reader.output(ids[10])["log_position"]["offset"]
    with raw_log(store) as conn:
        value = bytearray(conn.execute("SELECT value FROM events WHERE seq = ?", (offset,)).fetchone()[0])
        value[-3] ^= 0x01
        conn.execute("UPDATE events SET value = ? WHERE seq = ?", (bytes(value), offset))
    problems = verify(store)
    assert problems and problems[0].startswith(f"partition 0 offset {offset} event ")
    assert "bytes differ" in problems[0]


def test_deleting_a_log_record_is_located(store: Services) -> None:
    record(store, 40)
    with raw_log(store) as conn:
        conn.execute("DELETE FROM events WHERE seq = 12")
    problems = verify(store)
    assert problems and "offset 12" in problems[0] and "missing" in problems[0]


def test_reordering_two_events_is_located_at_the_first_of_them(store: Services) -> None:
    record(store, 40)
    with raw_log(store) as conn:
        a, b = (conn.execute("SELECT value FROM events WHERE seq = ?", (s,)).fetchone()[0] for s in (5, 6))
        conn.execute("UPDATE events SET value = ? WHERE seq = 5", (b,))
        conn.execute("UPDATE events SET value = ? WHERE seq = 6", (a,))
    problems = verify(store)
    assert problems[0].startswith("partition 0 offset 5 event ")


def test_a_forged_checkpoint_is_detected(store: Services) -> None:
    record(store, 40)
    with sqlite3.connect(store.settings.data_dir / "index.db") as conn:
        size, body = conn.execute("SELECT tree_size, signed_body FROM checkpoints ORDER BY tree_size").fetchone()
        forged = json.loads(body) | {"root_hash": "00" * 32}
        conn.execute("UPDATE checkpoints SET root_hash = ?, signed_body = ? WHERE tree_size = ?",
                     ("00" * 32, json.dumps(forged, sort_keys=True, separators=(",", ":")), size))
    problems = verify(store)
    assert any(f"checkpoint at tree size {size}" in p and "root differs" in p for p in problems)
    assert any("signature does not verify" in p for p in problems)


def test_a_checkpoint_signed_with_another_key_is_detected(store: Services) -> None:
    record(store, 40)
    intruder = SigningKey.from_private(Ed25519PrivateKey.generate())
    with sqlite3.connect(store.settings.data_dir / "index.db") as conn:
        row = conn.execute("SELECT tree_size, signed_body FROM checkpoints ORDER BY tree_size").fetchone()
        body = json.loads(row[1]) | {"key_id": intruder.key_id}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        conn.execute("UPDATE checkpoints SET key_id = ?, signed_body = ?, signature = ? WHERE tree_size = ?",
                     (intruder.key_id, text, intruder.sign(text.encode()), row[0]))
    problems = verify(store)
    assert any(f"signed with unknown key {intruder.key_id}" in p for p in problems)


def test_an_altered_index_copy_is_detected(store: Services) -> None:
    ids = record(store, 30)
    with sqlite3.connect(store.settings.data_dir / "index.db") as conn:
        body = conn.execute("SELECT body FROM outputs WHERE output_id = ?", (ids[3],)).fetchone()[0]
        conn.execute("UPDATE outputs SET body = ? WHERE output_id = ?", (body[:-1] + b"X", ids[3]))
    problems = verify(store)
    assert any(f"copy of output {ids[3]} differs" in p for p in problems)


def test_a_proof_verifies_offline_and_fails_when_tampered(store: Services) -> None:
    ids = record(store, 60)
    proof = output_proof(store.engine, ids[7], store.public_keys)
    assert verify_proof(proof, store.public_keys) == []
    assert leaf_hash(base64.b64decode(proof["event"])).hex() == proof["leaf_hash"]
    tampered = json.loads(json.dumps(proof))
    event = bytearray(base64.b64decode(tampered["event"]))
    event[-1] ^= 1
    tampered["event"] = base64.b64encode(bytes(event)).decode()
    assert any("altered" in p for p in verify_proof(tampered, store.public_keys))
    other = SigningKey.from_private(Ed25519PrivateKey.generate())
    assert any("no trusted public key" in p for p in verify_proof(proof, {other.key_id: "x"}))


def test_a_consistency_proof_links_an_earlier_checkpoint_to_the_newest(store: Services) -> None:
    ids = record(store, 30)
    first = json.loads(output_proof(store.engine, ids[0], store.public_keys)["checkpoint"]["signed_body"])
    record(store, 40)
    proof = output_proof(store.engine, ids[0], store.public_keys, from_size=first["tree_size"])
    assert proof["tree_size"] > first["tree_size"]
    assert verify_proof(proof, store.public_keys, from_root=first["root_hash"]) == []
    assert any("does not extend" in p for p in verify_proof(proof, store.public_keys, from_root="11" * 32))


def test_an_output_not_yet_covered_by_a_checkpoint_is_a_clear_409_error(store: Services) -> None:
    record(store, 3)  # the first records are signed at once: there was no checkpoint before
    ids = record(store, 3)  # below the 25-record cadence, and the time cadence is an hour
    with pytest.raises(NotCoveredYetError, match="not covered by a signed checkpoint yet"):
        output_proof(store.engine, ids[0], store.public_keys)
    cp = store.checkpointer.checkpoint(0)
    assert isinstance(cp, Checkpoint) and cp.tree_size == store.log.end_offset() - 1
    assert verify_proof(output_proof(store.engine, ids[0], store.public_keys), store.public_keys) == []


def test_a_replayed_batch_does_not_add_leaves_twice(store: Services) -> None:
    record(store, 20)
    with sqlite3.connect(store.settings.data_dir / "index.db") as conn:
        conn.execute("UPDATE consumer_positions SET next_offset = 5")  # as if the last commits were lost
    store.runner.catch_up()
    assert verify(store) == []


def test_an_idle_store_does_not_sign_checkpoints_of_its_own_checkpoints(tmp_path: Path) -> None:
    """Each checkpoint appends a ChainCheckpoint record; that alone must not make the time trigger fire."""
    clock = [1_000.0]
    services = open_services(Settings(data_dir=tmp_path, checkpoint_every_events=1_000, checkpoint_seconds=1))
    services.checkpointer.clock = lambda: clock[0]
    try:
        record(services, 5)  # first checkpoint: nothing was signed before
        for _ in range(5):  # idle: time passes, the runner polls
            clock[0] += 10
            services.runner.catch_up()
            services.runner._maybe_checkpoint()
        with sqlite3.connect(tmp_path / "index.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 1
        record(services, 1)  # a real record: the next tick signs again
        clock[0] += 10
        services.runner._maybe_checkpoint()
        with sqlite3.connect(tmp_path / "index.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 2
    finally:
        services.close()
