"""Selective merging: which models of a family to merge, and with which weights (Model-GLUE §4).

``heuristic``: score every candidate alone; start from the best; take the
others in order of score (or of most / least similarity to the current merge)
and merge each linearly into the current model, θ = c·θ_current + (1 − c)·θ_new,
with c = k/(k + 1) for a running uniform average of k merged models, or c
chosen on a grid; keep the candidate when the score does not drop.

``cmaes``: CMA-ES (sigma0 1/6, seed 42, population 4 + ⌊3 ln n⌋ for n
parameters, ``trials`` evaluations) over per-model weights in [0, 1] (and
densities for TIES/DARE), optionally one value per layer group.

Bugs of the released code that this avoids: the saved model is the best one
found (not the last grid value), and the start model is never merged with
itself. Every evaluation is recorded in ``search.json``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from luminary.core.config import Config, read_yaml, validate
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, atomic_write_json
from luminary.core.locks import locked
from luminary.core.progress import info
from luminary.merge.cluster import similarity_matrix
from luminary.merge.config import MergeConfig, locate_zoo_paths
from luminary.merge.evaluators import Evaluator, EvaluatorConfig, build_evaluator
from luminary.merge.merge import run_merge
from luminary.merge.zoo import ModelFolder

SPARSE = ("ties", "dare_ties", "dare_linear")


class SearchConfig(Config):
    models: list[str] = Field(min_length=2)
    base_model: str | None = None
    strategy: Literal["heuristic", "cmaes"] = "heuristic"
    evaluator: EvaluatorConfig | None = None
    # heuristic
    order: Literal["score", "most_similar", "least_similar"] = "score"
    coefficient: Literal["average", "grid"] = "average"
    grid: list[float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # cmaes
    method: str = "linear"
    trials: int = Field(200, ge=1)
    sigma0: float = Field(1 / 6, gt=0)
    popsize: int | None = Field(None, ge=2)
    layer_groups: int = Field(1, ge=1)
    seed: int = 42
    dtype: str | None = None


def load_search_config(path: str | Path) -> SearchConfig:
    path = Path(path)
    config = validate(SearchConfig, read_yaml(path), str(path))
    if config.evaluator is None:
        raise LuminaryError(f"{path}: evaluator: required (a callable, perplexity or multiple_choice)")
    return SearchConfig.model_validate(locate_zoo_paths(config, path.parent))


class _Search:
    """Merges into a scratch folder, scores, and keeps the best folder seen."""

    def __init__(self, config: SearchConfig, evaluate: Evaluator, work: Path):
        self.config, self.evaluate, self.work = config, evaluate, work
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, Path | None, dict] = (-math.inf, None, {})

    def score(self, folder: Path, what: dict) -> float:
        value = float(self.evaluate(Path(folder)))
        if math.isnan(value):
            value = -math.inf
        self.history.append({**what, "score": value})
        info(f"score {value:.6g}  {json.dumps(what)}")
        if value > self.best[0]:
            self.best = (value, Path(folder), what)
        return value

    def merge(self, merge: dict) -> Path:
        out = Path(tempfile.mkdtemp(dir=self.work)) / "model"
        run_merge(MergeConfig.model_validate({"dtype": self.config.dtype, **merge}), out)
        return out

    def discard(self, folder: Path) -> None:
        if self.best[1] != folder and folder.parent.parent == self.work:
            shutil.rmtree(folder.parent, ignore_errors=True)


def _linear(current: str, candidate: str, c: float) -> dict:
    return {"merge_method": "linear", "models": [{"model": current, "parameters": {"weight": c}},
                                                 {"model": candidate, "parameters": {"weight": 1 - c}}]}


def heuristic(search: _Search) -> None:
    cfg = search.config
    scores = {m: search.score(Path(m), {"step": "alone", "model": m}) for m in cfg.models}
    order = sorted(cfg.models, key=lambda m: -scores[m])
    current, current_score, merged = order[0], scores[order[0]], [order[0]]
    remaining = order[1:]  # the start model is not merged with itself
    while remaining:
        if cfg.order != "score":
            folders = [ModelFolder.open(p) for p in [current] + remaining]
            try:
                sim = similarity_matrix(folders)[0, 1:].tolist()
            finally:
                for f in folders:
                    f.close()
            pick = max if cfg.order == "most_similar" else min
            candidate = remaining[pick(range(len(remaining)), key=lambda i: sim[i])]
        else:
            candidate = remaining[0]
        remaining.remove(candidate)
        grid = [len(merged) / (len(merged) + 1)] if cfg.coefficient == "average" else cfg.grid
        tried = []
        for c in grid:
            folder = search.merge(_linear(current, candidate, c))
            tried.append((search.score(folder, {"step": "merge", "add": candidate, "c": c, "into": merged}), folder))
        best_score, best_folder = max(tried, key=lambda x: x[0])
        for _, folder in tried:
            if folder != best_folder:
                search.discard(folder)
        if best_score >= current_score:
            current, current_score = str(best_folder), best_score
            merged = merged + [candidate]
        else:
            search.discard(best_folder)


def _evolution_config(cfg: SearchConfig, x: list[float], layers: int) -> dict:
    """Decode x ∈ [0,1]^n into a merge config: a weight (and density) per model per layer group."""
    per = 2 if cfg.method in SPARSE else 1
    groups = cfg.layer_groups
    params = lambda m, g: {"weight": x[(g * len(cfg.models) + m) * per],
                           **({"density": x[(g * len(cfg.models) + m) * per + 1]} if per == 2 else {})}
    merge: dict = {"merge_method": cfg.method, "base_model": cfg.base_model, "seed": cfg.seed}
    if groups == 1:
        merge["models"] = [{"model": p, "parameters": params(m, 0)} for m, p in enumerate(cfg.models)]
        return merge
    bounds = [round(g * layers / groups) for g in range(groups + 1)]
    merge["slices"] = [{"sources": [{"model": p, "layer_range": [bounds[g], bounds[g + 1]], "parameters": params(m, g)}
                                    for m, p in enumerate(cfg.models)]
                        + ([{"model": cfg.base_model, "layer_range": [bounds[g], bounds[g + 1]]}]
                           if cfg.base_model else [])}
                       for g in range(groups) if bounds[g + 1] > bounds[g]]
    return merge


def evolutionary(search: _Search) -> None:
    import cma

    cfg = search.config
    layers = ModelFolder.open(cfg.models[0])
    n_layers = layers.num_layers
    layers.close()
    if cfg.layer_groups > n_layers:
        raise LuminaryError(f"layer_groups: {cfg.layer_groups} groups but the models have {n_layers} layers")
    n = len(cfg.models) * cfg.layer_groups * (2 if cfg.method in SPARSE else 1)
    popsize = cfg.popsize or 4 + int(3 * math.log(n))
    es = cma.CMAEvolutionStrategy([0.5] * n, cfg.sigma0, {"seed": cfg.seed, "bounds": [0, 1], "popsize": popsize,
                                                          "maxfevals": cfg.trials, "verbose": -9})
    done = 0
    while not es.stop() and done < cfg.trials:
        xs = es.ask()[: cfg.trials - done]
        losses = []
        for x in xs:
            merge = _evolution_config(cfg, [float(v) for v in x], n_layers)
            try:
                folder = search.merge(merge)
            except LuminaryError as exc:  # e.g. every weight 0: not a model
                search.history.append({"x": [float(v) for v in x], "score": -math.inf, "error": str(exc)})
                losses.append(math.inf)
                continue
            value = search.score(folder, {"x": [round(float(v), 6) for v in x]})
            losses.append(-value if math.isfinite(value) else math.inf)
            search.discard(folder)
        done += len(xs)
        if len(xs) == popsize:
            es.tell(xs, losses)
        else:
            break


def run_search(config: SearchConfig, out: str | Path, evaluate: Evaluator | None = None,
               overwrite: bool = False) -> dict[str, Any]:
    """Search, then write the best model found and ``search.json`` (every evaluation) into ``out``."""
    if evaluate is None:
        if config.evaluator is None:
            raise LuminaryError("evaluator: required (a callable, perplexity or multiple_choice)")
        evaluate = build_evaluator(config.evaluator)
    for m in config.models + ([config.base_model] if config.base_model else []):
        if not Path(m).is_dir():
            raise LuminaryError(f"models: model folder '{m}' not found")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out, "search output"), tempfile.TemporaryDirectory(dir=out.parent, prefix=".tmp-search-") as work:
        search = _Search(config, evaluate, Path(work))
        (heuristic if config.strategy == "heuristic" else evolutionary)(search)
        best_score, best_folder, best_what = search.best
        if best_folder is None:
            raise LuminaryError("search: no candidate could be evaluated")
        result = {"strategy": config.strategy, "best_score": best_score, "best": best_what,
                  "evaluations": len(search.history), "history": search.history,
                  "config": config.model_dump(mode="json")}
        with atomic_dir(out, overwrite=overwrite) as tmp:
            shutil.copytree(best_folder, tmp, dirs_exist_ok=True)
            atomic_write_json(tmp / "search.json", result)
    return result
