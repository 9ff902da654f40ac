"""The integrity chain over HTTP: /v1/keys, /v1/checkpoints and /v1/outputs/{id}/proof on a real server,
checked with the published key only, and saved proofs checked offline by `lineage verify --proof`."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lineage_api.app import create_app
from lineage_api.services import open_services
from lineage_api.settings import Settings
from schemas.codec import Codec
from streams.proofs import verify_proof
from streams.signing import verify_signature
from tests.servers import inference_event, new_ids, run_cli, serve_app, wait_for

EVERY = 8  # checkpoint cadence in records; the time cadence is an hour, so only the count triggers one
ROUNDS, PER_ROUND = 3, 10


@dataclass(frozen=True)
class Chain:
    url: str
    data_dir: Path
    outputs: list[str]  # every output a checkpoint covers, in log order
    uncovered: str  # recorded after the newest checkpoint


def _checkpoints(client: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/v1/checkpoints").raise_for_status().json()["items"]
    return items


def _post(client: httpx.Client, n: int) -> list[str]:
    events = [inference_event(feature="chain-api", text=f"forecast {i}") for i in range(n)]
    assert client.post("/v1/events", json=events).status_code == 202
    return [e["event"]["output_id"] for e in events]


def _settled(client: httpx.Client) -> bool | None:
    """True once the runner is idle and no checkpoint is due: everything is chained, and the records after
    the newest checkpoint, besides its own ChainCheckpoint event, are fewer than the cadence."""
    before = _checkpoints(client)
    stats = client.get("/v1/stats").raise_for_status().json()
    after = _checkpoints(client)
    if before != after or stats["lag"] != 0 or not after:
        return None
    return True if 1 <= stats["log_end_offset"] - after[0]["tree_size"] <= EVERY else None


def _settle(client: httpx.Client) -> None:
    wait_for(lambda: _settled(client), timeout=15, what="the runner to index and checkpoint what was posted")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    data_dir = tmp_path_factory.mktemp("chain-api")
    settings = Settings(data_dir=data_dir, checkpoint_every_events=EVERY, checkpoint_seconds=3600)
    services = open_services(settings)
    with serve_app(create_app(services)) as url, httpx.Client(base_url=url, timeout=10) as client:
        outputs: list[str] = []
        for _ in range(ROUNDS):
            outputs += _post(client, PER_ROUND)
            _settle(client)
        # One record at a time until a checkpoint is taken: its last leaf is then the last output posted.
        count = len(_checkpoints(client))
        while len(_checkpoints(client)) == count:
            assert len(outputs) < ROUNDS * PER_ROUND + EVERY, "no checkpoint after EVERY more records"
            outputs += _post(client, 1)
            _settle(client)
        uncovered = _post(client, 1)[0]
        _settle(client)
        assert len(_checkpoints(client)) == count + 1, "the last record must stay uncovered"
        yield Chain(url, data_dir, outputs, uncovered)


@pytest.fixture(scope="module")
def client(chain: Chain) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=chain.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def published(client: httpx.Client) -> dict[str, str]:
    """key_id -> base64 public key, as an auditor takes it from /v1/keys."""
    return {k["key_id"]: k["public_key"] for k in client.get("/v1/keys").raise_for_status().json()["keys"]}


def _proof(client: httpx.Client, output_id: str, **params: int) -> dict[str, Any]:
    response = client.get(f"/v1/outputs/{output_id}/proof", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message: str = response.json()["error"]["message"]
    return message


def _flat(text: str) -> str:
    return " ".join(text.split())


# -- /v1/keys and /v1/checkpoints ----------------------------------------------------------------------------


def test_keys_returns_the_store_signing_key_with_an_id_derived_from_the_raw_key(
    chain: Chain, client: httpx.Client
) -> None:
    keys = client.get("/v1/keys").raise_for_status().json()["keys"]

    assert len(keys) == 1 and keys[0]["algorithm"] == "Ed25519"
    raw = base64.b64decode(keys[0]["public_key"], validate=True)
    assert len(raw) == 32
    assert keys[0]["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    private = serialization.load_pem_private_key((chain.data_dir / "signing-key.pem").read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    assert raw == private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_checkpoints_are_listed_newest_first_and_each_signature_verifies_with_the_published_key(
    client: httpx.Client, published: dict[str, str]
) -> None:
    items = _checkpoints(client)

    assert len(items) >= 3
    sizes = [cp["tree_size"] for cp in items]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert [cp["created_at"] for cp in items] == sorted((cp["created_at"] for cp in items), reverse=True)
    for cp in items:
        body = json.loads(cp["signed_body"])
        assert cp["signed_body"] == json.dumps(body, sort_keys=True, separators=(",", ":")), "not canonical"
        assert body == {
            "log": "llm_lineage.events.v1", "log_partition": 0, "tree_size": cp["tree_size"],
            "root_hash": cp["root_hash"], "first_offset": 0, "last_offset": cp["tree_size"] - 1,
            "timestamp_us": cp["created_at"], "key_id": cp["key_id"],
        }
        assert cp["key_id"] in published, f"checkpoint {cp['tree_size']} signed by an unpublished key"
        assert verify_signature(published[cp["key_id"]], cp["signed_body"].encode("utf-8"), cp["signature"])


# -- /v1/outputs/{id}/proof ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["first", "middle", "last covered"])
def test_a_proof_verifies_with_the_published_key_and_carries_the_logged_bytes(
    chain: Chain, client: httpx.Client, published: dict[str, str], which: str
) -> None:
    index = {"first": 0, "middle": len(chain.outputs) // 2, "last covered": len(chain.outputs) - 1}[which]
    output_id = chain.outputs[index]
    newest = _checkpoints(client)[0]

    proof = _proof(client, output_id)

    assert verify_proof(proof, published) == []
    assert proof["format"] == "llm-lineage-proof/1" and proof["output_id"] == output_id
    assert proof["log_partition"] == 0 and proof["leaf_index"] == proof["log_offset"]
    assert proof["tree_size"] == newest["tree_size"] and proof["checkpoint"]["signed_body"] == newest["signed_body"]
    assert proof["checkpoint"]["public_key"] == published[newest["key_id"]]
    assert "consistency" not in proof
    if which == "first":
        assert proof["leaf_index"] == 0
    if which == "last covered":
        assert proof["leaf_index"] == proof["tree_size"] - 1
    event = base64.b64decode(proof["event"], validate=True)
    assert proof["leaf_hash"] == hashlib.sha256(b"\x00" + event).hexdigest()
    with closing(sqlite3.connect(f"file:{chain.data_dir / 'log.db'}?mode=ro", uri=True)) as log:
        stored = log.execute("SELECT value FROM events WHERE seq = ?", (proof["log_offset"],)).fetchone()[0]
    assert event == stored, "the proof's event is not the record as stored in the log"
    assert Codec().decode(event).record["output_id"] == output_id


def test_from_size_adds_a_consistency_proof_from_each_earlier_checkpoint(
    chain: Chain, client: httpx.Client, published: dict[str, str]
) -> None:
    items = _checkpoints(client)
    newest = items[0]
    for cp in items:
        proof = _proof(client, chain.outputs[0], from_size=cp["tree_size"])

        consistency = proof["consistency"]
        assert (consistency["from_size"], consistency["to_size"]) == (cp["tree_size"], newest["tree_size"])
        if cp is newest:
            assert consistency["path"] == []
        assert verify_proof(proof, published, from_root=cp["root_hash"]) == [], cp["tree_size"]
    oldest = items[-1]
    proof = _proof(client, chain.outputs[0], from_size=oldest["tree_size"])
    problems = verify_proof(proof, published, from_root=items[-2]["root_hash"])
    assert any("does not extend" in p for p in problems), problems


def test_from_size_zero_is_a_4xx_json_error_naming_from_size(chain: Chain, client: httpx.Client) -> None:
    response = client.get(f"/v1/outputs/{chain.outputs[0]}/proof", params={"from_size": 0})

    assert 400 <= response.status_code < 500
    assert "from_size" in _error(response, response.status_code)


@pytest.mark.parametrize("beyond", [1, 1_000_000])
def test_from_size_beyond_the_signed_tree_is_a_400_naming_the_tree_size(
    chain: Chain, client: httpx.Client, beyond: int
) -> None:
    size = _checkpoints(client)[0]["tree_size"]

    response = client.get(f"/v1/outputs/{chain.outputs[0]}/proof", params={"from_size": size + beyond})

    message = _error(response, 400)
    assert f"from_size must be between 1 and {size}, got {size + beyond}" in message


def test_an_unknown_output_is_a_404_naming_its_id(client: httpx.Client) -> None:
    unknown = new_ids()[1]

    message = _error(client.get(f"/v1/outputs/{unknown}/proof"), 404)

    assert unknown in message


def test_an_output_recorded_after_the_newest_checkpoint_is_a_409_not_covered_yet(
    chain: Chain, client: httpx.Client
) -> None:
    assert client.get(f"/v1/outputs/{chain.uncovered}").status_code == 200  # indexed, only not yet signed

    response = client.get(f"/v1/outputs/{chain.uncovered}/proof")

    message = _error(response, 409)
    assert chain.uncovered in message and "not covered" in message
    assert response.json()["error"]["type"] == "NotCoveredYetError"


# -- `lineage verify --proof` ------------------------------------------------------------------------------------


@pytest.fixture
def saved(chain: Chain, client: httpx.Client, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A proof of a middle output with a consistency part from the oldest checkpoint, saved as a user would."""
    oldest = _checkpoints(client)[-1]["tree_size"]
    proof = _proof(client, chain.outputs[len(chain.outputs) // 2], from_size=oldest)
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof), "utf-8")
    return path, proof


