"""Where archived objects live. Owns the ArchiveStore port; imports no cloud SDK."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from schemas.errors import ConfigError, NotFoundError


class ArchiveStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...


class LocalArchiveStore:
    """Objects as files under a root folder; a put is atomic (write aside, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()) or not key or key.startswith("/"):
            raise ConfigError(f"archive key {key!r} escapes the archive folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(path.name + ".part")
        with open(aside, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("archived object", key) from None


def open_archive(url: str) -> ArchiveStore:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalArchiveStore(Path(unquote(parts.netloc + parts.path)))
    raise ConfigError(f"unsupported archive URL scheme {parts.scheme!r} in {url!r}; use file:///path")
