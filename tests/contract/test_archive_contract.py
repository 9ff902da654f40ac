"""The ArchiveStore contract: the folder store and the S3 store (against a real moto server on 127.0.0.1)
pass the same suite; then what only S3 can do wrong (endpoint, bucket, credentials, digests, paging)."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from retention.archive import ArchiveStore, LocalArchiveStore, open_archive
from schemas.errors import ArchiveError, ArchiveUnavailableError, ConfigError, NotFoundError
from tests.brokers import MotoServer, require_moto, running_moto
from tests.servers import LOOPBACK, free_port

if TYPE_CHECKING:
    from retention.s3_archive import S3ArchiveStore

BUCKET = "lineage-archive-test"
BINARY = bytes(range(256)) * 64 + b"\x00\r\n\xff"
HOSTILE_KEYS = ["", "/etc/passwd", "../outside", "a/../../outside", "a/../b", "./a", "a//b", "a/", "a/./b",
                "a\x00b", "upload.part"]
HOSTILE_PREFIXES = ["/", "/a", "../", "a/../", "a//", "./"]


class ArchiveStoreContract:
    """Subclass once per store and provide a `store` fixture: a fresh, empty store."""

    def test_put_then_get_returns_the_same_bytes(self, store: ArchiveStore) -> None:
        store.put("segments/0/000001.avro", BINARY)
        store.put("empty", b"")
        assert store.get("segments/0/000001.avro") == BINARY
        assert store.get("empty") == b""

    def test_keys_with_spaces_and_non_ascii_round_trip(self, store: ArchiveStore) -> None:
        store.put("reports/2026 Q4/région-é.json", b"{}")
        assert store.get("reports/2026 Q4/région-é.json") == b"{}"
        assert store.list("reports/") == ["reports/2026 Q4/région-é.json"]

    def test_a_second_put_overwrites(self, store: ArchiveStore) -> None:
        store.put("checkpoints/0/1.json", b"first")
        store.put("checkpoints/0/1.json", b"second, longer than the first")
        assert store.get("checkpoints/0/1.json") == b"second, longer than the first"
        assert store.list() == ["checkpoints/0/1.json"]

    def test_a_missing_key_is_not_found(self, store: ArchiveStore) -> None:
        store.put("present", b"x")
        with pytest.raises(NotFoundError) as caught:
            store.get("absent/key.json")
        assert (caught.value.kind, caught.value.ident) == ("archived object", "absent/key.json")

    @pytest.mark.parametrize("key", HOSTILE_KEYS)
    def test_hostile_keys_are_refused_and_write_nothing(self, store: ArchiveStore, key: str) -> None:
        with pytest.raises(ConfigError, match="archive key"):
            store.put(key, b"payload")
        with pytest.raises(ConfigError, match="archive key"):
            store.get(key)
        assert store.list() == []

    @pytest.mark.parametrize("prefix", HOSTILE_PREFIXES)
    def test_hostile_list_prefixes_are_refused(self, store: ArchiveStore, prefix: str) -> None:
        with pytest.raises(ConfigError, match="archive prefix"):
            store.list(prefix)

    def test_a_new_store_lists_nothing(self, store: ArchiveStore) -> None:
        assert store.list() == []
        assert store.list("checkpoints/") == []

    def test_list_returns_sorted_keys_under_a_string_prefix(self, store: ArchiveStore) -> None:
        keys = ["checkpoints/1/00000000000000000002.json", "checkpoints/0/00000000000000000010.json",
                "checkpoints/0/00000000000000000002.json", "checkpoints-old/x", "segments/0/a.avro", "c"]
        for key in keys:
            store.put(key, key.encode())
        assert store.list() == sorted(keys)
        assert store.list("checkpoints/") == sorted(k for k in keys if k.startswith("checkpoints/"))
        assert store.list("checkpoints/0/") == ["checkpoints/0/00000000000000000002.json",
                                                "checkpoints/0/00000000000000000010.json"]
        assert store.list("checkpoints") == sorted(k for k in keys if k.startswith("checkpoints"))
        assert store.list("checkpoints/0/0000000000000000001") == ["checkpoints/0/00000000000000000010.json"]
        assert store.list("c") == sorted(k for k in keys if k.startswith("c"))
        assert store.list("nothing/") == []

    def test_list_sees_every_key_across_pages(self, store: ArchiveStore) -> None:
        keys = [f"segments/{n % 3}/{n:05d}.avro" for n in range(40)]
        for key in keys:
            store.put(key, b"s")
        assert store.list("segments/") == sorted(keys)
        assert store.list("segments/1/") == sorted(k for k in keys if k.startswith("segments/1/"))


class TestLocalArchiveStore(ArchiveStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalArchiveStore:
        return LocalArchiveStore(tmp_path / "archive")

    def test_an_upload_in_progress_is_not_listed(self, store: LocalArchiveStore) -> None:
        store.put("checkpoints/0/1.json", b"done")
        (store.root / "checkpoints/0/2.json.part").write_bytes(b"half")
        assert store.list() == ["checkpoints/0/1.json"]

    def test_a_symlink_out_of_the_folder_is_refused(self, store: LocalArchiveStore, tmp_path: Path) -> None:
        store.put("inside", b"x")
        (tmp_path / "elsewhere").mkdir()
        (store.root / "link").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(ConfigError, match="escapes the archive folder"):
            store.put("link/file", b"x")

    def test_open_archive_gives_a_folder_store_for_file_urls(self, tmp_path: Path) -> None:
        store = open_archive(f"file://{tmp_path}/arch%20ive")
        assert isinstance(store, LocalArchiveStore)
        store.put("a", b"1")
        assert (tmp_path / "arch ive" / "a").read_bytes() == b"1"


# -- S3 against moto's server -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def archive_s3(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    require_moto(pytestconfig)
    with running_moto(tmp_path_factory.mktemp("moto-archive"), bucket=BUCKET) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials through boto3's usual chain, as in production; nothing from this machine's AWS setup."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lineage-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lineage-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def s3_store(endpoint: str, *, bucket: str = BUCKET, prefix: str | None = None, **kwargs: Any) -> S3ArchiveStore:
    from retention.s3_archive import S3ArchiveStore

    prefix = f"test-{uuid.uuid4().hex[:12]}" if prefix is None else prefix
    return S3ArchiveStore(bucket, prefix, endpoint_url=endpoint, **kwargs)


@pytest.mark.usefixtures("aws_env")
class TestS3ArchiveStore(ArchiveStoreContract):
    @pytest.fixture
    def store(self, archive_s3: MotoServer) -> S3ArchiveStore:
        """A prefix of its own in the shared bucket; a small page size so listing always spans pages."""
        return s3_store(archive_s3.endpoint, page_size=7)

    def test_list_pages_through_more_than_1000_keys(self, archive_s3: MotoServer) -> None:
        store = s3_store(archive_s3.endpoint)
        keys = [f"segments/{n:05d}.avro" for n in range(1005)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: store.put(key, b"s"), keys))
        requests: list[object] = []
        store.client.meta.events.register("before-send.s3.ListObjectsV2", lambda request, **_: requests.append(request))
        assert store.list() == keys
        assert len(requests) == 2, "1005 keys take two pages of at most 1000"
        assert store.list("segments/0010") == keys[100:110]

    def test_stores_with_different_prefixes_do_not_see_each_other(self, archive_s3: MotoServer) -> None:
        one, other = s3_store(archive_s3.endpoint), s3_store(archive_s3.endpoint)
        one.put("k", b"one")
        assert other.list() == []
        with pytest.raises(NotFoundError):
            other.get("k")

    def test_put_sends_the_md5_of_the_exact_body(self, archive_s3: MotoServer) -> None:
        store = s3_store(archive_s3.endpoint)
        sent: list[tuple[bytes, bytes]] = []

        def capture(request: Any, **_: Any) -> None:
            body = request.body if isinstance(request.body, bytes) else request.body.getvalue()
            sent.append((request.headers["Content-MD5"], body))

        store.client.meta.events.register("before-send.s3.PutObject", capture)
        store.put("checkpoints/0/1.json", BINARY)
        [(digest, body)] = sent
        assert body == BINARY
        assert base64.b64decode(digest) == hashlib.md5(BINARY).digest()

    def test_a_body_refused_for_its_digest_is_an_archive_error(self, archive_s3: MotoServer) -> None:
        # moto does not check Content-MD5; S3 and MinIO answer a torn or altered body with BadDigest.
        from botocore.stub import Stubber

        store = s3_store(archive_s3.endpoint)
        with Stubber(store.client) as stub:
            stub.add_client_error("put_object", service_error_code="BadDigest", http_status_code=400,
                                  service_message="The Content-MD5 you specified did not match what we received.")
            with pytest.raises(ArchiveError, match="refused archive object 'k': BadDigest") as caught:
                store.put("k", b"payload")
        assert not isinstance(caught.value, ArchiveUnavailableError)
        assert store.list() == []

    @pytest.mark.parametrize("call", ["put", "get", "list"])
    def test_an_unreachable_endpoint_is_unavailable_naming_it(self, call: str) -> None:
        endpoint = f"http://{LOOPBACK}:{free_port()}"
        store = s3_store(endpoint)
        with pytest.raises(ArchiveUnavailableError) as caught:
            _call(store, call)
        assert endpoint in str(caught.value) and BUCKET in str(caught.value)
        assert (caught.value.bucket, caught.value.endpoint) == (BUCKET, endpoint)

    @pytest.mark.parametrize("call", ["put", "get", "list"])
    def test_a_missing_bucket_is_unavailable_naming_it(self, archive_s3: MotoServer, call: str) -> None:
        store = s3_store(archive_s3.endpoint, bucket="no-such-lineage-bucket")
        with pytest.raises(ArchiveUnavailableError) as caught:
            _call(store, call)
        assert f"'no-such-lineage-bucket' at {archive_s3.endpoint} is unavailable: NoSuchBucket" in str(caught.value)

    def test_missing_credentials_are_unavailable(self, archive_s3: MotoServer, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        with pytest.raises(ArchiveUnavailableError, match="credentials"):
            s3_store(archive_s3.endpoint).put("k", b"x")

    def test_open_archive_reads_bucket_and_prefix_from_the_url(self, archive_s3: MotoServer) -> None:
        from retention.s3_archive import S3ArchiveStore

        prefix = f"url-{uuid.uuid4().hex[:8]}/nested"
        store = open_archive(f"s3://{BUCKET}/{prefix}/", s3_endpoint=archive_s3.endpoint)
        assert isinstance(store, S3ArchiveStore)
        assert (store.bucket, store.prefix, store.endpoint) == (BUCKET, prefix, archive_s3.endpoint)
        store.put("checkpoints/0/1.json", b"{}")
        assert s3_store(archive_s3.endpoint, prefix="").list(prefix) == [f"{prefix}/checkpoints/0/1.json"]


def _call(store: ArchiveStore, call: str) -> object:
    if call == "put":
        return store.put("k", b"x")
    if call == "get":
        return store.get("k")
    return store.list()


# -- open_archive -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["s3:///prefix-only", "s3://"])
def test_an_s3_url_without_a_bucket_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        open_archive(url)


def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported archive URL scheme 'gs'"):
        open_archive("gs://bucket/prefix")


def test_s3_without_boto3_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "retention.s3_archive", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'llm-lineage\[s3\]'"):
        open_archive("s3://bucket/prefix")
