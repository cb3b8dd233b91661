"""Model-GLUE commands: ``merge``, ``merge mergekit-yaml``, ``merge search``, ``zoo cluster``, ``moe``,
``stack``, ``glue``.

``luminary merge CONFIG --out DIR`` (or ``--mergekit-config FILE``) runs one
merge, with mergekit-yaml's options; ``luminary merge mergekit-yaml CONFIG OUT``
is mergekit-yaml's own command line; ``luminary merge search CONFIG`` runs a
selective merge search.
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


def parse_kmb(value: str | int) -> int:
    """mergekit's sizes: ``5B`` = 5·10⁹, ``500M``, ``100K`` (powers of 1000), or a plain integer."""
    from luminary.core.errors import LuminaryError

    text = str(value).strip()
    scale = {"k": 10**3, "m": 10**6, "b": 10**9}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) * scale <= 0:
        raise LuminaryError(f"--out-shard-size: expected a positive integer with an optional K, M or B suffix "
                            f"(mergekit's form: 5B, 500M), got '{value}'")
    return int(digits) * scale


# mergekit-yaml's options (mergekit 0.1.5, `mergekit-yaml --help`), shared by `merge run` and `merge mergekit-yaml`
_OUTPUT = "Output settings (mergekit-yaml's)"
_PERF = "Performance (mergekit-yaml's)"
_DANGER = "Dangerous options (mergekit-yaml's)"
_MISC = "Miscellaneous (mergekit-yaml's)"
OPTIONS = dict(
    out_shard_size=typer.Option(None, "--out-shard-size", metavar="SIZE", rich_help_panel=_OUTPUT,
                                help="bytes per output shard, with K/M/B suffixes as mergekit's (default: the "
                                     "config's max_shard_size, 5B)"),
    copy_tokenizer=typer.Option(True, "--copy-tokenizer/--no-copy-tokenizer", rich_help_panel=_OUTPUT,
                                help="copy the reference model's tokenizer (a joined vocabulary is always written)"),
    write_model_card=typer.Option(True, "--write-model-card/--no-write-model-card", rich_help_panel=_OUTPUT,
                                  help="write README.md, a Hub model card of the merge"),
    safe_serialization=typer.Option(True, "--safe-serialization/--no-safe-serialization", rich_help_panel=_OUTPUT,
                                    help="safetensors output (the only kind luminary writes)"),
    clone_tensors=typer.Option(False, "--clone-tensors/--no-clone-tensors", rich_help_panel=_OUTPUT,
                               help="accepted; no effect (every output tensor is written from its own buffer)"),
    allow_crimes=typer.Option(False, "--allow-crimes/--no-allow-crimes", rich_help_panel=_DANGER,
                              help="merge models whose architecture names differ (their tensors must still match)"),
    unsafe_truncate_embeddings=typer.Option(False, "--unsafe-truncate-embeddings/--no-unsafe-truncate-embeddings",
                                            rich_help_panel=_DANGER,
                                            help="not supported: join vocabularies with tokenizer_source instead"),
    trust_remote_code=typer.Option(False, "--trust-remote-code/--no-trust-remote-code", rich_help_panel=_DANGER,
                                   help="accepted; no effect (a merge reads config.json and safetensors, runs no "
                                        "model code)"),
    cuda=typer.Option(False, "--cuda/--no-cuda", rich_help_panel=_PERF,
                      help="merge on the GPU (an error when torch sees none; --device auto falls back to the CPU)"),
    device=typer.Option(None, "--device", rich_help_panel=_PERF, help="cpu, cuda or auto (cuda when there is one)"),
    gpu_rich=typer.Option(False, "--gpu-rich", rich_help_panel=_PERF, help="alias for --cuda here"),
    low_cpu_memory=typer.Option(False, "--low-cpu-memory/--no-low-cpu-memory", rich_help_panel=_PERF,
                                help="accepted; no effect (a merge holds a few tensors, never the model)"),
    read_to_gpu=typer.Option(False, "--read-to-gpu/--no-read-to-gpu", rich_help_panel=_PERF,
                             help="accepted; no effect (with --cuda, inputs are moved to the GPU as they are read)"),
    multi_gpu=typer.Option(False, "--multi-gpu/--no-multi-gpu", rich_help_panel=_PERF,
                           help="accepted; no effect (one device)"),
    lazy_unpickle=typer.Option(False, "--lazy-unpickle/--no-lazy-unpickle", rich_help_panel=_PERF,
                               help="accepted; no effect (luminary reads safetensors only, never pickles)"),
    num_threads=typer.Option(None, "-j", "--num-threads", min=1, rich_help_panel=_PERF,
                             help="threads for CPU arithmetic (torch.set_num_threads)"),
    async_write=typer.Option(False, "--async-write/--no-async-write", rich_help_panel=_PERF,
                             help="accepted; no effect (writing always runs on its own thread, streaming)"),
    write_threads=typer.Option(1, "--write-threads", min=1, rich_help_panel=_PERF,
                               help="accepted; no effect (one writer thread)"),
    random_seed=typer.Option(None, "--random-seed", rich_help_panel=_MISC,
                             help="seed of the randomized methods (DARE, DELLA): replaces the config's seed"),
    quiet=typer.Option(False, "--quiet/--no-quiet", rich_help_panel=_MISC, help="no progress bars or warnings"),
    verbose=typer.Option(0, "-v", count=True, rich_help_panel=_MISC, help="accepted; no effect"),
    transformers_cache=typer.Option(None, "--transformers-cache", rich_help_panel=_MISC,
                                    help="accepted; no effect (luminary merges local folders, downloads nothing)"),
    lora_merge_cache=typer.Option(None, "--lora-merge-cache", rich_help_panel=_MISC,
                                  help="accepted; no effect (LoRA references are not supported)"),
    lora_merge_dtype=typer.Option(None, "--lora-merge-dtype", rich_help_panel=_MISC,
                                  help="accepted; no effect (LoRA references are not supported)"),
)