def test_a_saved_proof_passes_lineage_verify_with_the_published_key(
    saved: tuple[Path, dict[str, Any]], published: dict[str, str]
) -> None:
    path, proof = saved
    (key_id, key), = published.items()

    done = run_cli("verify", "--proof", str(path), "--key", key)

    assert done.returncode == 0, done.stdout + done.stderr
    out = _flat(done.stdout)
    assert "proof verifies" in out and proof["output_id"] in out and f"a trusted key ({key_id})" in out


def _tamper_event(proof: dict[str, Any]) -> str:
    event = bytearray(base64.b64decode(proof["event"]))
    event[len(event) // 2] ^= 0x01
    proof["event"] = base64.b64encode(bytes(event)).decode("ascii")
    return "the record was altered"


def _tamper_path(proof: dict[str, Any]) -> str:
    first = proof["inclusion_path"][0]
    proof["inclusion_path"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    return "the inclusion path does not lead to the signed root"


@pytest.mark.parametrize("tamper", [_tamper_event, _tamper_path], ids=["event byte", "path hash"])
def test_a_tampered_proof_fails_lineage_verify_naming_the_problem(
    saved: tuple[Path, dict[str, Any]], published: dict[str, str], tmp_path: Path, tamper: Any
) -> None:
    _, proof = saved
    expected = tamper(proof)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(proof), "utf-8")

    done = run_cli("verify", "--proof", str(path), "--key", next(iter(published.values())))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "proof does not verify" in _flat(done.stdout) and expected in _flat(done.stdout)


def test_lineage_verify_with_a_different_key_rejects_the_proof(
    saved: tuple[Path, dict[str, Any]], published: dict[str, str]
) -> None:
    path, _ = saved
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    done = run_cli("verify", "--proof", str(path), "--key", base64.b64encode(other).decode("ascii"))

    assert done.returncode == 1, done.stdout + done.stderr
    (key_id,) = published
    assert f"no trusted public key for key_id {key_id}" in _flat(done.stdout)


def test_lineage_verify_from_root_checks_the_consistency_part(
    saved: tuple[Path, dict[str, Any]], published: dict[str, str], client: httpx.Client
) -> None:
    path, proof = saved
    oldest = _checkpoints(client)[-1]
    assert proof["consistency"]["from_size"] == oldest["tree_size"]
    key = next(iter(published.values()))

    good = run_cli("verify", "--proof", str(path), "--key", key, "--from-root", oldest["root_hash"])
    bad = run_cli("verify", "--proof", str(path), "--key", key, "--from-root", "11" * 32)

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"does not extend the earlier root at size {oldest['tree_size']}" in _flat(bad.stdout)


def _corrupt_root(proof: dict[str, Any]) -> list[str]:
    body = json.loads(proof["checkpoint"]["signed_body"])
    proof["checkpoint"]["signed_body"] = json.dumps(body | {"root_hash": "not-a-hash"}, separators=(",", ":"))
    return []


def _corrupt_consistency(proof: dict[str, Any]) -> list[str]:
    proof["consistency"]["path"] = ["not-a-hash"]
    return ["--from-root", "00" * 32]


@pytest.mark.parametrize("corrupt", [_corrupt_root, _corrupt_consistency],
                         ids=["non-hex signed root", "non-hex consistency hash"])
def test_a_malformed_proof_is_reported_as_not_verifying_without_a_traceback(
    saved: tuple[Path, dict[str, Any]], published: dict[str, str], tmp_path: Path, corrupt: Any
) -> None:
    _, proof = saved
    extra = corrupt(proof)
    path = tmp_path / "malformed.json"
    path.write_text(json.dumps(proof), "utf-8")

    done = run_cli("verify", "--proof", str(path), "--key", next(iter(published.values())), *extra)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "proof does not verify" in _flat(done.stdout)
