"""Real servers on loopback for integration and e2e tests: an app under uvicorn in a background thread, and
`lineage up` as a subprocess; plus the small JSON events tests post to them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import uvicorn

from schemas.ids import event_id_text, output_id_from, uuid7_bytes

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it; a later bind may still race, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check` until it returns something other than None; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on 127.0.0.1 (a socket we bind, so no port race); yields the base
    URL. The app's lifespan runs on entry and on exit, as under `lineage up`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()

    def started() -> bool | None:
        if server.started:
            return True
        if not thread.is_alive():
            raise AssertionError("uvicorn stopped during startup (see the log above)")
        return None

    try:
        wait_for(started, timeout=15, what="uvicorn to start")
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


def wait_indexed(client: httpx.Client, *, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until the runner has applied everything in the log (GET /v1/stats lag == 0); returns the stats.

    /v1/stats counts rows before it measures the lag, so the answer that first shows lag 0 may carry counts
    from just before the last batch; the stats are read once more after that."""
    def caught_up() -> bool | None:
        return True if client.get("/v1/stats").raise_for_status().json()["lag"] == 0 else None

    wait_for(caught_up, timeout=timeout, what="the index to catch up with the log")
    stats: dict[str, Any] = client.get("/v1/stats").raise_for_status().json()
    return stats


# -- `lineage up` as a subprocess ------------------------------------------------------------------------


def lineage_command() -> list[str]:
    """The `lineage` console script of this interpreter's environment, else the same entry point via -c."""
    beside = shutil.which("lineage", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("lineage")
    if found:
        return [found]
    return [sys.executable, "-c", "from lineage_api.cli import main; main()"]


def cli_env() -> dict[str, str]:
    """The environment for `lineage` subprocesses: no LINEAGE_* leaking in, wide output so rich never wraps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
    env.update(COLUMNS="250", NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def run_cli(
    *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`lineage ARGS` in a subprocess; `env` adds variables (LINEAGE_INDEX_URL, ...) to the clean cli_env()."""
    return subprocess.run([*lineage_command(), *args], capture_output=True, text=True,
                          env={**cli_env(), **(env or {})}, timeout=timeout, check=False)


class LineageUp:
    """One `lineage up --data-dir D --port P` process; its output goes to D/up-<n>.log (a pipe could fill)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://{LOOPBACK}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._logs: list[Path] = []
        self._out: IO[bytes] | None = None

    def start(self, *, ready_timeout: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_output()
        path = self.data_dir / f"up-{len(self._logs)}.log"
        self._logs.append(path)
        self._out = open(path, "wb")  # closed when the process is reaped
        self.proc = subprocess.Popen(
            [*lineage_command(), "up", "--data-dir", str(self.data_dir), "--port", str(self.port)],
            stdout=self._out, stderr=subprocess.STDOUT, env=cli_env(),
        )
        wait_for(self._ready, timeout=ready_timeout, what=f"`lineage up` on port {self.port} to be ready",
                 interval=0.05)

    def _ready(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"`lineage up` exited with {self.proc.returncode}:\n{self.output()}")
        try:
            response = httpx.get(self.url + "/readyz", timeout=2)
        except httpx.TransportError:
            return None
        return True if response.status_code == 200 and response.json()["runner"] == "running" else None

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, no flushing, like a power cut for the process."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._close_output()

    def terminate(self, timeout: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_output()
        return code

    def stop(self) -> None:
        """Teardown: whatever state the process is in, end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_output()

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self._logs if p.exists())

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


@contextmanager
def lineage_up(data_dir: Path, port: int | None = None) -> Iterator[LineageUp]:
    server = LineageUp(data_dir, port or free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


# -- events for POST /v1/events ---------------------------------------------------------------------------


def new_ids() -> tuple[str, str]:
    """(event_id, output_id) as the SDK makes them; posting explicit IDs makes a retried POST idempotent."""
    raw = uuid7_bytes()
    return event_id_text(raw), output_id_from(raw)


def inference_event(
    *,
    feature: str = "api-test",
    occurred_at: datetime | None = None,
    model_served: str = "m-posted-1",
    status: str = "OK",
    text: str = "42 MW",
    explicit_ids: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """A minimal valid InferenceRecorded envelope in JSON; `fields` override top-level event fields."""
    event: dict[str, Any] = {
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "feature": feature,
        "prompt": {"template_id": "t-posted", "template_version": "1",
                   "messages": [{"role": "user", "content": "forecast the load"}]},
        "model": {"provider": "acme", "requested": "m-posted", "served": model_served},
        "params": {"temperature": 0.0},
        "output": {"text": text, "finish_reason": "stop"},
        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        "status": status,
        "classification": {},
    }
    if explicit_ids:
        event["event_id"], event["output_id"] = new_ids()
    event.update(fields)
    return {"type": "InferenceRecorded", "event": event}


def consumed_event(output_id: str, *, consumer: str, consumer_ref: str | None = None) -> dict[str, Any]:
    return {"type": "OutputConsumed", "event": {
        "event_id": event_id_text(uuid7_bytes()), "occurred_at": datetime.now(UTC).isoformat(),
        "output_id": output_id, "consumer": consumer, "consumer_ref": consumer_ref,
    }}
