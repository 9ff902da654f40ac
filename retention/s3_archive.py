"""The archive on S3 or an S3-compatible server (MinIO). The only module that imports boto3; every botocore
error leaves it translated into schemas.errors."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ChecksumError, ClientError, FlexibleChecksumError, NoCredentialsError

from retention.archive import check_key, check_prefix
from schemas.errors import ArchiveError, ArchiveUnavailableError, ConfigError, NotFoundError

# Error codes by which S3 refuses one object rather than the whole store: the body did not match the digest
# we sent, or is too large. Any other code (no bucket, bad credentials, 5xx) makes the archive unusable.
REFUSED_OBJECT_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "EntityTooLarge",
                                  "IncompleteBody"})
LIST_PAGE_MAX = 1000  # what ListObjectsV2 returns at most per request


class S3ArchiveStore:
    """Objects under `prefix` in one bucket. Nothing is sent until the first put/get/list, so a service can
    start while the archive is down; that call then raises ArchiveUnavailableError naming bucket and endpoint.

    `client` is an already built boto3 S3 client (tests pass one); otherwise one is built from boto3's usual
    credential chain, with path-style addressing when `endpoint_url` is given (MinIO serves no bucket
    subdomains) and at most three attempts per call.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client: Any = None,
                 page_size: int = LIST_PAGE_MAX) -> None:
        if not 0 < page_size <= LIST_PAGE_MAX:
            raise ConfigError(f"page_size must be between 1 and {LIST_PAGE_MAX}, got {page_size}")
        prefix = prefix.strip("/")
        if prefix:
            check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.page_size = page_size
        self.client = client if client is not None else _client(endpoint_url)
        self.endpoint: str = endpoint_url or self.client.meta.endpoint_url

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        """One PutObject carrying the MD5 of `data`: the server refuses a body that arrives torn or altered,
        so an object is either stored whole or not at all."""
        name = self._name(check_key(key))
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentMD5=digest)
        except (BotoCoreError, ClientError) as exc:
            self._raise(exc, key)

    def get(self, key: str) -> bytes:
        name = self._name(check_key(key))
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            self._raise(exc, key)
        return body

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys starting with `prefix`, read page by page (`page_size` keys per request)."""
        start = self._name(check_prefix(prefix))
        strip = len(self._name(""))
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start, PaginationConfig={"PageSize": self.page_size})
        keys = []
        try:
            for page in pages:
                keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            self._raise(exc, prefix)
        return sorted(keys)

    def _raise(self, exc: BotoCoreError | ClientError, key: str) -> NoReturn:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code == "NoSuchKey":
                raise NotFoundError("archived object", key) from exc
            if code in REFUSED_OBJECT_CODES:
                raise ArchiveError(f"bucket {self.bucket!r} at {self.endpoint} refused archive object {key!r}: "
                                   f"{code}: {message}") from exc
            raise ArchiveUnavailableError(self.bucket, self.endpoint, f"{code}: {message}") from exc
        if isinstance(exc, (ChecksumError, FlexibleChecksumError)):
            raise ArchiveError(f"archive object {key!r} in bucket {self.bucket!r} at {self.endpoint} does not "
                               f"match its checksum: {exc}") from exc
        reason = str(exc)
        if isinstance(exc, NoCredentialsError):
            reason += " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure an AWS profile)"
        raise ArchiveUnavailableError(self.bucket, self.endpoint, reason) from exc


def _client(endpoint_url: str | None) -> Any:
    config = Config(
        connect_timeout=5, read_timeout=30, retries={"mode": "standard", "total_max_attempts": 3},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    try:
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
    except (BotoCoreError, ValueError) as exc:  # a malformed endpoint URL raises ValueError
        raise ConfigError(f"cannot build an S3 client for endpoint {endpoint_url or 'AWS'}: {exc}") from exc
