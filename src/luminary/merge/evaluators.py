"""Evaluators for selective merging: a model folder in, a score out (higher is better).

- ``callable``: any Python function ``f(model_folder) -> float`` (``module:function`` in YAML);
- ``perplexity``: minus the perplexity on a text file, exp of the mean token
  negative log-likelihood over windows of ``seq_len`` tokens;
- ``multiple_choice``: accuracy on a JSONL task, one object a line
  ``{"context": ..., "choices": [...], "answer": index}``; the choice with the
  highest total log-likelihood of its tokens after the context is the prediction;
  context and choice are tokenized as lm-evaluation-harness does (``luminary.data.tokenizer.encode_pair``),
  so the per-choice scores equal lm-eval's on the same rows (``tests/analysis/test_harness.py``);
- ``lm_eval``: any lm-eval task (a YAML in ``include``), the named metric of
  ``luminary.analysis.harness.evaluate_model``.

Scores run through ``luminary.train.Predictor`` (batching, order, padding).
Model-GLUE's paper code averages six tiny benchmarks; any such harness plugs
in as a callable.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.data.tokenizer import encode_pair

Evaluator = Callable[[Path], float]


class EvaluatorConfig(Config):
    kind: Literal["callable", "perplexity", "multiple_choice", "lm_eval"]
    target: str | None = None  # module:function for kind=callable
    path: str | None = None  # text file (perplexity) or JSONL (multiple_choice)
    task: str | None = None  # lm_eval: a task name, from `include` or lm-eval's own
    include: list[str] = []  # lm_eval: folders of task YAMLs
    metric: str | None = None  # lm_eval: which metric scores (default: the task's first)
    seq_len: int = 128
    max_examples: int = 256
    batch_size: int = 8


def _token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t ≥ 1, zero where masked: (B, T−1)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(-1)
    return logp * mask[:, 1:]


def _predict(folder: Path, examples: list, collate, pred_fn, batch_size: int) -> list:
    from luminary.models import load_model
    from luminary.train import Deployer, Predictor

    deployer = Deployer(workdir=None, seed=0, precision="fp32")
    model = deployer.prepare_model(load_model(folder)).eval()
    return Predictor(deployer, collate, pred_fn).predict(model, examples, batch_size)


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def perplexity(folder: Path, text_path: str, seq_len: int, max_examples: int, batch_size: int) -> float:
    from luminary.models import load_tokenizer

    tokenizer = load_tokenizer(folder)
    ids = tokenizer(Path(text_path).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    windows = [ids[i:i + seq_len] for i in range(0, len(ids) - 1, seq_len)][:max_examples]
    windows = [w for w in windows if len(w) > 1]
    if not windows:
        raise LuminaryError(f"{text_path}: too little text to measure perplexity")
    pad = tokenizer.pad_token_id or 0
    collate = lambda rows: dict(zip(("ids", "mask"), _pad(rows, pad)))
    pred = lambda model, b: torch.stack([_token_logprobs(model, b["ids"], b["mask"]).sum(1), b["mask"][:, 1:].sum(1)], 1)
    out = _predict(folder, windows, collate, pred, batch_size)
    nll, count = -sum(o[0].item() for o in out), sum(o[1].item() for o in out)
    return math.exp(nll / count)


def multiple_choice(folder: Path, jsonl: str, max_examples: int, batch_size: int) -> float:
    from luminary.models import load_tokenizer

    tokenizer = load_tokenizer(folder)
    rows = read_jsonl(jsonl, required=("context", "choices", "answer"))[:max_examples]
    pairs = []  # (context ids + choice ids, number of choice tokens)
    for row in rows:
        for choice in row["choices"]:
            context, tokens = encode_pair(tokenizer, row["context"], choice)
            pairs.append((context + tokens, len(tokens)))
    pad = tokenizer.pad_token_id or 0

    def collate(batch):
        ids, mask = _pad([p[0] for p in batch], pad)
        scored = torch.zeros_like(mask)
        for i, (seq, n) in enumerate(batch):
            scored[i, len(seq) - n:len(seq)] = 1
        return {"ids": ids, "mask": mask, "scored": scored}

    pred = lambda model, b: (_token_logprobs(model, b["ids"], b["mask"]) * b["scored"][:, 1:]).sum(1)
    scores = [s.item() for s in _predict(folder, pairs, collate, pred, batch_size)]
    correct, k = 0, 0
    for row in rows:
        n = len(row["choices"])
        best = max(range(n), key=lambda i: scores[k + i])
        correct += int(best == row["answer"])
        k += n
    return correct / len(rows)


def build_evaluator(config: EvaluatorConfig) -> Evaluator:
    if config.kind == "callable":
        if not config.target or ":" not in config.target:
            raise LuminaryError("evaluator.target: expected 'module:function'")
        module, _, name = config.target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise LuminaryError(f"evaluator.target: cannot import {config.target} ({exc})") from None
    if config.kind == "lm_eval":
        return _lm_eval_evaluator(config)
    if not config.path or not Path(config.path).is_file():
        raise LuminaryError(f"evaluator.path: file '{config.path}' not found")
    if config.kind == "perplexity":
        return lambda folder: -perplexity(folder, config.path, config.seq_len, config.max_examples, config.batch_size)
    return lambda folder: multiple_choice(folder, config.path, config.max_examples, config.batch_size)


def _lm_eval_evaluator(config: EvaluatorConfig) -> Evaluator:
    """One lm-eval task's metric on a model folder, signed so that higher is better."""
    from luminary.analysis.harness import evaluate_model, require_lm_eval, resolve_tasks

    require_lm_eval()
    if not config.task:
        raise LuminaryError("evaluator.task: name the lm-eval task (kind lm_eval)")
    tasks = resolve_tasks([config.task], config.include)
    limit = config.max_examples or None

    def score(folder: Path) -> float:
        from luminary.models import load_model, load_tokenizer

        result = evaluate_model(load_model(folder), load_tokenizer(folder), tasks, limit=limit,
                                batch_size=config.batch_size)["tasks"][config.task]
        metric = config.metric or next(iter(result["metrics"]), None)
        if metric not in result["metrics"]:
            raise LuminaryError(f"evaluator.metric: '{metric}' is not among task {config.task}'s metrics "
                                f"({', '.join(result['metrics'])})")
        value = result["metrics"][metric]
        return value if result["higher_is_better"].get(metric, True) else -value

    return score
