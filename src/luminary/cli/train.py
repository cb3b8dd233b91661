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


def merge_lora(
    adapter: Path = typer.Argument(..., help="an adapter folder, or a run folder (its latest checkpoint)"),
    out: Path = typer.Option(..., "--out", help="folder for the merged model"),
    base: Path = typer.Option(None, "--base", help="base model folder (default: the one the adapter names)"),
) -> None:
    """Fold a LoRA adapter into its base: a plain transformers folder, no peft needed to load it."""
    from luminary.train.lora import merge_adapter

    typer.echo(f"merged model: {merge_adapter(adapter, out, base)}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("merge-lora")(merge_lora)
