"""A record the index refuses must not stall the stream: it is dead-lettered, the rest is indexed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from producers import ModelCall, Output, Prompt, Recorder
from producers.memory_log import MemoryEventLog
from schemas.errors import IndexRejectedError
from streams.projector import RowBatch
from streams.reader import IndexReader, OutputFilter
from streams.runner import EmbeddedRunner
from streams.store import IndexStore, open_engine


def _record(recorder: Recorder, feature: str) -> str:
    prompt = Prompt(template_id="t", messages=())
    return recorder.record(feature=feature, prompt=prompt, model=ModelCall(provider="p", requested="m"),
                           output=Output(text="x"))


class RefusingStore(IndexStore):
    """Injected fault: the database refuses any batch holding an output of feature 'poison'."""

    def apply(self, rows: RowBatch, **kwargs: Any) -> None:
        if any(o["feature"] == "poison" for o in rows.outputs):
            raise IndexRejectedError("value violates a constraint (injected)")
        super().apply(rows, **kwargs)


def test_refused_event_is_dead_lettered_and_the_rest_indexed(tmp_path: Path) -> None:
    log = MemoryEventLog()
    with Recorder(log) as recorder:
        ids = [_record(recorder, "poison" if i == 7 else "ok") for i in range(20)]
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    runner = EmbeddedRunner(log, RefusingStore(engine), batch_size=50)
    assert runner.catch_up() == 20
    reader = IndexReader(engine)
    indexed = {i["output_id"] for i in reader.outputs(OutputFilter(), limit=100).items}
    assert indexed == set(ids) - {ids[7]}
    dead = reader.dead_letters()
    assert [d["log_offset"] for d in dead] == [7]
    assert "refused" in dead[0]["reason"]
    assert runner.lag() == 0
    # Running again changes nothing: positions moved with every step.
    assert runner.catch_up() == 0
    assert reader.stats()["outputs"] == 19


def test_overlong_and_nul_fields_are_dead_lettered_before_reaching_the_index(tmp_path: Path) -> None:
    log = MemoryEventLog()
    with Recorder(log) as recorder:
        good = _record(recorder, "ok")
        _record(recorder, "x" * 300)
        _record(recorder, "nul\x00inside")
        after = _record(recorder, "ok")
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    runner = EmbeddedRunner(log, IndexStore(engine))
    runner.catch_up()
    reader = IndexReader(engine)
    assert {i["output_id"] for i in reader.outputs(OutputFilter(), limit=10).items} == {good, after}
    reasons = sorted(d["reason"] for d in reader.dead_letters())
    assert reasons == ["InferenceRecorded: outputs.feature contains a NUL character",
                       "InferenceRecorded: outputs.feature is 300 characters, over 256"]


def test_event_over_the_size_limit_is_dead_lettered(tmp_path: Path) -> None:
    log = MemoryEventLog()
    with Recorder(log) as recorder:
        small = _record(recorder, "ok")
        recorder.record(feature="big", prompt=Prompt(template_id="t", messages=()),
                        model=ModelCall(provider="p", requested="m"), output=Output(text="y" * 5000))
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    EmbeddedRunner(log, IndexStore(engine), max_event_bytes=2048).catch_up()
    reader = IndexReader(engine)
    assert [i["output_id"] for i in reader.outputs(OutputFilter(), limit=10).items] == [small]
    (dead,) = reader.dead_letters()
    assert "over the limit of 2048 bytes" in dead["reason"]
