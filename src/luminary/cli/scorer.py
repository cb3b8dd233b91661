"""``luminary score|rerank`` and ``luminary scorer init|build-data|train|best-of-n|demo`` (Cappy)."""

from __future__ import annotations

from pathlib import Path

import typer

scorer_app = typer.Typer(help="Cappy: build data for, train and use a scorer of (instruction, response) pairs.",
                         no_args_is_help=True)

ALLOW_PICKLE = typer.Option(False, "--allow-pickle", help="read *.bin weights with torch.load(weights_only=True)")
BATCH = typer.Option(32, "--batch-size", min=1)
MAX_LENGTH = typer.Option(512, "--max-length", min=8, help="pairs are truncated to this many tokens")
OUTPUT = typer.Option(None, "--output", "-o", help="JSONL to write (default: stdout)")
PROMPT = typer.Option("{instruction}", "--prompt-template", help="a causal generator's prompt; {instruction} is filled in")
STOP = typer.Option([], "--stop", help="cut a candidate at this string (repeatable)")


def score(
    model: Path = typer.Argument(..., help="a scorer folder (Cappy format: *ForSequenceClassification, one label)"),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows with instruction and response"),
    output: Path = OUTPUT, batch_size: int = BATCH, max_length: int = MAX_LENGTH, allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Score (instruction, response) pairs: each row gains "score"."""
    from luminary.scorer.files import score_file

    score_file(model, input, output, batch_size, allow_pickle, max_length)


def rerank(
    model: Path = typer.Argument(..., help="a scorer folder"),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows with instruction and candidates (a list)"),
    output: Path = OUTPUT, batch_size: int = BATCH, max_length: int = MAX_LENGTH, allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Order candidates by score: each row gains "ranking", "best" and "best_index" (classification)."""
    from luminary.scorer.files import rerank_file

    rerank_file(model, input, output, batch_size, allow_pickle, max_length)


@scorer_app.command("init")
def init(
    backbone: Path = typer.Argument(..., help="a pretrained encoder folder (BERT, RoBERTa, ...)"),
    out: Path = typer.Option(..., "--out", help="the new scorer folder"),
    num_layers: int = typer.Option(None, "--num-layers", min=1, help="keep only the first layers"),
    seed: int = typer.Option(0, help="seeds the new head"),
    allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Make a scorer from a pretrained encoder: the encoder plus a fresh one-output head."""
    from luminary.scorer.model import Scorer

    Scorer.from_backbone(backbone, seed=seed, allow_pickle=allow_pickle, num_layers=num_layers).save_pretrained(out)
    typer.echo(str(out))
    typer.echo(f"next: luminary scorer train CONFIG   (with model: {out}; see examples/scorer-train.yaml)")


@scorer_app.command("build-data")
def build_data(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows with instruction, references (a list), task"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL of {instruction, response, label, task, source}"),
    generator: Path = typer.Option(None, "--generator", help="a causal or seq2seq LM folder whose candidates to label"),
    n: int = typer.Option(17, "--n", min=1, help="candidates per instruction (Cappy's plan)"),
    size: int = typer.Option(None, "--size", min=1, help="repeat or cut to this many examples"),
    seed: int = typer.Option(0),
    prompt_template: str = PROMPT, stop: list[str] = STOP,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Cappy's training data: gold 1.0, same-task negatives 0.0, generations their ROUGE-L F."""
    from luminary.scorer.files import build_data_file

    examples = build_data_file(input, out, generator, n, size, seed, prompt_template, stop, max_new_tokens,
                               allow_pickle)
    typer.echo(f"{len(examples)} examples -> {out}")
    typer.echo(f"next: luminary scorer train CONFIG   (with data: {out}; see examples/scorer-train.yaml)")


@scorer_app.command("train")
def train(
    config: Path = typer.Argument(..., help="YAML config (see examples/scorer-train.yaml)"),
    out: Path = typer.Option(None, "--out", help="run folder (default: runs/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
) -> None:
    """Train a scorer by mean squared error through the one Trainer; it lands in OUT/scorer."""
    from luminary.core.config import load_config
    from luminary.scorer.train import ScorerTrainConfig, train_scorer

    result = train_scorer(load_config(config, ScorerTrainConfig), out or Path("runs") / config.stem, resume=resume)
    last = result["records"][-1] if result["records"] else {}
    typer.echo(f"step {last.get('step', '-')}: loss {last.get('loss', float('nan')):.4f} -> {result['scorer']}")
    typer.echo(f"next: luminary score {result['scorer']} --input pairs.jsonl   (rows with instruction, response)")


@scorer_app.command("best-of-n")
def best_of_n(
    scorer: Path = typer.Argument(..., help="a scorer folder"),
    generator: Path = typer.Argument(..., help="a causal or seq2seq LM folder"),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows with instruction"),
    output: Path = OUTPUT,
    n: int = typer.Option(17, "--n", min=1, help="candidates (beam 4 once, the rest shared by four samplers)"),
    seed: int = typer.Option(0), prompt_template: str = PROMPT, stop: list[str] = STOP,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    batch_size: int = BATCH, allow_pickle: bool = ALLOW_PICKLE,
) -> None:
    """Boost a generator: it writes n candidates, the scorer picks the best."""
    from luminary.scorer.files import best_of_n_file

    best_of_n_file(scorer, generator, input, output, n, seed, prompt_template, stop, max_new_tokens, batch_size,
                   allow_pickle)


@scorer_app.command("demo")
def demo(
    config: Path = typer.Argument(None, help="YAML config (see examples/scorer-demo.yaml); default settings without"),
    out: Path = typer.Option(Path("runs/scorer-demo"), "--out"),
    generator: Path = typer.Option(None, "--generator", help="a causal or seq2seq LM folder (e.g. runs/crystal-tiny)"),
) -> None:
    """The offline demonstration: stdlib tasks, train a scorer, rank held-out tasks, best-of-n."""
    import json

    from luminary.core.config import load_config
    from luminary.scorer.experiment import DemoConfig, run_demo

    cfg = load_config(config, DemoConfig) if config else DemoConfig()
    if generator is not None:
        cfg.generator = str(generator)
    report = run_demo(cfg, out)
    typer.echo(json.dumps({k: report[k] for k in report if k.startswith(("ranking", "best_of_n"))}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
    app.command("rerank")(rerank)
    app.add_typer(scorer_app, name="scorer")
