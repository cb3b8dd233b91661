"""``luminary parallel plan MODEL --tp N [--plan FILE] [--check]``: the tensor-parallel plan, as a table and JSON."""

from __future__ import annotations

from pathlib import Path

import typer

parallel_app = typer.Typer(help="Automatic tensor-parallel plans (Redco's rules on torch.distributed).",
                           no_args_is_help=True)


@parallel_app.command("plan")
def plan(
    model: str = typer.Argument(..., help="a model folder, or a preset name (random weights)"),
    tp: int = typer.Option(None, "--tp", min=1, help="tensor-parallel degree (default: the config's, else 2)"),
    dp: int = typer.Option(1, "--dp", min=1, help="data-parallel degree (FSDP), for memory per rank"),
    vocab: int = typer.Option(32000, "--vocab", min=1, help="vocabulary size for a preset"),
    config: Path = typer.Option(None, "--config", help="a run config whose deploy section gives tp, tp_overrides "
                                "and tp_plan"),
    out: Path = typer.Option(None, "--out", help="write the plan as JSON here"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read *.bin weights with weights_only=True"),
    declared: Path = typer.Option(None, "--plan", help="a declared plan (JSON: glob -> style, or a plan --out wrote), "
                                  "applied as given; the automatic plan fills the rest"),
    shipped: bool = typer.Option(True, "--shipped/--no-shipped",
                                 help="apply transformers' tp_plan as given where the model ships one"),
    check: bool = typer.Option(False, "--check", help="one training step under torchrun on the CPU at dp 1 x tp "
                               "and dp 2 x tp against one process (logits, loss, gradients, updated weights)"),
) -> None:
    """Print the plan (module, style, shard shapes, memory per rank) and write it as JSON."""
    import tempfile

    from luminary.core.config import load_config
    from luminary.core.deploy import DeploySection
    from luminary.parallel.apply import check_overrides
    from luminary.parallel.check import launch_check
    from luminary.parallel.report import build_for_plan, format_check, format_table, plan_report, write_plan

    # only the deploy section is read: any training config will do
    deploy = load_config(config, DeploySection).deploy if config is not None else DeploySection().deploy
    check_overrides(deploy.tp_overrides)
    tp = tp or (deploy.tp if deploy.tp > 1 else 2)
    declared = declared or (Path(deploy.tp_plan) if deploy.tp_plan else None)
    data = plan_report(build_for_plan(model, vocab, allow_pickle), tp, dp, deploy.tp_overrides, declared, shipped)
    typer.echo(format_table(data))
    if check:
        with tempfile.TemporaryDirectory(prefix="luminary-plan-") as tmp:
            plan_file = Path(tmp) / "plan.json"
            write_plan(data, plan_file)
            data["check"] = [launch_check(model, plan_file, tp, d, vocab, allow_pickle) for d in (1, 2)]
        typer.echo(format_check(data["check"]))
    if out:
        write_plan(data, out)
        typer.echo(f"plan written to {out}\nnext: deploy: {{tp: {tp}, tp_plan: {out}}} in a train config, "
                   f"then torchrun --nproc-per-node {tp} -m luminary train CONFIG")


def register(app: typer.Typer) -> None:
    app.add_typer(parallel_app, name="parallel")