def _device(cuda: bool, device: str | None) -> str | None:
    """The config's device for --cuda / --device, or None to keep the config's."""
    import torch

    from luminary.core.errors import LuminaryError

    want = device or ("cuda" if cuda else None)
    if want is None:
        return None
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want not in ("cpu", "cuda"):
        raise LuminaryError(f"--device: expected cpu, cuda or auto, got '{want}'")
    if want == "cuda" and not torch.cuda.is_available():
        flag = "--cuda" if device is None else "--device cuda"
        raise LuminaryError(f"{flag}: torch sees no CUDA device here (use --device auto to merge on the CPU "
                            "when there is none)")
    return want


def run_with_options(config_path: Path, out: Path, overwrite: bool, **opts) -> None:
    """One merge with mergekit-yaml's options applied (see OPTIONS)."""
    import os

    from luminary.core.errors import LuminaryError
    from luminary.merge import load_merge_config, run_merge

    if opts["unsafe_truncate_embeddings"]:
        raise LuminaryError("--unsafe-truncate-embeddings: not supported; join the vocabularies with "
                            "tokenizer_source (base, union or a model) instead")
    if not opts["safe_serialization"]:
        raise LuminaryError("--no-safe-serialization: luminary writes safetensors only (no pickled weights)")
    if opts["quiet"]:
        os.environ["LUMINARY_QUIET"] = "1"
    config = load_merge_config(config_path)
    changes = {}
    if opts["out_shard_size"] is not None:
        changes["max_shard_size"] = parse_kmb(opts["out_shard_size"])
    device = _device(opts["cuda"] or opts["gpu_rich"], opts["device"])
    if device is not None:
        changes["device"] = device
    if opts["random_seed"] is not None:
        changes["seed"] = opts["random_seed"]
    if changes:
        config = config.model_copy(update=changes)
    text = Path(config_path).read_text(encoding="utf-8")
    import torch

    threads = torch.get_num_threads()
    if opts["num_threads"]:
        torch.set_num_threads(opts["num_threads"])
    try:
        summary = run_merge(config, out, overwrite=overwrite, allow_crimes=opts["allow_crimes"],
                            copy_tokenizer=opts["copy_tokenizer"], write_card=opts["write_model_card"],
                            config_text=text)
    finally:  # called in-process (a test, a notebook), the caller keeps its own thread count
        torch.set_num_threads(threads)
    on = f" on {summary['device']}" if summary.get("device", "cpu") != "cpu" else ""
    typer.echo(f"merged {summary['tensors']} tensors ({summary['method']}){on} into {summary['out']}")
    typer.echo(f"next: luminary generate {summary['out']} --prompt 'Hello' --greedy")


