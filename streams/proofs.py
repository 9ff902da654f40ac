"""Proof bundles for auditors: an output's exact event bytes, its leaf in the partition's Merkle tree, the
audit path to a signed checkpoint, and optionally a consistency proof from an earlier tree size. The
format is documented in docs/proofs.md; `verify_proof` is the offline check `lineage verify --proof` runs."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from schemas.errors import IndexError_, InvalidRequestError, NotFoundError
from streams import tables as t
from streams.chain import node_getter
from streams.merkle import consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion
from streams.signing import verify_signature

FORMAT = "llm-lineage-proof/1"


class NotCoveredYetError(InvalidRequestError):
    """The output is indexed but no signed checkpoint covers it yet."""


def output_proof(
    engine: Engine, output_id: str, public_keys: dict[str, str], *, from_size: int | None = None
) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            return _build(conn, output_id, public_keys, from_size)
    except SQLAlchemyError as exc:
        raise IndexError_(f"cannot read the lineage index: {exc}") from exc


def _build(conn: Connection, output_id: str, keys: dict[str, str], from_size: int | None) -> dict[str, Any]:
    o = t.outputs.c
    row = conn.execute(select(o.log_partition, o.log_offset, o.body).where(o.output_id == output_id)).first()
    if row is None:
        raise NotFoundError("output", output_id)
    leaves = t.merkle_leaves.c
    leaf = conn.execute(select(leaves.leaf_index, leaves.leaf_hash).where(
        leaves.log_partition == row.log_partition, leaves.log_offset == row.log_offset)).first()
    if leaf is None:
        raise NotCoveredYetError(f"output {output_id!r} is not in the integrity chain yet; retry shortly")
    c = t.checkpoints.c
    cp = conn.execute(select(t.checkpoints).where(c.log_partition == row.log_partition, c.tree_size > leaf.leaf_index)
                      .order_by(c.tree_size.desc()).limit(1)).mappings().first()
    if cp is None:
        raise NotCoveredYetError(f"output {output_id!r} is not covered by a signed checkpoint yet; the next "
                                 "one is taken within LINEAGE_CHECKPOINT_SECONDS")
    get = node_getter(conn, row.log_partition)
    proof: dict[str, Any] = {
        "format": FORMAT,
        "output_id": output_id,
        "log_partition": row.log_partition,
        "log_offset": row.log_offset,
        "event": base64.b64encode(row.body).decode("ascii"),
        "leaf_index": leaf.leaf_index,
        "leaf_hash": bytes(leaf.leaf_hash).hex(),
        "tree_size": cp["tree_size"],
        "inclusion_path": [h.hex() for h in inclusion_proof(leaf.leaf_index, cp["tree_size"], get)],
        "checkpoint": {
            "signed_body": cp["signed_body"], "signature": cp["signature"], "key_id": cp["key_id"],
            "public_key": keys.get(cp["key_id"]),
        },
    }
    if from_size is not None:
        if not 1 <= from_size <= cp["tree_size"]:
            raise InvalidRequestError(f"from_size must be between 1 and {cp['tree_size']}, got {from_size}")
        proof["consistency"] = {
            "from_size": from_size, "to_size": cp["tree_size"],
            "path": [h.hex() for h in consistency_proof(from_size, cp["tree_size"], get)],
        }
    return proof


def verify_proof(proof: dict[str, Any], trusted_keys: dict[str, str] | None = None,
                 from_root: str | None = None) -> list[str]:
    """Check a proof bundle offline; returns the problems found (empty: it verifies).

    `trusted_keys` maps key_id -> base64 raw Ed25519 public key; without it the key inside the bundle is
    used, which proves integrity but not who signed (compare its key_id with the operator's published key).
    `from_root` (hex) is the root the auditor saw earlier at consistency.from_size.
    """
    problems: list[str] = []
    try:
        body = json.loads(proof["checkpoint"]["signed_body"])
        event = base64.b64decode(proof["event"], validate=True)
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        key_id = proof["checkpoint"]["key_id"]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"not a {FORMAT} proof: {exc}"]
    if proof.get("format") != FORMAT:
        problems.append(f"unknown format {proof.get('format')!r}; expected {FORMAT}")
    if leaf_hash(event).hex() != proof.get("leaf_hash"):
        problems.append("the event bytes do not hash to leaf_hash: the record was altered")
    for field in ("tree_size", "log_partition"):
        if body.get(field) != proof.get(field):
            problems.append(f"{field} {proof.get(field)} differs from the signed checkpoint's {body.get(field)}")
    if body.get("key_id") != key_id:
        problems.append("the checkpoint's key_id differs from the signed one")
    root = bytes.fromhex(body.get("root_hash", ""))
    if not verify_inclusion(leaf_hash(event), int(proof.get("leaf_index", -1)), int(body.get("tree_size", 0)),
                            path, root):
        problems.append("the inclusion path does not lead to the signed root: the record is not in that tree")
    public = (trusted_keys or {}).get(key_id) if trusted_keys is not None else proof["checkpoint"].get("public_key")
    if not public:
        problems.append(f"no trusted public key for key_id {key_id}")
    elif not verify_signature(public, proof["checkpoint"]["signed_body"].encode("utf-8"),
                              proof["checkpoint"]["signature"]):
        problems.append(f"the checkpoint signature does not verify with key {key_id}")
    consistency = proof.get("consistency")
    if consistency is not None and from_root is not None:
        ok = verify_consistency(int(consistency["from_size"]), int(consistency["to_size"]), bytes.fromhex(from_root),
                                root, [bytes.fromhex(h) for h in consistency["path"]])
        if not ok:
            problems.append(f"the tree of size {consistency['to_size']} does not extend the earlier root "
                            f"at size {consistency['from_size']}")
    return problems
