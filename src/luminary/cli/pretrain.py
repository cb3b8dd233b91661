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
    from luminary.core.runs import list_checkpoints

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
    checkpoints = list_checkpoints(result.run_dir / "checkpoints")
    if result.completion is not None and checkpoints:
        show_what_it_learned(result, checkpoints)
    if checkpoints:
        typer.echo(f"final checkpoint: {checkpoints[-1][1]}")
    typer.echo(f"next: luminary release {result.run_dir} --out {result.run_dir}-release")


def show_what_it_learned(result, checkpoints, items: int = 24) -> None:
    """The completion of the recipe's prompt, greedy (which a small model makes repetitive) beside a
    seeded sample (temperature 0.8, top-k 50, seed 0), and the code-completion score of the first and the
    final checkpoint (the next line of ``items`` functions of the standard library's tests, greedy,
    edit similarity: ``luminary.analysis.tasks.line_completion``): what training changed, in numbers."""
    import torch

    from luminary.analysis.tasks import code_completion_items, line_completion
    from luminary.models.loading import load_model, load_tokenizer

    recipe_prompt = result.completion_prompt
    first_step, first = checkpoints[0]
    last_step, last = checkpoints[-1]
    tokenizer = load_tokenizer(last)
    final = load_model(last).eval()
    ids = tokenizer(recipe_prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    with torch.no_grad():
        sampled = final.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=48,
                                 do_sample=True, temperature=0.8, top_k=50, pad_token_id=tokenizer.pad_token_id)
    typer.echo(f"--- the final model (step {last_step}) continues {recipe_prompt!r} ---")
    typer.echo("greedy:")
    typer.echo(result.completion)
    typer.echo("sampled (temperature 0.8, top-k 50, seed 0):")
    typer.echo(recipe_prompt + tokenizer.decode(sampled[0, ids.shape[1]:], skip_special_tokens=True))
    task = line_completion(code_completion_items(items))
    with torch.no_grad():
        before = task(load_model(first).eval(), tokenizer)
        after = task(final, tokenizer)
    typer.echo(f"code completion, next line of {items} standard-library test functions (greedy): edit similarity "
               f"{before['edit_similarity']:.3f} at step {first_step} -> {after['edit_similarity']:.3f} at step "
               f"{last_step}; exact {before['exact_match']:.3f} -> {after['exact_match']:.3f}")


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
