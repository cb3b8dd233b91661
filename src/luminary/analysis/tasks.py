"""Benchmarks over checkpoints: built-in tasks, task files, or any Python callable.

Built in, offline and held out from the ``stdlib-code``/``stdlib-prose`` sources
(which exclude the standard library's tests):

- ``code-completion``: next-line completion as CodeXGLUE's line-level task
  scores it (Lu et al. 2021, arXiv:2102.04664): exact match and edit
  similarity. From functions in the standard library's test modules, the
  prompt is a function up to a line of its body and the target is that line;
  the greedy completion's next line is compared with it, both stripped
  (:func:`next_line`).
  Edit similarity = 1 − Levenshtein(a, b) / max(|a|, |b|), averaged over items:
  it moves long before a tiny model gets whole lines right.
- ``prose-cloze``: the last word of sentences from the test modules'
  docstrings; the greedy continuation's first word must equal it (exact
  match), and the mean log-likelihood of " word" after the prompt (nats).

A task file is JSONL: ``{"prompt", "target"}`` rows (scored as code
completion) or ``{"prompt", "choices", "answer"}`` rows (accuracy: the choice
with the highest log-likelihood must be ``answer``). A callable is named
``module:function`` and called as ``function(model, tokenizer)``. Every task
returns a float or a dict of named floats (the first is the headline score).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl
from luminary.data.sources import read_text, stdlib_root
from luminary.data.tokenizer import encode_pair

Task = Callable[[torch.nn.Module, Any], "float | dict[str, float]"]


def _test_files() -> list[Path]:
    root = stdlib_root()
    return sorted((root / "test").glob("test_*.py"))


def code_completion_items(n: int = 200, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    items = []
    for path in _test_files():
        source = read_text(path)
        if not source:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 3:
                body = [i for i in range(node.lineno, node.end_lineno) if lines[i].strip()
                        and not lines[i].strip().startswith(("#", '"""', "'''"))]
                if body:
                    i = body[int(rng.integers(len(body)))]
                    prompt = "\n".join(lines[node.lineno - 1 : i]) + "\n"
                    items.append({"prompt": prompt, "target": lines[i]})
    rng.shuffle(items)
    return items[:n]


def prose_cloze_items(n: int = 200, seed: int = 0) -> list[dict[str, str]]:
    from luminary.data.sources import docstrings

    sentences = []
    for path in _test_files():
        for doc in docstrings(read_text(path) or ""):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                words = sentence.rstrip(".!?").split()
                if len(words) >= 8 and words[-1].isalpha():
                    sentences.append({"prompt": " ".join(words[:-1]), "target": words[-1]})
    rng = np.random.default_rng(seed)
    rng.shuffle(sentences)
    return sentences[:n]


@torch.no_grad()
def greedy_text(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each 1): rapidfuzz's C++ implementation
    (already a dependency for the harvester's prompt filter)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b)


def edit_similarity(a: str, b: str) -> float:
    """1 − Levenshtein(a, b) / max(|a|, |b|); 1 for two empty strings."""
    longest = max(len(a), len(b))
    return 1.0 - levenshtein(a, b) / longest if longest else 1.0


def next_line(model, tokenizer, prompt: str, max_new_tokens: int = 48) -> str:
    """The greedy completion's next line.

    A prompt that ends in a newline is cut before it, and the line after the
    completion's first newline is taken: a byte-level BPE merges a newline with
    the next line's indentation (``"\n" + 8 spaces`` is one token), so a bare
    trailing newline is a token boundary the model never saw in training and
    derails it (the "token healing" problem).
    """
    if prompt.endswith("\n"):
        lines = greedy_text(model, tokenizer, prompt[:-1], max_new_tokens).split("\n")
        return lines[1] if len(lines) > 1 else ""
    return greedy_text(model, tokenizer, prompt, max_new_tokens).split("\n")[0]


def line_completion(items: list[dict[str, str]]) -> Task:
    """Exact match and edit similarity of the greedy completion's next line against ``target``."""
    def task(model, tokenizer) -> dict[str, float]:
        exact = similarity = 0.0
        for item in items:
            line = next_line(model, tokenizer, item["prompt"]).strip()
            target = item["target"].strip()
            exact += line == target
            similarity += edit_similarity(line, target)
        return {"exact_match": exact / len(items), "edit_similarity": similarity / len(items)}

    return task


def word_cloze(items: list[dict[str, str]]) -> Task:
    """Exact match of the greedy continuation's first word, and the target's mean log-likelihood."""
    def task(model, tokenizer) -> dict[str, float]:
        exact = likelihood = 0.0
        for item in items:
            words = re.findall(r"[A-Za-z]+", greedy_text(model, tokenizer, item["prompt"], 8))
            exact += bool(words) and words[0] == item["target"]
            likelihood += log_likelihood(model, tokenizer, item["prompt"], " " + item["target"])
        return {"exact_match": exact / len(items), "log_likelihood": likelihood / len(items)}

    return task


@torch.no_grad()
def log_likelihood(model, tokenizer, prompt: str, continuation: str) -> float:
    p, c = encode_pair(tokenizer, prompt, continuation)  # as lm-evaluation-harness splits them
    ids = torch.tensor([p + c])
    logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(p) - 1, len(p) + len(c) - 1), targets[len(p) - 1 :]].sum())


def multiple_choice(items: list[dict[str, Any]]) -> Task:
    def task(model, tokenizer) -> float:
        hits = 0
        for item in items:
            scores = [log_likelihood(model, tokenizer, item["prompt"], c) for c in item["choices"]]
            hits += int(np.argmax(scores)) == int(item["answer"])
        return hits / len(items)

    return task


def load_task(spec: str, samples: int = 200) -> tuple[str, Task]:
    """A task from a built-in name, a JSONL file, or ``module:function``."""
    if spec == "code-completion":
        return spec, line_completion(code_completion_items(samples))
    if spec == "prose-cloze":
        return spec, word_cloze(prose_cloze_items(samples))
    path = Path(spec)
    if path.suffix == ".jsonl":
        rows = read_jsonl(path, required=("prompt",))
        for number, row in enumerate(rows, 1):
            if "target" not in row and not ("choices" in row and "answer" in row):
                raise LuminaryError(f"{path}: line {number}: needs 'target', or 'choices' and 'answer'")
        if all("choices" in r for r in rows):
            return path.stem, multiple_choice(rows[:samples])
        return path.stem, line_completion(rows[:samples])
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise LuminaryError(f"--task: cannot import {spec} ({exc})") from None
        return attr, fn
    raise LuminaryError(f"--task: '{spec}' is not code-completion, prose-cloze, a .jsonl file or module:function")
