"""`lineage up` as a black box: killed with SIGKILL while an SDK and an HTTP client record into it, then
restarted on the same data dir, it loses nothing acknowledged and doubles nothing; SIGTERM stops it cleanly."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from producers.recorder import Recorder
from producers.values import Message, ModelCall, Output, Prompt
from tests.servers import inference_event, lineage_up, wait_for, wait_indexed

pytestmark = pytest.mark.e2e

SDK_EVENTS = 3000
SDK_BURST = 20
HTTP_EVENTS = 300
HTTP_BATCH = 5


class SdkProducer(threading.Thread):
    """Records SDK_EVENTS through a Recorder on the data dir's log, in small bursts; an event is
    acknowledged once the Recorder's flush (at close) returns."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="test-sdk-producer", daemon=True)
        self.log_url = f"sqlite:///{data_dir.resolve() / 'log.db'}"
        self.spool_dir = data_dir / "spool"
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Recorder(log_url=self.log_url, spool_dir=self.spool_dir) as rec:
                model = ModelCall(provider="acme", requested="gridcast", served="gridcast-1")
                for i in range(SDK_EVENTS):
                    prompt = Prompt(template_id="crash", messages=(Message(role="user", content=f"call {i}"),))
                    self.ids.append(rec.record(feature="sdk-under-crash", prompt=prompt, model=model,
                                               output=Output(text=f"{i} MW"), trace_id=f"t{i % 7}"))
                    if i % SDK_BURST == SDK_BURST - 1:
                        time.sleep(0.02)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


class HttpPoster(threading.Thread):
    """POSTs HTTP_EVENTS JSON events in batches with explicit IDs, retrying the same body until a 202 comes
    back: an event counts as acknowledged only then, and a retry of a stored-but-unanswered batch must not
    double it."""

    def __init__(self, url: str) -> None:
        super().__init__(name="test-http-poster", daemon=True)
        self.url = url
        self.acked: list[str] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=5) as client:
                for _ in range(HTTP_EVENTS // HTTP_BATCH):
                    batch = [inference_event(feature="http-under-crash") for _ in range(HTTP_BATCH)]
                    self._post_until_acknowledged(client, batch)
                    time.sleep(0.05)
        except BaseException as exc:
            self.error = exc

    def _post_until_acknowledged(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = client.post("/v1/events", json=batch)
            except httpx.TransportError:  # refused while down, or cut off mid-request by the kill
                self.retries += 1
                time.sleep(0.05)
                continue
            if response.status_code == 202:
                self.acked += [e["event"]["output_id"] for e in batch]
                return
            if response.status_code != 503:
                raise AssertionError(f"unexpected {response.status_code}: {response.text}")
            time.sleep(0.05)
        raise AssertionError("the server did not come back within 30 s")


def _every_output_id(client: httpx.Client) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/outputs", params=params).raise_for_status().json()
        ids += [i["output_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing_acknowledged(tmp_path: Path) -> None:
    sdk = SdkProducer(tmp_path)
    with lineage_up(tmp_path) as up:
        http = HttpPoster(up.url)
        sdk.start()
        http.start()
        wait_for(lambda: True if len(sdk.ids) >= SDK_EVENTS // 3 and len(http.acked) >= HTTP_EVENTS // 3 else None,
                 timeout=30, what="a third of both streams")
        up.kill()
        at_kill = (len(sdk.ids), len(http.acked))
        time.sleep(0.3)
        up.start()  # same data dir, same port
        sdk.join(60)
        http.join(60)

        assert sdk.error is None and http.error is None, (sdk.error, http.error)
        assert at_kill[0] < SDK_EVENTS and at_kill[1] < HTTP_EVENTS, f"the kill came after the streams ended: {at_kill}"
        acknowledged = set(sdk.ids) | set(http.acked)
        assert len(sdk.ids) == SDK_EVENTS and len(http.acked) == HTTP_EVENTS
        assert len(acknowledged) == SDK_EVENTS + HTTP_EVENTS

        with httpx.Client(base_url=up.url, timeout=10) as client:
            stats = wait_indexed(client, timeout=30)
            assert stats["dead_letters"] == 0
            assert stats["outputs"] == len(acknowledged)
            assert stats["log_end_offset"] >= len(acknowledged)
            listed = _every_output_id(client)
            assert len(listed) == len(set(listed)) == len(acknowledged)
            assert set(listed) == acknowledged
            for oid in acknowledged:
                assert client.get(f"/v1/outputs/{oid}").status_code == 200, oid
            for oid in random.Random(7).sample(sorted(acknowledged), 20):
                graph = client.get(f"/v1/outputs/{oid}/lineage", params={"direction": "both", "depth": 2})
                assert graph.status_code == 200
                types = {n["type"] for n in graph.json()["nodes"]}
                assert {"output", "prompt", "model"} <= types
            assert client.get("/v1/dead-letters").json()["items"] == []


def test_sigterm_stops_lineage_up_cleanly_and_a_restart_serves_what_it_had(tmp_path: Path) -> None:
    with lineage_up(tmp_path) as up:
        event = inference_event(feature="before-sigterm")
        with httpx.Client(base_url=up.url, timeout=10) as client:
            assert client.post("/v1/events", json=event).status_code == 202
            wait_indexed(client)

        code = up.terminate(timeout=10)

        # uvicorn re-raises SIGTERM after its graceful shutdown, so a supervisor sees either a clean exit
        # or death by SIGTERM (which systemd counts as success); anything else is a crash.
        assert code in (0, -signal.SIGTERM), f"exit code {code}:\n{up.output()}"
        assert "Traceback" not in up.output()
        # The lifespan closed the log and the index: SQLite checkpoints and removes the WAL on the last close.
        assert not (tmp_path / "log.db-wal").exists() and not (tmp_path / "index.db-wal").exists()

        up.start()
        with httpx.Client(base_url=up.url, timeout=10) as client:
            assert client.get(f"/v1/outputs/{event['event']['output_id']}").status_code == 200
            assert wait_indexed(client)["outputs"] == 1
