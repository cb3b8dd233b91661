"""Sequence-level rewards: callables over a batch of (source, generated text).

A reward is any callable ``fn(sources, texts, targets) -> sequence of floats``,
one value per generated text, on the scale of [0, 100] that reward shaping
expects (``targets`` holds the dataset's reference texts, or ``None`` items).
The built-in terms are those of Guo et al. (2022)'s tasks; each returns the
quantity its name says and a weight carries the sign:

| kind        | value                                                     | paper's weight |
| ----------- | --------------------------------------------------------- | -------------- |
| bleu        | sentence BLEU (sacrebleu, 0–100) to the target/source/text | +1             |
| classifier  | 100 · P(label | text) (or | source, text) of a classifier  | +1             |
| lm_nll      | mean per-token negative log-likelihood under a language model | −1          |
| repetition  | repeated word n-grams (count − distinct)                   | −5             |
| python      | your function, ``module:function`` or ``file.py:function``  |                |

:class:`WeightedSum` adds weighted terms; every term's output is checked
(:func:`checked_rewards`): a wrong count or a non-finite value is a
:class:`LuminaryError` naming the reward and the batch index.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from luminary.core.errors import LuminaryError

RewardFn = Callable[[list[str], list[str], list[str | None]], Any]


def checked_rewards(fn: RewardFn, name: str, sources: list[str], texts: list[str],
                    targets: list[str | None]) -> torch.Tensor:
    """Call ``fn`` and check one finite value per text; returns float32 (B,)."""
    values = fn(sources, texts, targets)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().reshape(-1).tolist()
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise LuminaryError(f"reward '{name}': expected one number per text ({exc})") from None
    if len(values) != len(texts):
        raise LuminaryError(f"reward '{name}': returned {len(values)} values for a batch of {len(texts)} texts")
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise LuminaryError(f"reward '{name}': {value} at batch index {index} (text {texts[index][:40]!r})")
    return torch.tensor(values, dtype=torch.float32)


class WeightedSum:
    """r = Σ_i w_i · r_i over named terms, each checked on its own."""

    def __init__(self, terms: Sequence[tuple[str, float, RewardFn]]):
        if not terms:
            raise LuminaryError("rewards: give at least one reward")
        self.terms = list(terms)

    def __call__(self, sources: list[str], texts: list[str], targets: list[str | None]) -> torch.Tensor:
        total = torch.zeros(len(texts))
        for name, weight, fn in self.terms:
            total += weight * checked_rewards(fn, name, sources, texts, targets)
        return total


class SentenceBLEU:
    """Sentence BLEU (sacrebleu, exponential smoothing) of the text to a reference.

    ``reference``: ``"target"`` (the example's target), ``"source"`` (the
    example's source, as the paper's paraphrase rewards) or a fixed text.
    """

    def __init__(self, reference: str = "target"):
        self.reference = reference

    def references(self, sources: list[str], targets: list[str | None]) -> list[str]:
        if self.reference == "source":
            return sources
        if self.reference != "target":
            return [self.reference] * len(sources)
        if any(t is None for t in targets):
            raise LuminaryError("reward 'bleu': reference 'target' needs a target text in every example")
        return list(targets)  # type: ignore[arg-type]

    def __call__(self, sources: list[str], texts: list[str], targets: list[str | None]) -> list[float]:
        import sacrebleu

        return [sacrebleu.sentence_bleu(t, [r]).score for t, r in zip(texts, self.references(sources, targets))]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class ClassifierProbability:
    """100 · P(label | text) from a sequence classifier folder (``pair``: P(label | source, text))."""

    def __init__(self, model: str, label: int | str, pair: bool = False, batch_size: int = 32,
                 max_length: int = 512, allow_pickle: bool = False):
        from transformers import AutoModelForSequenceClassification

        from luminary.models.loading import load_model, load_tokenizer

        self.model = load_model(model, auto_class=AutoModelForSequenceClassification, allow_pickle=allow_pickle).eval()
        self.tokenizer = load_tokenizer(model)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        labels = {str(v): int(k) for k, v in (self.model.config.id2label or {}).items()}
        if isinstance(label, str) and not label.isdigit():
            if label not in labels:
                raise LuminaryError(f"reward 'classifier': label {label!r} not in {sorted(labels)} of {model}")
            self.label = labels[label]
        else:
            self.label = int(label)
        if not 0 <= self.label < self.model.config.num_labels:
            raise LuminaryError(f"reward 'classifier': label {self.label} out of range for {model}")
        self.pair, self.batch_size, self.max_length = pair, batch_size, max_length

    @torch.no_grad()
    def __call__(self, sources: list[str], texts: list[str], targets: list[str | None]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            args = (sources[i : i + self.batch_size], texts[i : i + self.batch_size]) if self.pair else \
                (texts[i : i + self.batch_size],)
            enc = self.tokenizer(*args, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length).to(_device_of(self.model))
            probs = self.model(**enc).logits.float().softmax(-1)[:, self.label]
            out.extend((100.0 * probs).tolist())
        return out


class LanguageModelNLL:
    """Mean per-token NLL of ``BOS text EOS`` under a causal LM (natural log)."""

    def __init__(self, model: str, batch_size: int = 32, max_length: int = 512, allow_pickle: bool = False):
        from luminary.models.loading import load_model, load_tokenizer

        self.model = load_model(model, allow_pickle=allow_pickle).eval()
        self.tokenizer = load_tokenizer(model)
        self.batch_size, self.max_length = batch_size, max_length

    def encode(self, text: str) -> list[int]:
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"][: self.max_length - 2]
        head = [tok.bos_token_id] if tok.bos_token_id is not None else []
        tail = [tok.eos_token_id] if tok.eos_token_id is not None else []
        return head + ids + tail

    @torch.no_grad()
    def __call__(self, sources: list[str], texts: list[str], targets: list[str | None]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            seqs = [self.encode(t) for t in texts[i : i + self.batch_size]]
            width = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), width, dtype=torch.long)
            mask = torch.zeros(len(seqs), width, dtype=torch.long)
            for row, s in enumerate(seqs):
                ids[row, : len(s)] = torch.tensor(s)
                mask[row, : len(s)] = 1
            device = _device_of(self.model)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            valid = mask[:, 1:].float()
            out.extend(((nll * valid).sum(1) / valid.sum(1).clamp(min=1)).tolist())
        return out


class RepetitionCount:
    """Repeated word n-grams of a text: (number of n-grams) − (number of distinct n-grams)."""

    def __init__(self, n: int = 1):
        if n < 1:
            raise LuminaryError(f"reward 'repetition': n must be >= 1, got {n}")
        self.n = n

    def __call__(self, sources: list[str], texts: list[str], targets: list[str | None]) -> list[float]:
        out = []
        for text in texts:
            words = text.split()
            grams = [tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)]
            out.append(float(len(grams) - len(set(grams))))
        return out


def load_callable(spec: str) -> RewardFn:
    """``package.module:function`` or ``path/to/file.py:function``."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise LuminaryError(f"reward 'python': expected 'module:function' or 'file.py:function', got {spec!r}")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise LuminaryError(f"reward 'python': {path} not found")
        module_spec = importlib.util.spec_from_file_location(f"luminary_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise LuminaryError(f"reward 'python': cannot import {where} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise LuminaryError(f"reward 'python': {where} has no function {attr!r}")
    return fn


# kind -> (builder from keyword arguments); the config's ``rewards[i].kind`` picks one.
REWARDS: dict[str, Callable[..., RewardFn]] = {
    "bleu": SentenceBLEU,
    "classifier": ClassifierProbability,
    "lm_nll": LanguageModelNLL,
    "repetition": RepetitionCount,
    "python": lambda function: load_callable(function),
}
