"""``luminary pretrain RECIPE``: the Crystal recipe runner."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain(
    recipe: Path = typer.Argument(..., help="recipe YAML (see examples/crystal-tiny.yaml)"),
    out: Path = typer.Option(None, "--out", help="run folder (default: runs/<recipe name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run folder from its latest checkpoint"),
) -> None:
    """Prepare data, train all phases, evaluate per source; print the phase table."""
    from rich.console import Console
    from rich.table import Table

    from luminary.pretrain.runner import pretrain as run, summary_table

    from luminary.core.progress import is_main_process

    result = run(recipe, out, resume=resume)
    if not is_main_process():
        return
    header, rows = summary_table(result)
    table = Table(title=f"{result.run_dir}: tokens per source and validation loss at each phase's end")
    for column in header:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if result.completion is not None:
        typer.echo("--- completion from the final model ---")
        typer.echo(result.completion)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