@merge_app.command("run")
def merge_run(
    config: Optional[Path] = typer.Argument(None, help="merge YAML (mergekit schema; see examples/merge-ties.yaml)"),
    mergekit_config: Optional[Path] = typer.Option(None, "--mergekit-config", help="a mergekit YAML, run unchanged"),
    out: Path = typer.Option(..., "--out", help="output model folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
    out_shard_size: Optional[str] = OPTIONS["out_shard_size"],
    copy_tokenizer: bool = OPTIONS["copy_tokenizer"],
    write_model_card: bool = OPTIONS["write_model_card"],
    safe_serialization: bool = OPTIONS["safe_serialization"],
    clone_tensors: bool = OPTIONS["clone_tensors"],
    allow_crimes: bool = OPTIONS["allow_crimes"],
    unsafe_truncate_embeddings: bool = OPTIONS["unsafe_truncate_embeddings"],
    trust_remote_code: bool = OPTIONS["trust_remote_code"],
    cuda: bool = OPTIONS["cuda"],
    device: Optional[str] = OPTIONS["device"],
    gpu_rich: bool = OPTIONS["gpu_rich"],
    low_cpu_memory: bool = OPTIONS["low_cpu_memory"],
    read_to_gpu: bool = OPTIONS["read_to_gpu"],
    multi_gpu: bool = OPTIONS["multi_gpu"],
    lazy_unpickle: bool = OPTIONS["lazy_unpickle"],
    num_threads: Optional[int] = OPTIONS["num_threads"],
    async_write: bool = OPTIONS["async_write"],
    write_threads: int = OPTIONS["write_threads"],
    random_seed: Optional[int] = OPTIONS["random_seed"],
    quiet: bool = OPTIONS["quiet"],
    verbose: int = OPTIONS["verbose"],
    transformers_cache: Optional[str] = OPTIONS["transformers_cache"],
    lora_merge_cache: Optional[str] = OPTIONS["lora_merge_cache"],
    lora_merge_dtype: Optional[str] = OPTIONS["lora_merge_dtype"],
) -> None:
    """Merge the models of CONFIG into one model folder, tensor by tensor (takes mergekit-yaml's options)."""
    from luminary.core.errors import LuminaryError

    if (config is None) == (mergekit_config is None):
        raise LuminaryError("give a CONFIG or --mergekit-config FILE (one of them)")
    opts = {k: v for k, v in locals().items() if k in OPTIONS}
    run_with_options(config or mergekit_config, out, overwrite, **opts)


def merge_mergekit_yaml(
    config_file: Path = typer.Argument(..., help="a mergekit YAML"),
    out_path: Path = typer.Argument(..., help="output model folder"),
    **opts,
) -> None:
    """mergekit-yaml's command line: CONFIG_FILE OUT_PATH [OPTIONS] (alias it: see docs/merging.md)."""
    run_with_options(config_file, out_path, opts.pop("overwrite"), **opts)


def _with_run_options(command):
    """``command``'s two arguments plus ``merge run``'s --overwrite and mergekit-yaml options, declared
    once (Typer reads a command's parameters from its signature and annotations)."""
    import inspect

    run = inspect.signature(merge_run).parameters
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [run[name] for name in ("overwrite", *OPTIONS)]
    command.__signature__ = inspect.Signature(own + shared)
    command.__annotations__ = {**command.__annotations__,
                               **{p.name: merge_run.__annotations__[p.name] for p in shared}}
    return command


merge_app.command("mergekit-yaml")(_with_run_options(merge_mergekit_yaml))


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
    typer.echo(f"next: luminary generate {out} --prompt 'Hello' --greedy")


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
    typer.echo(f"-> {out}/clusters.json, {out}/similarity.png")
    typer.echo("next: merge a family with luminary merge run CONFIG, or the whole zoo with luminary glue RECIPE")


def moe(
    config: Path = typer.Argument(..., help="mixture YAML (see examples/merge-moe.yaml)"),
    out: Path = typer.Option(..., "--out"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Build a mixture of experts from dense models (FFN, block or model level)."""
    from luminary.merge.mixture import load_mixture_config, run_mixture

    summary = run_mixture(load_mixture_config(config), out, overwrite=overwrite,
                          config_text=config.read_text(encoding="utf-8"))
    typer.echo(f"{summary['level']}-level mixture of {summary['experts']} experts -> {out}")
    typer.echo(f"next: luminary generate {out} --prompt 'Hello' --greedy")


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
    typer.echo(f"next: luminary generate {out} --prompt 'Hello' --greedy")


def glue(
    recipe: Path = typer.Argument(..., help="Model-GLUE recipe YAML (see examples/merge-glue.yaml)"),
    out: Path = typer.Option(..., "--out"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """The whole Model-GLUE recipe: cluster the zoo, merge each cluster, mix the clusters."""
    from luminary.merge.glue import load_glue_recipe, run_glue

    report = run_glue(load_glue_recipe(recipe), out, overwrite=overwrite,
                      config_text=recipe.read_text(encoding="utf-8"))
    typer.echo(f"{len(report['clusters'])} clusters -> {out} (report.md)")
    typer.echo(f"next: read {out}/report.md; luminary generate on the model folder it names")


def register(app: typer.Typer) -> None:
    app.add_typer(merge_app, name="merge")
    app.add_typer(zoo_app, name="zoo")
    app.command("moe")(moe)
    app.command("stack")(stack)
    app.command("glue")(glue)
