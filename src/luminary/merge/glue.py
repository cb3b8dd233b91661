"""``luminary glue RECIPE``: the Model-GLUE recipe in one command.

1. cluster the zoo into mergeable families (``cluster.py``);
2. merge each family with every listed strategy (uniform weights; task-vector
   strategies use the recipe's ``base_model`` when it is of the family's
   architecture) and keep the one the evaluator scores best, or the best single
   member if no merge beats it;
3. join the family models in a model-level mixture (``mixture.py``) when they
   share one Llama-shaped trunk, and score it too;
4. write ``report.json`` and ``report.md`` beside the models.

Output: ``clusters/`` (JSON, heatmap), ``family-K/`` (each family's model),
``mixture/`` (when built), ``report.json``, ``report.md``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field

from luminary.core.config import Config, read_yaml, validate
from luminary.core.errors import LuminaryError
from luminary.core.io import MANIFEST, atomic_dir, atomic_write_json, atomic_write_text
from luminary.core.locks import locked
from luminary.core.progress import info
from luminary.merge.card import as_given, model_card
from luminary.merge.cluster import cluster_zoo
from luminary.merge.config import MergeConfig, locate, locate_zoo_paths
from luminary.merge.evaluators import Evaluator, EvaluatorConfig, build_evaluator
from luminary.merge.merge import CARD, run_merge, write_manifest_with
from luminary.merge.mixture import LLAMA_FAMILY, MixtureConfig, run_mixture
from luminary.merge.zoo import ModelFolder

TASK_VECTOR = ("task_arithmetic", "ties", "dare_ties", "dare_linear", "model_stock")


class GlueMixture(Config):
    enabled: bool = True
    gate_mode: Literal["hidden", "cheap_embed", "random"] = "random"
    num_dense_layers: int = Field(0, ge=0)
    experts_per_token: int = Field(1, ge=1)
    expert_prompts: dict[str, list[str]] = {}  # model path -> prompts; a family's are its members'


class GlueRecipe(Config):
    models: list[str] = Field(min_length=2)
    base_model: str | None = None
    threshold: float = 0.95
    measure: Literal["sim_all", "sim_mlp"] = "sim_all"
    strategies: list[str] = ["linear", "ties", "task_arithmetic"]
    density: float = Field(0.7, ge=0, le=1)
    evaluator: EvaluatorConfig | None = None
    mixture: GlueMixture = GlueMixture()
    seed: int = 0


def load_glue_recipe(path: str | Path) -> GlueRecipe:
    path = Path(path)
    recipe = validate(GlueRecipe, read_yaml(path), str(path))
    data = locate_zoo_paths(recipe, path.parent)
    data["mixture"]["expert_prompts"] = {locate(k, path.parent): v for k, v in recipe.mixture.expert_prompts.items()}
    return GlueRecipe.model_validate(data)


def _strategy_config(recipe: GlueRecipe, method: str, family: list[str]) -> dict | None:
    models = [{"model": m, "parameters": {"weight": 1.0, "density": recipe.density}} for m in family]
    if method in TASK_VECTOR:
        if not recipe.base_model or recipe.base_model in family and len(family) < 3:
            return None
        models = [m for m in models if m["model"] != recipe.base_model]
        if method == "model_stock":
            models = [{"model": m["model"]} for m in models]
        return {"merge_method": method, "base_model": recipe.base_model, "models": models, "seed": recipe.seed}
    return {"merge_method": method, "models": [{"model": m["model"], "parameters": {"weight": 1.0}} for m in models]}


def merge_family(recipe: GlueRecipe, family: list[str], evaluate: Evaluator, work: Path) -> dict:
    """Score each member and each strategy; copy the best into ``work``."""
    tried = [{"strategy": "member", "model": m, "score": float(evaluate(Path(m)))} for m in family]
    arch = ModelFolder.open(family[0]).architecture
    base_ok = recipe.base_model and ModelFolder.open(recipe.base_model).architecture == arch
    for method in recipe.strategies if len(family) > 1 else []:
        cfg = _strategy_config(recipe, method, family) if (base_ok or method not in TASK_VECTOR) else None
        if cfg is None:
            tried.append({"strategy": method, "skipped": "needs a base_model of this family"})
            continue
        folder = work / f"try-{method}"
        try:
            run_merge(MergeConfig.model_validate(cfg), folder)
        except LuminaryError as exc:
            tried.append({"strategy": method, "skipped": str(exc)})
            continue
        tried.append({"strategy": method, "model": str(folder), "score": float(evaluate(folder))})
        info(f"family of {len(family)}: {method} scores {tried[-1]['score']:.6g}")
    best = max((t for t in tried if "score" in t), key=lambda t: t["score"])
    return {"members": family, "tried": tried, "chosen": best["strategy"], "source": best["model"],
            "score": best["score"]}


def run_glue(recipe: GlueRecipe, out: str | Path, evaluate: Evaluator | None = None, overwrite: bool = False,
             config_text: str | None = None) -> dict:
    """Run the recipe into the folder ``out``. Every model folder in it has its own card and manifest;
    the folder itself gets a card for the recipe (``config_text``: the recipe as given) and a
    manifest of everything in it."""
    if evaluate is None:
        if recipe.evaluator is None:
            raise LuminaryError("evaluator: required (a callable, perplexity or multiple_choice)")
        evaluate = build_evaluator(recipe.evaluator)
    with locked(out, "glue output"), atomic_dir(out, overwrite=overwrite) as tmp:
        clusters = cluster_zoo(recipe.models, tmp / "clusters", recipe.threshold, measure=recipe.measure)
        families = []
        for k, family in enumerate(clusters["families"]):
            work = tmp / f".work-{k}"
            work.mkdir()
            result = merge_family(recipe, family, evaluate, work)
            shutil.copytree(result["source"], tmp / f"family-{k}")
            shutil.rmtree(work)
            result["model"] = f"family-{k}"
            families.append(result)
        report = {"clusters": clusters["families"], "threshold": recipe.threshold, "families": families,
                  "mixture": None, "recipe": recipe.model_dump(mode="json")}
        report["mixture"] = _mixture(recipe, families, tmp, evaluate)
        best = max([f["score"] for f in families] + [report["mixture"]["score"] if report["mixture"]
                                                     and "score" in report["mixture"] else -float("inf")])
        report["final"] = ("mixture" if report["mixture"] and report["mixture"].get("score") == best
                           else next(f["model"] for f in families if f["score"] == best))
        atomic_write_json(tmp / "report.json", report)
        atomic_write_text(tmp / "report.md", _markdown(report))
        atomic_write_text(tmp / CARD, glue_card(recipe, out, config_text))
        write_manifest_with(tmp, _known_digests(tmp))
    return report


def glue_card(recipe: GlueRecipe, out: str | Path, config_text: str | None = None) -> str:
    given, config_text = as_given(recipe, config_text)
    return model_card(Path(out).name, "glue", given.models, config_text, folders=recipe.models,
                      extra_tags=("model-glue",), kind="Model-GLUE merge")


def _known_digests(folder: Path) -> dict[str, str]:
    """Digests already in the manifests of the model folders inside ``folder`` (no second read)."""
    known = {}
    for manifest in folder.glob(f"*/{MANIFEST}"):
        for line in manifest.read_text().splitlines():
            digest, _, rel = line.partition("  ")
            if rel:
                known[f"{manifest.parent.name}/{rel}"] = digest
    return known


def _mixture(recipe: GlueRecipe, families: list[dict], tmp: Path, evaluate: Evaluator) -> dict | None:
    if not recipe.mixture.enabled or len(families) < 2:
        return None
    folders = [str(tmp / f["model"]) for f in families]
    shapes = [ModelFolder.open(f) for f in folders]
    compatible = all(set(m.architecture) & LLAMA_FAMILY for m in shapes) and len(
        {tuple((n, i.shape) for n, i in m.tensors.infos.items()) for m in shapes}) == 1
    if not compatible:
        return {"skipped": "the family models do not share one Llama-shaped trunk"}
    order = sorted(range(len(families)), key=lambda k: -families[k]["score"])
    prompts = lambda f: [p for m in f["members"] for p in recipe.mixture.expert_prompts.get(m, [])]
    config = MixtureConfig(level="model", base_model=folders[order[0]],
                           experts=[{"model": folders[k], "positive_prompts": prompts(families[k])} for k in order],
                           gate_mode=recipe.mixture.gate_mode, num_dense_layers=recipe.mixture.num_dense_layers,
                           experts_per_token=recipe.mixture.experts_per_token, seed=recipe.seed)
    summary = run_mixture(config, tmp / "mixture")
    return {"model": "mixture", "experts": [families[k]["model"] for k in order], "score": float(evaluate(tmp / "mixture")),
            "warnings": summary["warnings"]}


def _markdown(report: dict) -> str:
    lines = ["# Model-GLUE report", "", f"Similarity threshold {report['threshold']}: "
             f"{len(report['clusters'])} families (heatmap: `clusters/similarity.png`).", "",
             "| family | members | chosen | score | tried |", "| --- | --- | --- | --- | --- |"]
    for f in report["families"]:
        tried = ", ".join(f"{t['strategy']} {t['score']:.4g}" if "score" in t else f"{t['strategy']} (skipped)"
                          for t in f["tried"])
        lines.append(f"| {f['model']} | {len(f['members'])} | {f['chosen']} | {f['score']:.6g} | {tried} |")
    m = report["mixture"]
    lines += ["", "Mixture: " + ("not built" if not m else m.get("skipped") or
                                 f"model-level over {', '.join(m['experts'])}, score {m['score']:.6g}"),
              "", f"Final model: `{report['final']}`", ""]
    return "\n".join(lines)
