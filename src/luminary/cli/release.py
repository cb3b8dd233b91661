"""``luminary release``, ``verify``, ``analyze ...``, ``report``, ``convert crystalcoder|amber``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

analyze_app = typer.Typer(help="Analyses over checkpoints (memorization, validation loss, benchmarks).",
                          no_args_is_help=True)


def release(
    run: Path = typer.Argument(..., help="a pretraining run folder"),
    out: Path = typer.Option(..., "--out", help="release folder to write (must not exist)"),
    fmt: str = typer.Option("jsonl", "--format", help="chunk format: jsonl or parquet"),
    git: bool = typer.Option(False, "--git", help="also a local git repository: branch main, and one branch "
                             "per checkpoint with its files at the root, as the Hub's revisions"),
) -> None:
    """Write RUN as an LLM360-style release: checkpoints, data chunks, index, card, manifest."""
    from luminary.release import make_release

    folder = make_release(run, out, fmt, git=git)
    typer.echo(f"released {folder}")
    typer.echo(f"next: luminary verify {folder}")


def verify(
    folder: Path = typer.Argument(..., help="a release folder"),
    data_dir: Path = typer.Option(None, "--data-dir", help="reuse token shards here instead of re-tokenizing"),
    rebuild: bool = typer.Option(True, "--rebuild/--no-rebuild", help="rebuild every chunk from the recipe"),
    allow_symlinks: bool = typer.Option(False, "--allow-symlinks",
                                        help="accept symbolic links that stay inside the release"),
) -> None:
    """Recheck every sha256, every chunk against the recipe, every step against the log; exit 1 on a difference."""
    from luminary.core.io import MANIFEST, sha256_file
    from luminary.release import verify_release

    problems = verify_release(folder, data_dir, rebuild, allow_symlinks)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{folder}: every file, chunk and step verified; {MANIFEST} sha256 "
               f"{sha256_file(folder / MANIFEST)} (compare it with the one the release's author published)")


@analyze_app.command("memorization")
def memorization(
    release_dir: Path = typer.Argument(..., metavar="RELEASE"),
    ckpt: int = typer.Option(None, "--ckpt", help="checkpoint index (omit with --all)"),
    chunk: int = typer.Option(None, "--chunk", help="data chunk index (omit with --all)"),
    all_pairs: bool = typer.Option(False, "--all", help="every checkpoint × chunk, saved for the report"),
    k: int = typer.Option(32, "--k", min=1, help="prompt tokens"),
    l: int = typer.Option(32, "--l", min=1, help="continuation tokens"),
    samples: int = typer.Option(1000, "--samples", min=1),
    out: Path = typer.Option(None, "--out", help="write the per-sample result as JSON"),
) -> None:
    """Memorization score of a checkpoint on a chunk (Analysis360), or the whole heatmap with --all."""
    from luminary.analysis.over_checkpoints import memorization_grid, memorization_of
    from luminary.core.errors import LuminaryError
    from luminary.core.io import atomic_write_json

    if all_pairs:
        grid = memorization_grid(release_dir, k, l, samples)
        typer.echo(json.dumps({"steps": grid["steps"], "token_match": grid["token_match"]}))
        return
    if ckpt is None or chunk is None:
        raise LuminaryError("give --ckpt and --chunk, or --all")
    result = memorization_of(release_dir, ckpt, chunk, k, l, samples)
    if out is not None:
        atomic_write_json(out, result.to_json())
    typer.echo(json.dumps({"ckpt": ckpt, "chunk": chunk, "token_match": result.token_match,
                           "full_match": result.full_match, "samples": len(result.scores)}))


@analyze_app.command("val-loss")
def val_loss(folder: Path = typer.Argument(..., help="a run or release folder")) -> None:
    """Per-source validation loss at each checkpoint."""
    from luminary.analysis.over_checkpoints import validation_curves

    curves = validation_curves(folder)
    sources = list(curves["val_loss"])
    typer.echo("step\t" + "\t".join(sources))
    for i, step in enumerate(curves["steps"]):
        typer.echo(f"{step}\t" + "\t".join(f"{curves['val_loss'][s][i]:.4f}" for s in sources))


@analyze_app.command("benchmark")
def benchmark(
    folder: Path = typer.Argument(..., help="a run or release folder"),
    task: str = typer.Option(..., "--task", help="code-completion, prose-cloze, FILE.jsonl or module:function"),
    samples: int = typer.Option(200, "--samples", min=1),
) -> None:
    """Score every checkpoint on a task; saved under analysis/ for the report."""
    from luminary.analysis.over_checkpoints import benchmark_over_checkpoints
    from luminary.analysis.tasks import load_task

    name, fn = load_task(task, samples)
    result = benchmark_over_checkpoints(folder, name, fn)
    metrics = result["metrics"]
    typer.echo("step\t" + "\t".join(f"{name}:{m}" for m in metrics))
    for i, step in enumerate(result["steps"]):
        typer.echo(f"{step}\t" + "\t".join(f"{values[i]:.4f}" for values in metrics.values()))


def report(folder: Path = typer.Argument(..., metavar="RUN_OR_RELEASE")) -> None:
    """Write FOLDER/report/index.html: training curves, validation loss, memorization, benchmarks."""
    from luminary.analysis.report import write_report

    typer.echo(str(write_report(folder)))


convert_app = typer.Typer(help="LLM360's released checkpoints as luminary folders (CrystalCoder, Amber).",
                          no_args_is_help=True)


@convert_app.command("crystalcoder")
def convert_crystalcoder(
    src: Path = typer.Argument(..., help="a CrystalCoder folder in its Hugging Face layout (model_type crystalcoder)"),
    out: Path = typer.Option(..., "--out", help="the crystal folder to write"),
    rotary: str = typer.Option("interleaved", "--rotary",
                               help="interleaved (CrystalCoder's GPT-J pairs) or halves (NeoX's rotate_half)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="read *.bin weights with torch.load(weights_only=True)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Write a CrystalCoder checkpoint as a luminary crystal folder (safetensors, its tokenizer, a manifest)."""
    from luminary.release.llm360 import convert_crystalcoder as convert

    result = convert(src, out, rotary, allow_pickle, overwrite)
    typer.echo(f"converted {result['tensors']} tensors, {result['parameters']:,} parameters, rotary "
               f"{result['rotary']} -> {result['out']}")
    typer.echo(f"next: luminary generate {result['out']} --prompt 'def fibonacci(n):'")


@convert_app.command("amber")
def convert_amber(
    src: Path = typer.Argument(..., help="an Amber folder (a Llama folder with pytorch_model*.bin shards)"),
    out: Path = typer.Option(..., "--out", help="the safetensors Llama folder to write"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="read *.bin weights with torch.load(weights_only=True)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Write an Amber checkpoint as a safetensors Llama folder."""
    from luminary.release.llm360 import convert_amber as convert

    result = convert(src, out, allow_pickle, overwrite)
    typer.echo(f"converted {result['parameters']:,} parameters -> {result['out']}")
    typer.echo(f"next: luminary generate {result['out']} --prompt 'The capital of France is'")


def register(app: typer.Typer) -> None:
    app.command("release")(release)
    app.command("verify")(verify)
    app.command("report")(report)
    app.add_typer(analyze_app, name="analyze")
    app.add_typer(convert_app, name="convert")
