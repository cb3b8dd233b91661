"""``luminary data ...``: look into a run's data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="Inspect pretraining data.", no_args_is_help=True)


@data_app.command("inspect")
def inspect(
    run: Path = typer.Argument(..., help="a pretraining run folder"),
    step: int = typer.Option(..., "--step", help="optimizer step whose batch to rebuild"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Rebuild the batch of STEP from the recipe; its hash must equal the trainer's log."""
    from luminary.pretrain.inspect import inspect_step

    report = inspect_step(run, step)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    drift = ", ".join(f"{rule} {value:.3f}" for rule, value in report["blend_drift"].items())
    typer.echo(f"step {report['step']} (phase {report['phase']}; blend {report['blend']}; "
               f"largest drift from the weights in this phase, in samples: {drift})")
    for row in report["samples"]:
        excerpt = row["excerpt"].replace("\n", "\\n")[:100]
        typer.echo(f"  #{row['index']:>7} {row['source']:<10} epoch {row['epoch']} window {row['window']:>6}  {excerpt}")
    typer.echo(f"batch sha256 {report['batch_sha256']}")
    logged = report["logged_sha256"]
    if logged is None:
        typer.echo("the trainer has not logged this step yet")
    else:
        typer.echo("matches the trainer's log" if logged == report["batch_sha256"] else f"DIFFERS from the log: {logged}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
