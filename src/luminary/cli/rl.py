"""``luminary rl train CONFIG`` and ``luminary rl generate MODEL``: soft Q-learning for text generation."""

from __future__ import annotations

from pathlib import Path

import typer

rl = typer.Typer(help="Soft Q-learning for text generation (on-, off- and mixed-policy, any reward).",
                 no_args_is_help=True)


@rl.command("train")
def train(
    config: Path = typer.Argument(..., help="YAML config (see examples/rl-*.yaml)"),
    out: Path = typer.Option(None, "--out", help="run folder (default: runs/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
) -> None:
    """Train a causal-LM or seq2seq policy with soft Q-learning."""
    from luminary.core.config import load_config
    from luminary.rl.config import RLConfig
    from luminary.rl.run import run_rl

    records = run_rl(load_config(config, RLConfig), out or Path("runs") / config.stem, resume=resume)
    if records:
        last = records[-1]
        typer.echo(f"step {last['step']}: loss {last['loss']:.4f} reward {last.get('reward_mean', float('nan')):.2f}")
    run = out or Path("runs") / config.stem
    typer.echo(f"-> {run}")
    typer.echo(f"next: luminary rl generate {run} --source 'a source text'")


@rl.command("generate")
def generate(
    model: Path = typer.Argument(..., help="a policy folder (a checkpoint of luminary rl train, or any generator)"),
    source: list[str] = typer.Option(None, "--source", "-s", help="a source text (repeatable)"),
    input: Path = typer.Option(None, "--input", help="JSONL with a 'source' field per line"),
    beams: int = typer.Option(10, "--beams", min=1, help="beam search width (1: greedy)"),
    sample: bool = typer.Option(False, "--sample", help="sample (top-k / top-p) instead of beam search"),
    top_k: int = typer.Option(50, min=0),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0),
    max_new_tokens: int = typer.Option(32, min=1),
    seed: int = typer.Option(0),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read *.bin weights with weights_only=True"),
) -> None:
    """Generate from a policy: one output line per source."""
    from luminary.core.errors import LuminaryError
    from luminary.core.io import read_jsonl
    from luminary.rl.config import SamplingConfig
    from luminary.rl.run import generate as run_generate

    sources = list(source or [])
    if input is not None:
        sources += [str(r["source"]) for r in read_jsonl(input, required=("source",))]
    if not sources:
        raise LuminaryError("give --source TEXT or --input FILE.jsonl")
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p)
    for text in run_generate(model, sources, num_beams=beams, sample=sample, sampling=sampling, seed=seed,
                             allow_pickle=allow_pickle):
        typer.echo(text)


def register(app: typer.Typer) -> None:
    app.add_typer(rl, name="rl")
