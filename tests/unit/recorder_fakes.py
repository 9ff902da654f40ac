"""Fakes shared by the Recorder tests: wrapper logs that inject faults (a hung log, an outage), and helpers
that record a minimal call and read back what reached a log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from producers.log import ReadableEventLog
from producers.memory_log import MemoryEventLog
from producers.recorder import Recorder
from producers.values import Message, ModelCall, Output, Prompt
from schemas.codec import Codec, DecodedEvent
from schemas.errors import LogUnavailableError

CODEC = Codec()
PROMPT = Prompt(template_id="forecast", messages=(Message(role="user", content="Load for Zürich?"),))
MODEL = ModelCall(provider="openai", requested="gpt-4o")
OUTPUT = Output(text="42 MW", finish_reason="stop")


def decoded(log: ReadableEventLog) -> list[DecodedEvent]:
    return [CODEC.decode(r.value) for r in log.read(0, 1_000_000)]


def wait_until(condition: Callable[[], bool], *, deadline_s: float = 15.0) -> bool:
    """Poll until `condition` holds; a generous deadline, not a performance assertion."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def record_simple(recorder: Recorder, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {"feature": "day-ahead-load", "prompt": PROMPT, "model": MODEL, "output": OUTPUT}
    kwargs.update(overrides)
    return recorder.record(**kwargs)


class BlockingLog:
    """A log whose append waits until the test opens the gate: the log is slow or hung."""

    def __init__(self) -> None:
        self.inner = MemoryEventLog()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.inner.append(records)

    def close(self) -> None:
        self.gate.set()


class OutageLog:
    """A readable log that raises LogUnavailableError (after an optional stall) while `down` is set."""

    partition = 0

    def __init__(self, inner: ReadableEventLog, *, stall_s: float = 0.0) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.stall_s = stall_s
        self.failing_append_started = threading.Event()
        self.failing_append_finished = threading.Event()
        self.failed_appends = 0

    def append(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        if self.down.is_set():
            self.failing_append_started.set()
            time.sleep(self.stall_s)
            self.failed_appends += 1
            self.failing_append_finished.set()
            raise LogUnavailableError("injected: the log is down")
        self.inner.append(records)

    def read(self, offset: int, limit: int) -> list[Any]:
        return self.inner.read(offset, limit)

    def end_offset(self) -> int:
        return self.inner.end_offset()

    def close(self) -> None:
        pass  # the test still reads the inner log after the recorder closes
