"""The `lineage` command: run the store, fill it with a demo, and trace outputs from a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from lineage_api.db_cmd import db_app
from lineage_api.settings import Settings
from schemas.errors import LineageError

app = typer.Typer(
    name="lineage",
    help="llm-lineage: record every LLM request, trace any output back to its inputs, reproduce it.\n\n"
    "With no configuration everything runs embedded under ./lineage-data (SQLite log and index). "
    "Settings come from LINEAGE_* environment variables; flags override them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option("--data-dir", "-d", help="Data directory (env LINEAGE_DATA_DIR, default ./lineage-data)"),
]
Host = Annotated[Optional[str], typer.Option(help="Interface to bind (env LINEAGE_HOST, default 127.0.0.1)")]  # noqa: UP045
Port = Annotated[Optional[int], typer.Option(help="Port to listen on (env LINEAGE_PORT, default 8600)")]  # noqa: UP045


def load_settings(data_dir: Path | None = None, host: str | None = None, port: int | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return Settings(**overrides)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def up(data_dir: DataDir = None, host: Host = None, port: Port = None) -> None:
    """Run the API and the embedded stream runner in one process.

    Ctrl-C or SIGTERM stops it cleanly: in-flight requests finish, the runner commits its batch. After
    SIGTERM the process exits by that signal (status -15 / 143), as uvicorn re-raises it.
    """
    from lineage_api.server import serve

    settings = load_settings(data_dir, host, port)
    _logging()
    serve(settings)


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    days: Annotated[int, typer.Option(min=1, max=365, help="Days of forecasts to simulate")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed tells the same story")] = 7,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Keep serving the API afterwards")] = True,
) -> None:
    """Fill the store with a simulated grid-forecasting assistant, then serve it.

    Day-ahead load forecasts per region, grounded in weather and SCADA documents; two bundle releases; a
    provider model swap mid-stream that shifts the numbers; chained summaries; a dispatch system consuming
    forecasts. Prints output IDs worth tracing and the commands to trace them.
    """
    from lineage_api.demo_cmd import run_demo

    settings = load_settings(data_dir, host, port)
    _logging()
    try:
        run_demo(settings, days=days, seed=seed, console=console)
    except LineageError as exc:
        raise fail(str(exc)) from exc
    if serve_after:
        from lineage_api.server import serve

        serve(settings)


@app.command()
def trace(
    output_id: Annotated[str, typer.Argument(help="The output to trace, e.g. out_06h4…")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record and lineage graph as JSON")] = False,
    depth: Annotated[int, typer.Option(min=1, max=10, help="Levels of lineage to walk")] = 3,
) -> None:
    """Show everything behind one output: prompt, documents, model, parameters, bundle, chain, consumers."""
    from lineage_api.trace_view import render_trace
    from streams.lineage import lineage_graph

    settings = load_settings(data_dir)
    reader, engine = _open_reader(settings)
    try:
        record = reader.output(output_id)
        graph = lineage_graph(engine, output_id, direction="both", depth=depth)
    except LineageError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps({"output": record, "lineage": graph}, indent=2, ensure_ascii=False) + "\n")
    else:
        render_trace(console, record, graph)


@app.command()
def outputs(
    data_dir: DataDir = None,
    feature: Annotated[Optional[str], typer.Option(help="Only this feature")] = None,  # noqa: UP045
    bundle: Annotated[Optional[str], typer.Option(help="Only this bundle ID")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option(help="Only this served model version")] = None,  # noqa: UP045
    status: Annotated[Optional[str], typer.Option(help="OK, ERROR, REFUSED or TIMEOUT")] = None,  # noqa: UP045
    since: Annotated[Optional[datetime], typer.Option(help="From this time (UTC unless a zone is given)")] = None,  # noqa: UP045
    until: Annotated[Optional[datetime], typer.Option(help="Before this time")] = None,  # noqa: UP045
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows per page")] = 20,
    cursor: Annotated[Optional[str], typer.Option(help="next_cursor printed by the previous page")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List recorded outputs, newest first, with filters and paging."""
    from lineage_api.trace_view import render_outputs
    from streams.reader import OutputFilter

    settings = load_settings(data_dir)
    reader, engine = _open_reader(settings)
    flt = OutputFilter(feature=feature, bundle_id=bundle, model=model, status=status, since=since, until=until)
    try:
        page = reader.outputs(flt, cursor=cursor, limit=limit)
    except LineageError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps({"items": page.items, "next_cursor": page.next_cursor}, indent=2) + "\n")
    else:
        render_outputs(console, page.items, page.next_cursor)


@app.command()
def verify(
    data_dir: DataDir = None,
    proof: Annotated[Optional[Path], typer.Option(help="Check one saved proof (JSON from /v1/outputs/{id}/proof) offline")] = None,  # noqa: UP045,E501
    key: Annotated[Optional[str], typer.Option(help="Trusted key: PEM file or base64 raw Ed25519 public key")] = None,  # noqa: UP045
    from_root: Annotated[Optional[str], typer.Option(help="With --proof: the root (hex) you saw at consistency.from_size")] = None,  # noqa: UP045,E501
) -> None:
    """Prove the store was not altered: every record against the Merkle tree, every signed checkpoint,
    the consistency of consecutive checkpoints, and the index's copies. Exits 1 naming the first bad record.

    With --proof FILE, checks one saved proof offline instead (no data dir needed).
    """
    from lineage_api.verify_cmd import load_trusted_key, verify_proof_file, verify_store

    try:
        trusted = load_trusted_key(key) if key is not None else None
        if proof is not None:
            problems = verify_proof_file(proof, console, trusted, from_root)
        else:
            settings = load_settings(data_dir)
            _require_index(settings, "nothing to verify")
            problems = verify_store(settings, console, trusted)
    except LineageError as exc:
        raise fail(str(exc)) from exc
    if problems:
        raise typer.Exit(1)


app.add_typer(db_app, name="db", help="The index schema: its revision, `lineage db upgrade`, the revision history.")


def _register_kafka_commands() -> None:
    from lineage_api.kafka_cmd import topics_app, worker

    app.command()(worker)
    app.add_typer(topics_app, name="topics")


_register_kafka_commands()


def _require_index(settings: Settings, advice: str) -> None:
    """Reading commands must not create an empty store where the user mistyped a path."""
    if settings.index_url is None and not (settings.data_dir / "index.db").exists():
        raise fail(f"no lineage index in {settings.data_dir.resolve()}; {advice}")


def _open_reader(settings: Settings) -> tuple[Any, Any]:
    from streams.reader import IndexReader
    from streams.store import open_engine

    _require_index(settings, "run `lineage up` or `lineage demo` first, or pass --data-dir")
    try:
        engine = open_engine(settings.resolved_index_url, migrate=settings.auto_migrate)
    except LineageError as exc:
        raise fail(str(exc)) from exc
    return IndexReader(engine), engine


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    app()
