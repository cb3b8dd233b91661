"""``luminary activity synth|run|export`` (ARIC: classroom activity recognition, continual learning)."""

from __future__ import annotations

from pathlib import Path

import typer

activity_app = typer.Typer(help="ARIC: classroom activity recognition, class-incremental and few-shot learning.",
                           no_args_is_help=True)


@activity_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="the folder to write (ARIC's released layout)"),
    scale: float = typer.Option(0.01, "--scale", min=1e-6, max=1.0, help="fraction of ARIC's instance counts"),
    seed: int = typer.Option(0, "--seed"),
    min_per_class: int = typer.Option(12, "--min-per-class", min=2, help="instances of a class at least"),
    feature_format: str = typer.Option("npy", "--format", help="npy, npz or safetensors"),
    audio_seconds: float = typer.Option(0.5, "--audio-seconds", min=0.05),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing folder"),
) -> None:
    """Write a synthetic ARIC: imbalanced classes, per-backbone features, captions, audio, index files."""
    from luminary.activity.synth import SynthConfig, make_synthetic
    from luminary.core.config import validate

    config = validate(SynthConfig, {"scale": scale, "seed": seed, "min_per_class": min_per_class,
                                    "feature_format": feature_format, "audio_seconds": audio_seconds}, "synth")
    summary = make_synthetic(out, config, overwrite=overwrite)
    typer.echo(f"{summary['n_instances']} instances in {summary['n_samples']} samples "
               f"({summary['n_train']} train, {summary['n_test']} test) -> {out}")
    typer.echo("next: luminary activity run CONFIG --out RESULTS   (see examples/activity-cil.yaml)")


@activity_app.command("run")
def run(
    config: Path = typer.Argument(..., help="YAML config (see examples/activity-cil.yaml)"),
    out: Path = typer.Option(..., "--out", help="the results folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing results folder"),
) -> None:
    """Train and compare the config's methods on its protocol; print the table, write plots and results.json."""
    from luminary.activity.run import ActivityRunConfig, run_experiment
    from luminary.core.config import load_config

    result = run_experiment(load_config(config, ActivityRunConfig), out, overwrite=overwrite)
    typer.echo(result["table"])
    typer.echo(f"-> {out}/results.json, {out}/accuracy_over_steps.png")
    typer.echo(f"next: read {out}/results.json; luminary activity export --out EXPORT --config {config}")


@activity_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="folder for avalanche_nc_benchmark.json and pycil_aric.json"),
    config: Path = typer.Option(None, "--config", help="a run config whose protocol to export (default: ARIC's)"),
    model_name: str = typer.Option("icarl", "--model-name", help="PyCIL's model_name"),
) -> None:
    """Export the class-incremental split as Avalanche nc_benchmark arguments and a PyCIL config."""
    from luminary.activity.export import export_split
    from luminary.activity.protocols import ProtocolConfig
    from luminary.activity.run import ActivityRunConfig
    from luminary.core.config import load_config

    protocol = load_config(config, ActivityRunConfig).protocol if config else ProtocolConfig()
    for path in export_split(protocol, out, model_name):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(activity_app, name="activity")
