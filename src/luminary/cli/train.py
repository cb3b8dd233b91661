"""``luminary train CONFIG``: fine-tune a causal LM through the one Trainer."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    config: Path = typer.Argument(..., help="YAML config (see examples/finetune-tiny.yaml)"),
    out: Path = typer.Option(None, "--out", help="run folder (default: runs/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
) -> None:
    """Fine-tune (or train from a preset) a causal LM on a text or JSONL dataset."""
    from luminary.core.config import load_config
    from luminary.train.finetune import FinetuneConfig, run_finetune

    cfg = load_config(config, FinetuneConfig)
    records = run_finetune(cfg, out or Path("runs") / config.stem, resume=resume)
    from luminary.core.progress import is_main_process

    if records and is_main_process():
        last = records[-1]
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
