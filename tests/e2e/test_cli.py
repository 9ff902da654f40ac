"""The `lineage` command as a user runs it: fill a data dir with the demo, then trace and list outputs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import run_cli

pytestmark = pytest.mark.e2e

OUTPUT_ID = re.compile(r"\bout_[0-9a-v]{26}\b")


@dataclass(frozen=True)
class Demo:
    data_dir: Path
    stdout: str
    output_ids: list[str]  # in the order the demo printed them


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data_dir = tmp_path_factory.mktemp("demo")
    done = run_cli("demo", "--no-serve", "--data-dir", str(data_dir), "--days", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = list(dict.fromkeys(OUTPUT_ID.findall(done.stdout)))
    return Demo(data_dir, done.stdout, ids)


def _flat(text: str) -> str:
    """Whitespace collapsed, so a message reads the same however the terminal wrapped it."""
    return " ".join(text.split())


def test_demo_exits_0_and_prints_output_ids_worth_tracing(demo: Demo) -> None:
    assert len(demo.output_ids) >= 3
    assert f"lineage trace {demo.output_ids[0]} --data-dir {demo.data_dir}" in _flat(demo.stdout)
    assert (demo.data_dir / "log.db").is_file() and (demo.data_dir / "index.db").is_file()
    assert "0 dead letters" in _flat(demo.stdout)


def test_trace_json_prints_the_record_and_its_lineage(demo: Demo) -> None:
    oid = demo.output_ids[0]
    done = run_cli("trace", oid, "--data-dir", str(demo.data_dir), "--json")

    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    record, graph = body["output"], body["lineage"]
    assert record["output_id"] == oid and record["feature"] == "day-ahead-load"
    assert record["prompt"]["messages"] and record["model"]["served"] and record["bundle"]["registered"]
    assert record["retrieval"]["documents"] and "temperature" in record["params"]
    assert graph["root"] == f"output:{oid}" and graph["direction"] == "both" and graph["depth"] == 3
    types = {n["type"] for n in graph["nodes"]}
    assert {"output", "bundle", "prompt", "model", "document"} <= types
    ids = {n["id"] for n in graph["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])


def test_trace_of_a_chained_summary_shows_its_parent_outputs(demo: Demo) -> None:
    summary = next(oid for oid, line in _sample_lines(demo) if "summary" in line)
    body = json.loads(run_cli("trace", summary, "--data-dir", str(demo.data_dir), "--json").stdout)

    parents = body["output"]["parents"]
    assert parents and body["output"]["feature"] == "system-summary"
    fed = {e["source"] for e in body["lineage"]["edges"] if e["kind"] == "fed"}
    assert {f"output:{p}" for p in parents} <= fed


def test_trace_without_json_renders_the_record_for_a_terminal(demo: Demo) -> None:
    oid = demo.output_ids[0]
    done = run_cli("trace", oid, "--data-dir", str(demo.data_dir))

    assert done.returncode == 0, done.stderr
    out = _flat(done.stdout)
    assert oid in out and "prompt" in out and "retrieved context" in out and "lineage (depth 3)" in out


def test_trace_of_an_unknown_id_exits_nonzero_naming_it_on_stderr(demo: Demo) -> None:
    done = run_cli("trace", "out_doesnotexist", "--data-dir", str(demo.data_dir))

    assert done.returncode != 0
    assert "out_doesnotexist" in done.stderr and "not found" in done.stderr
    assert done.stdout == ""


def test_outputs_json_lists_one_feature_and_pages_to_the_end(demo: Demo) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        args = ["outputs", "--data-dir", str(demo.data_dir), "--json", "--feature", "day-ahead-load",
                "--limit", "7", *(["--cursor", cursor] if cursor else [])]
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        page = json.loads(done.stdout)
        assert all(i["feature"] == "day-ahead-load" for i in page["items"])
        seen += [i["output_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) > 7, "the demo's day of forecasts spans several pages"
    assert len(seen) == len(set(seen)) and seen == sorted(seen, reverse=True)
    forecasts = {oid for oid, line in _sample_lines(demo) if "forecast issued" in line}
    assert forecasts and forecasts <= set(seen)


def test_outputs_table_names_the_columns(demo: Demo) -> None:
    done = run_cli("outputs", "--data-dir", str(demo.data_dir), "--limit", "3")

    assert done.returncode == 0, done.stderr
    assert "output_id" in done.stdout and "more: --cursor" in done.stdout
    assert len(set(OUTPUT_ID.findall(done.stdout))) == 3


@pytest.mark.parametrize("command", [("trace", "out_x"), ("outputs",)], ids=["trace", "outputs"])
def test_commands_on_an_empty_data_dir_say_to_run_up_or_demo_first(tmp_path: Path, command: tuple[str, ...]) -> None:
    done = run_cli(*command, "--data-dir", str(tmp_path))

    assert done.returncode != 0
    message = _flat(done.stderr)
    assert "lineage up" in message and "lineage demo" in message and str(tmp_path) in message
    assert not (tmp_path / "index.db").exists(), "reading must not create an empty index"


HELP = {
    (): ["up", "demo", "trace", "outputs", "LINEAGE_"],
    ("up",): ["--data-dir", "--host", "--port"],
    ("demo",): ["--data-dir", "--days", "--seed", "--serve", "--no-serve", "--port"],
    ("trace",): ["output_id", "--data-dir", "--json", "--depth"],
    ("outputs",): ["--data-dir", "--feature", "--bundle", "--model", "--status", "--since", "--until", "--limit",
                   "--cursor", "--json"],
}


@pytest.mark.parametrize(("command", "mentions"), HELP.items(), ids=[" ".join(c) or "lineage" for c in HELP])
def test_help_exits_0_and_mentions_every_option(command: tuple[str, ...], mentions: list[str]) -> None:
    done = run_cli(*command, "--help")

    assert done.returncode == 0, done.stderr
    for word in mentions:
        assert word.lower() in done.stdout.lower(), f"`lineage {' '.join(command)} --help` does not mention {word}"


def test_up_help_shows_the_env_var_and_defaults_of_its_options() -> None:
    """The options' help says `[env LINEAGE_DATA_DIR, default ./lineage-data]`, `[default 8600]`, ...;
    that text must reach the user."""
    out = _flat(run_cli("up", "--help").stdout)

    for shown in ("LINEAGE_DATA_DIR", "./lineage-data", "127.0.0.1", "8600"):
        assert shown in out, f"`lineage up --help` does not show {shown}"


def _sample_lines(demo: Demo) -> list[tuple[str, str]]:
    """(output ID, its description) from the demo's 'Outputs worth tracing' list."""
    listed = demo.stdout.split("Outputs worth tracing:", 1)[1].split("Try:", 1)[0]
    return [(m.group(0), _flat(listed[m.end():].split("out_", 1)[0])) for m in OUTPUT_ID.finditer(listed)]
