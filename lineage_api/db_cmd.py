"""`lineage db`: the index schema's revision, and upgrading it as a deploy step.

These commands open the index without the schema check every other command makes: they are how a store
that is behind gets up to date when LINEAGE_AUTO_MIGRATE is off. alembic is imported only when one runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from lineage_api.settings import Settings
from schemas.errors import LineageError

if TYPE_CHECKING:
    from sqlalchemy import Engine

db_app = typer.Typer(
    help="The lineage index's schema: its revision, upgrading it, the list of revisions.\n\n"
    "Every process brings the schema up to date when it opens the index, unless LINEAGE_AUTO_MIGRATE=false; "
    "then run `lineage db upgrade` once per deploy, before starting the API and the workers.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)  # one line per revision, however narrow the terminal

# The --data-dir option of the other commands, repeated: lineage_api.cli imports this module.
DataDir = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option("--data-dir", "-d", help="Data directory (env LINEAGE_DATA_DIR, default ./lineage-data)"),
]
Target = Annotated[str, typer.Option("--to", metavar="REV", help="Stop at this revision (see `lineage db history`)")]


@db_app.command()
def upgrade(data_dir: DataDir = None, to: Target = "head") -> None:
    """Apply the schema migrations the index lacks, oldest first, and print each one.

    Creates the tables of a new index (env LINEAGE_INDEX_URL, default <data-dir>/index.db). A store made before
    migrations existed is adopted at the baseline revision. Safe while other processes start: on PostgreSQL
    an advisory lock lets one process migrate at a time, and the others then find the work done.
    """
    from streams import migrate

    engine = _open(_settings(data_dir))
    try:
        applied = migrate.upgrade(engine, to)
        now = migrate.current(engine)
    except LineageError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    at_head = now == migrate.head()
    if not applied:
        console.print(f"already at {'head' if at_head else 'revision'} {now}")
        return
    messages = dict(migrate.history())
    for revision in applied:
        console.print(f"applied {revision}  {escape(messages.get(revision, ''))}")
    console.print(f"now at {now}" + (" (head)" if at_head else ""))


@db_app.command()
def current(data_dir: DataDir = None) -> None:
    """Print the index's schema revision and whether it is the one this version needs (head).

    Exits 1 when the index is behind; `lineage db upgrade` brings it up to date.
    """
    from streams import migrate

    settings = _settings(data_dir)
    if settings.index_url is None and not (settings.data_dir / "index.db").exists():
        raise _fail(f"no lineage index in {settings.data_dir.resolve()}; `lineage db upgrade` creates one")
    engine = _open(settings)
    try:
        revision = migrate.current(engine)
    except LineageError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    required = migrate.head()
    if revision == required:
        console.print(f"{revision} (head)")
        return
    console.print(f"{revision or 'none'} (behind: head is {required}; run `lineage db upgrade`)")
    raise typer.Exit(1)


@db_app.command()
def history() -> None:
    """List the schema revisions this version knows, oldest first; the last is head."""
    from streams import migrate

    required = migrate.head()
    for revision, message in migrate.history():
        console.print(f"{revision}  {escape(message)}" + ("  (head)" if revision == required else ""))


def _settings(data_dir: Path | None) -> Settings:
    from lineage_api.cli import load_settings  # imported when called: cli imports this module

    return load_settings(data_dir)


def _open(settings: Settings) -> Engine:
    """The index's engine without open_engine's schema check: these commands are how a store gets there."""
    from sqlalchemy.exc import SQLAlchemyError

    from streams.store import create_index_engine

    try:
        return create_index_engine(settings.resolved_index_url)
    except (SQLAlchemyError, LineageError) as exc:
        raise _fail(f"cannot open the lineage index: {exc}") from exc


def _fail(message: str) -> typer.Exit:
    from lineage_api.cli import fail

    return fail(message)
