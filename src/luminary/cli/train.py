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

    from luminary.core.progress import is_main_process
    from luminary.core.runs import list_checkpoints

    cfg = load_config(config, FinetuneConfig)
    run = out or Path("runs") / config.stem
    records = run_finetune(cfg, run, resume=resume)
    if records and is_main_process():
        last = records[-1]
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f}")
        checkpoints = list_checkpoints(run / "checkpoints") if (run / "checkpoints").is_dir() else []
        if checkpoints:
            final = checkpoints[-1][1]
            typer.echo(f"final checkpoint: {final}")
            adapter = (final / "adapter_config.json").is_file()
            typer.echo(f"next: luminary merge-lora {run} --out {run}-merged" if adapter
                       else f"next: luminary generate {final} --prompt 'def ' --greedy")


def merge_lora(
    adapter: Path = typer.Argument(..., help="an adapter folder, or a run folder (its latest checkpoint)"),
    out: Path = typer.Option(..., "--out", help="folder for the merged model"),
    base: Path = typer.Option(None, "--base", help="base model folder (default: the one the adapter names)"),
) -> None:
    """Fold a LoRA adapter into its base: a plain transformers folder, no peft needed to load it."""
    from luminary.train.lora import merge_adapter

    merged = merge_adapter(adapter, out, base)
    typer.echo(f"merged model: {merged}")
    typer.echo(f"next: luminary generate {merged} --prompt 'def ' --greedy")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("merge-lora")(merge_lora)
