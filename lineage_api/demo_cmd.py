"""`lineage demo`: record the simulated assistant through the real SDK into the embedded log, build the
index with the same runner `lineage up` uses, and tell the user what to look at."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lineage_api.demo import DEFAULT_REGIONS, planned_calls, run_scenario
from lineage_api.server import tune_gc
from lineage_api.services import drain_spool, open_services
from lineage_api.settings import Settings
from producers.recorder import Recorder


def run_demo(settings: Settings, *, days: int, seed: int, console: Console) -> None:
    tune_gc()
    services = open_services(settings)
    try:
        drain_spool(services)
        total = planned_calls(days, DEFAULT_REGIONS)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("recording LLM calls", total=total)
            with Recorder(log_url=settings.resolved_log_url, spool_dir=settings.spool_dir) as recorder:
                summary = run_scenario(
                    recorder, days=days, seed=seed,
                    progress=lambda done, _total: progress.update(task, completed=done),
                )
            runner = services.embedded
            index_task = progress.add_task("indexing events", total=runner.lag())
            runner.on_batch = lambda good, bad: progress.advance(index_task, good + bad)
            runner.catch_up()
            runner.on_batch = None
        stats = services.reader.stats()
    finally:
        services.close()
    console.print(
        f"\n[bold]Recorded[/] {summary.forecasts} LLM calls and {summary.consumed} consumptions; the index holds "
        f"{stats['outputs']} outputs, {stats['bundles']} bundles, {stats['dead_letters']} dead letters "
        f"in {settings.data_dir.resolve()}.\n"
        f"The provider swapped the served model at {summary.model_swap_at.isoformat()}.\n"
    )
    console.print("[bold]Outputs worth tracing:[/]")
    for output_id, description in summary.sample_outputs:
        console.print(f"  {output_id}  {description}")
    first = summary.sample_outputs[0][0]
    flag = "" if settings.data_dir.as_posix() == "lineage-data" else f" --data-dir {settings.data_dir}"
    console.print(
        "\n[bold]Try:[/]\n"
        f"  lineage trace {first}{flag}\n"
        f"  lineage trace {first}{flag} --json\n"
        f"  lineage outputs{flag} --feature day-ahead-load --limit 10\n"
        f"  lineage verify{flag}\n"
        f"  curl http://{settings.host}:{settings.port}/v1/outputs/{first}\n"
        f"  curl 'http://{settings.host}:{settings.port}/v1/outputs/{first}/lineage?direction=both&depth=3'\n"
        f"  curl http://{settings.host}:{settings.port}/v1/outputs/{first}/proof\n"
    )
