"""Processes that start together (the API and workers sharing a key volume) end up with one signing key."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from streams.signing import load_or_create_key


def _key_id(path: str) -> str:
    return load_or_create_key(Path(path)).key_id


def test_processes_creating_the_key_at_once_all_get_the_same_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing-key.pem"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        ids = pool.map(_key_id, [str(path)] * 24)
    assert len(set(ids)) == 1
    assert load_or_create_key(path).key_id == ids[0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["signing-key.pem"], "no half-written files left behind"
