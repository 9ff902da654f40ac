"""`lineage verify`: check the whole chain of a data dir, or one saved proof offline."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select

from lineage_api.settings import Settings
from producers.log import LogRecord, ReadableEventLog, open_log
from schemas.errors import ConfigError
from streams import tables as t
from streams.proofs import verify_proof
from streams.signing import key_id_of, load_key_pem
from streams.store import open_engine
from streams.verify import Report, verify_partition


def verify_store(settings: Settings, console: Console, trusted: dict[str, str] | None) -> int:
    """Returns the number of problems found (0: everything verifies). Embedded: the SQLite log's one
    partition. Production: every partition of the Kafka topic that the index has chained."""
    keys = trusted if trusted is not None else _own_keys(settings)
    engine = open_engine(settings.resolved_index_url, migrate=settings.auto_migrate)
    reports: list[Report] = []
    try:
        for partition_log in _partition_logs(settings, engine):
            try:
                reports.append(_verify_one(partition_log, engine, keys, console))
            finally:
                partition_log.close()
    finally:
        engine.dispose()
    problems = [p for r in reports for p in r.problems]
    if not problems:
        console.print(f"[green]verified[/] {sum(r.records for r in reports)} records, "
                      f"{sum(r.checkpoints for r in reports)} signed checkpoints and "
                      f"{sum(r.outputs_checked for r in reports)} indexed outputs"
                      f"{f' in {len(reports)} partitions' if len(reports) > 1 else ''}: no problems")
        return 0
    console.print(f"[bold red]{len(problems)} problem(s)[/]; the first:")
    console.print(f"  {problems[0]}")
    for problem in problems[1:10]:
        console.print(f"  also: {problem}")
    return len(problems)


class _PartitionLog(Protocol):
    partition: int

    def read(self, offset: int, limit: int) -> Sequence[LogRecord]: ...
    def end_offset(self) -> int: ...
    def close(self) -> None: ...


def _partition_logs(settings: Settings, engine: Engine) -> list[_PartitionLog]:
    url = settings.resolved_log_url
    if url.startswith("kafka://"):
        from producers.kafka_log import KafkaPartitionReader

        with engine.connect() as conn:
            chained = sorted(int(p) for p in conn.execute(select(t.chain_heads.c.log_partition)).scalars())
        return [KafkaPartitionReader(url, p, topic=settings.topic) for p in chained]
    event_log = open_log(url)
    if not isinstance(event_log, ReadableEventLog):
        event_log.close()
        raise ConfigError(f"lineage verify cannot read records back from {url}")
    return [event_log]


def _verify_one(partition_log: _PartitionLog, engine: Engine, keys: dict[str, str], console: Console) -> Report:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"verifying partition {partition_log.partition}",
                                 total=partition_log.end_offset())
        return verify_partition(partition_log, engine, keys, progress=lambda n: progress.advance(task, n))


def verify_proof_file(path: Path, console: Console, trusted: dict[str, str] | None, from_root: str | None) -> int:
    try:
        proof = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read proof {path}: {exc}") from exc
    problems = verify_proof(proof, trusted, from_root)
    if problems:
        console.print(f"[bold red]proof does not verify[/]: {problems[0]}")
        for problem in problems[1:]:
            console.print(f"  also: {problem}")
        return len(problems)
    if proof.get("consistency") is not None and from_root is None:
        console.print("[yellow]note:[/] the consistency proof was not checked; pass --from-root with the root "
                      f"you saw at size {proof['consistency'].get('from_size')}")
    who = "a trusted key" if trusted is not None else "the key inside the proof (pass --key to pin it)"
    console.print(f"[green]proof verifies[/]: output {proof.get('output_id')} is leaf {proof['leaf_index']} "
                  f"of the tree of size {proof['tree_size']}, signed by {who} ({proof['checkpoint']['key_id']})")
    return 0


def load_trusted_key(value: str) -> dict[str, str]:
    """A PEM private/public key file, or a base64 raw Ed25519 public key, as {key_id: base64 public}."""
    path = Path(value)
    if path.exists():
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            info = load_key_pem(data, value).public_info()
            return {info["key_id"]: info["public_key"]}
        from cryptography.hazmat.primitives import serialization

        public = serialization.load_pem_public_key(data)
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ConfigError(f"--key: neither a file nor base64 ({exc})") from exc
    if len(raw) != 32:
        raise ConfigError(f"--key: an Ed25519 public key is 32 bytes, got {len(raw)}")
    return {key_id_of(raw): base64.b64encode(raw).decode("ascii")}


def _own_keys(settings: Settings) -> dict[str, str]:
    path = settings.resolved_signing_key_file
    if not path.exists():
        return {}
    info = load_key_pem(path.read_bytes(), str(path)).public_info()
    return {info["key_id"]: info["public_key"]}
