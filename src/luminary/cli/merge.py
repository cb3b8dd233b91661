"""Model-GLUE commands: ``merge``, ``merge search``, ``zoo cluster``, ``moe``, ``stack``, ``glue``.

``luminary merge CONFIG --out DIR`` (or ``--mergekit-config FILE``) runs one
merge; ``luminary merge search CONFIG`` runs a selective merge search.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup


class DefaultRunGroup(TyperGroup):
    """``luminary merge CONFIG`` means ``luminary merge run CONFIG``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


merge_app = typer.Typer(cls=DefaultRunGroup, no_args_is_help=True,
                        help="Merge models (mergekit-compatible YAML), or search which to merge.")
zoo_app = typer.Typer(no_args_is_help=True, help="Inspect a model zoo: mergeability clusters.")


@merge_app.command("run")
def merge_run(
    config: Optional[Path] = typer.Argument(None, help="merge YAML (mergekit schema; see examples/merge-ties.yaml)"),
    mergekit_config: Optional[Path] = typer.Option(None, "--mergekit-config", help="a mergekit YAML, run unchanged"),
    out: Path = typer.Option(..., "--out", help="output model folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Merge the models of CONFIG into one model folder, tensor by tensor."""
    from luminary.core.errors import LuminaryError
    from luminary.merge import load_merge_config, run_merge

    if (config is None) == (mergekit_config is None):
        raise LuminaryError("give a CONFIG or --mergekit-config FILE (one of them)")
    summary = run_merge(load_merge_config(config or mergekit_config), out, overwrite=overwrite)
    typer.echo(f"merged {summary['tensors']} tensors ({summary['method']}) into {summary['out']}")


@merge_app.command("search")
def merge_search(
    config: Path = typer.Argument(..., help="search YAML (see examples/merge-search.yaml)"),
    out: Path = typer.Option(..., "--out", help="folder for the best merged model and search.json"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Selective merging: heuristic or CMA-ES search of which models to merge and how."""
    from luminary.merge.search import load_search_config, run_search

    result = run_search(load_search_config(config), out, overwrite=overwrite)
    typer.echo(f"best score {result['best_score']:.6g} after {result['evaluations']} evaluations -> {out}")


@zoo_app.command("cluster")
def zoo_cluster(
    models: List[Path] = typer.Argument(..., help="model folders"),
    threshold: float = typer.Option(0.95, "--threshold", min=-1.0, max=1.0, help="similarity to join a family"),
    base: Optional[Path] = typer.Option(None, "--base", help="compare task vectors (θ − θ_base) instead of weights"),
    measure: str = typer.Option("sim_all", "--measure", help="sim_all (attention + MLP) or sim_mlp"),
    out: Path = typer.Option(Path("zoo-clusters"), "--out", help="folder for clusters.json and similarity.png"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Group models into mergeable families (Model-GLUE): JSON and a similarity heatmap."""
    from luminary.merge.cluster import cluster_zoo

    result = cluster_zoo([str(m) for m in models], out, threshold=threshold, base=base, measure=measure,
                         overwrite=overwrite)
    for i, family in enumerate(result["families"]):
        typer.echo(f"family {i}: {' '.join(family)}")


def moe(
    config: Path = typer.Argument(..., help="mixture YAML (see examples/merge-moe.yaml)"),
    out: Path = typer.Option(..., "--out"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Build a mixture of experts from dense models (FFN, block or model level)."""
    from luminary.merge.mixture import load_mixture_config, run_mixture

    summary = run_mixture(load_mixture_config(config), out, overwrite=overwrite)
    typer.echo(f"{summary['level']}-level mixture of {summary['experts']} experts -> {out}")


def stack(
    models: List[Path] = typer.Argument(..., help="two or more model folders of one family"),
    out: Path = typer.Option(..., "--out"),
    mode: str = typer.Option("stack", "--mode", help="stack (all layers of A, then B) or interleave"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Stack or interleave the layers of models into a deeper model."""
    from luminary.merge.stack import run_stack

    summary = run_stack([str(m) for m in models], out, mode=mode, overwrite=overwrite)
    typer.echo(f"{summary['layers']} layers ({mode}) -> {out}")


def glue(
    recipe: Path = typer.Argument(..., help="Model-GLUE recipe YAML (see examples/merge-glue.yaml)"),
    out: Path = typer.Option(..., "--out"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """The whole Model-GLUE recipe: cluster the zoo, merge each cluster, mix the clusters."""
    from luminary.merge.glue import load_glue_recipe, run_glue

    report = run_glue(load_glue_recipe(recipe), out, overwrite=overwrite)
    typer.echo(f"{len(report['clusters'])} clusters -> {out} (report.md)")


def register(app: typer.Typer) -> None:
    app.add_typer(merge_app, name="merge")
    app.add_typer(zoo_app, name="zoo")
    app.command("moe")(moe)
    app.command("stack")(stack)
    app.command("glue")(glue)
