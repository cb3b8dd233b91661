"""``luminary evaluate MODEL|RUN|RELEASE --tasks A,B --include DIR``: lm-evaluation-harness, offline."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    target: Path = typer.Argument(..., metavar="MODEL|RUN|RELEASE",
                                  help="a model folder, or a run or release folder (then every checkpoint)"),
    tasks: str = typer.Option(..., "--tasks", help="comma-separated task names (from --include, or lm-eval's own)"),
    include: list[Path] = typer.Option([], "--include", help="a folder of lm-eval task YAMLs (repeatable)"),
    out: Path = typer.Option(None, "--out", help="results file for a model (default: print only); a run or "
                             "release keeps its results in FOLDER/analysis"),
    limit: float = typer.Option(None, "--limit", min=0, help="rows per task: a count, or a fraction below 1"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    num_fewshot: int = typer.Option(None, "--num-fewshot", min=0),
    seed: int = typer.Option(0, "--seed"),
    final: bool = typer.Option(False, "--final", help="a run or release: only its final model, not each checkpoint"),
) -> None:
    """Evaluate with lm-evaluation-harness: one model, or every checkpoint of a run or release (a curve in the report)."""
    from luminary.analysis.harness import evaluate_checkpoints, evaluate_model, require_lm_eval, resolve_tasks
    from luminary.analysis.over_checkpoints import is_release
    from luminary.core.errors import LuminaryError
    from luminary.core.io import atomic_write_json

    require_lm_eval()
    limit = None if limit is None else (int(limit) if limit >= 1 else limit)
    configs = resolve_tasks([t.strip() for t in tasks.split(",") if t.strip()], include)
    kwargs = dict(limit=limit, batch_size=batch_size, seed=seed, num_fewshot=num_fewshot)
    over = (is_release(target) or (target / "run.json").is_file()) and not final
    if over:
        if out is not None:
            raise LuminaryError("--out: a run or release keeps its results in FOLDER/analysis; "
                                "use --final to evaluate its final model into --out")
        curves = evaluate_checkpoints(target, configs, **kwargs)
        for name, curve in curves.items():
            typer.echo("step\t" + "\t".join(f"{name}:{m}" for m in curve["metrics"]))
            for i, step in enumerate(curve["steps"]):
                typer.echo(f"{step}\t" + "\t".join("-" if v[i] is None else f"{v[i]:.4f}"
                                                   for v in curve["metrics"].values()))
        typer.echo(f"wrote {target / 'analysis'} (benchmark_TASK.json, lm_eval/step_*.json)")
        typer.echo(f"next: luminary report {target}")
        return
    from luminary.models import load_model, load_tokenizer
    from luminary.models.loading import resolve_model_dir

    folder = resolve_model_dir(target)
    model = load_model(folder)
    result = evaluate_model(model, load_tokenizer(folder), configs, **kwargs)
    result["model"] = str(folder)
    for name, task in result["tasks"].items():
        for metric, value in task["metrics"].items():
            err = task["stderr"].get(metric)
            typer.echo(f"{name}\t{metric}\t{value:.4f}" + (f"\t± {err:.4f}" if err is not None else ""))
    if out is not None:
        atomic_write_json(out, result)
        typer.echo(f"wrote {out}")
    else:
        typer.echo("(add --out FILE.json to keep the results with their task configs and data sha256)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
