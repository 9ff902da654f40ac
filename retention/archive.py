"""Where archived objects live. Owns the ArchiveStore port, the key rules every store shares, the folder
store and `open_archive`; imports no cloud SDK (the S3 store is imported only when an s3:// URL asks for it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from schemas.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from retention.s3_archive import S3ArchiveStore

PART_SUFFIX = ".part"  # a LocalArchiveStore upload in progress; no key may end with it


class ArchiveStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix` (a plain string prefix, as in S3), sorted."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that would name different objects on different stores.

    A key is a relative path of '/'-separated segments, none empty, '.' or '..': S3 would store 'a//b' or
    '../x' as names of their own, while a folder store resolves them elsewhere, possibly outside its root."""
    if not _segments_ok(key) or key.endswith(PART_SUFFIX):
        raise ConfigError(f"archive key {key!r} is not a relative path of non-empty segments without '.' or '..'"
                          f" (and not ending in {PART_SUFFIX!r})")
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix follows the key rules, except that it may be empty or end with '/'."""
    if prefix and not _segments_ok(prefix.removesuffix("/")):
        raise ConfigError(f"archive prefix {prefix!r} is not a relative path of non-empty segments "
                          "without '.' or '..'")
    return prefix


def _segments_ok(path: str) -> bool:
    return bool(path) and "\x00" not in path and all(s not in ("", ".", "..") for s in path.split("/"))


class LocalArchiveStore:
    """Objects as files under a root folder; a put is atomic (write aside, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root.resolve()):  # a symlink inside the folder pointing out of it
            raise ConfigError(f"archive key {key!r} escapes the archive folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(path.name + PART_SUFFIX)
        with open(aside, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError("archived object", key) from None

    def list(self, prefix: str = "") -> list[str]:
        """Walks only the folder the prefix is in; uploads in progress (`*.part`) are not objects yet."""
        folder = check_prefix(prefix).rpartition("/")[0]
        start = self.root / folder
        if not start.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.endswith(PART_SUFFIX):
                    keys.append(key)
        return sorted(keys)


def open_archive(url: str, *, s3_endpoint: str | None = None) -> ArchiveStore:
    """`file:///path` or `s3://bucket/optional/prefix`; `s3_endpoint` points s3:// at MinIO or another
    S3-compatible server (credentials come from boto3's usual chain: AWS_ACCESS_KEY_ID, ~/.aws, ...)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalArchiveStore(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"archive URL {url!r} names no bucket; use s3://bucket/optional/prefix")
        return _s3_store(parts.netloc, unquote(parts.path).strip("/"), s3_endpoint)
    raise ConfigError(f"unsupported archive URL scheme {parts.scheme!r} in {url!r}; "
                      "use file:///path or s3://bucket/prefix")


def _s3_store(bucket: str, prefix: str, endpoint: str | None) -> S3ArchiveStore:
    try:
        from retention.s3_archive import S3ArchiveStore
    except ModuleNotFoundError as exc:
        if exc.name not in ("boto3", "botocore"):
            raise
        raise ConfigError("s3:// archives need boto3, which is not installed: pip install 'llm-lineage[s3]'") from exc
    return S3ArchiveStore(bucket, prefix, endpoint_url=endpoint)
