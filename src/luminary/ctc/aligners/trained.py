"""D and R: aligners trained on self-supervised hallucination data.

**D (discriminative)**, CTC §3.2: a token classifier over (input, context)
with two labels, 0 = consistent and 1 = hallucinated. As in ctc_score, the
subword features of each word of the input are summed and the word is scored

    s_w = softmax(W · Σ_{t ∈ w} h_t + b)[0] = P(not hallucinated)

The head is linear, so this is Σ_t logit_t − (n_w − 1) b over the model's own
per-token logits (:func:`word_logits`). ``word_features="mean"`` scores
softmax(W · mean_t h_t + b) instead. By default the folder's
``ctc_aligner.json`` says which one it was trained with (a record without
``word_features``, from before the choice existed, means mean; a folder
without a record, e.g. a converted checkpoint, gets sum).

Like ctc_score's D, the input and the context are first cleaned with
:func:`clean_text` (``clean=False`` turns it off); the words returned are
the cleaned input's. R reads the texts as given unless ``clean=True``.

**R (regression)**: a sequence regressor (pooler, then Linear(hidden, 1))
over (context, input); one score for the whole input, trained toward the
share of its words that are not hallucinated.

Both load a folder written by ``luminary ctc train`` (``save_pretrained``
with its tokenizer) and score many pairs per batch, sorted by length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.base import Alignment
from luminary.ctc.aligners.batching import default_device, length_batches, token_budget
from luminary.ctc.aligners.pairs import (
    MAX_INPUT_TOKENS,
    MAX_LENGTH,
    MODEL_INPUTS,
    WORD_FEATURES,
    EncodedPair,
    WordFeatures,
    clean_text,
    collate_pairs,
    encode_pairs,
    head_bias,
    word_logits,
)

RECORD = "ctc_aligner.json"  # written beside a trained aligner by `luminary ctc train`


def recorded_word_features(folder: str | Path) -> WordFeatures:
    """How a D folder pools subwords: its record's ``word_features``; mean for an older record; sum without one."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return "sum"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LuminaryError(f"{path}: not a readable JSON record ({err})") from None
    value = record.get("word_features", "mean") if isinstance(record, dict) else None
    if value not in WORD_FEATURES:
        raise LuminaryError(f"{path}: word_features must be one of {', '.join(WORD_FEATURES)}, got {value!r}")
    return value


def load_head_model(folder: str | Path, kind: str, allow_pickle: bool = False) -> Any:
    """A trained D (token classifier, 2 labels) or R (sequence regressor, 1 output) folder."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from luminary.models.loading import load_config, load_model

    auto, suffix, labels = (
        (AutoModelForTokenClassification, "ForTokenClassification", 2) if kind == "D"
        else (AutoModelForSequenceClassification, "ForSequenceClassification", 1)
    )
    config = load_config(folder)
    architectures = config.architectures or []
    if not any(a.endswith(suffix) for a in architectures) or config.num_labels != labels:
        raise LuminaryError(
            f"{folder}: not a trained {kind} aligner (expected a *{suffix} model with {labels} "
            f"output{'s' if labels > 1 else ''}, found {architectures or 'no architecture'}); "
            "train one with `luminary ctc train`"
        )
    return load_model(folder, auto, allow_pickle=allow_pickle)


class PairAligner:
    """Shared loading and batching of D and R; subclasses read the model's output."""

    kind = ""
    input_first = True
    clean_by_default = False

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        max_input_tokens: int = MAX_INPUT_TOKENS,
        max_length: int = MAX_LENGTH,
        max_tokens: int | None = None,
        allow_pickle: bool = False,
        clean: bool | None = None,
    ):
        from luminary.models.loading import load_tokenizer

        self.clean = self.clean_by_default if clean is None else clean
        self.device = default_device(device)
        self.model = load_head_model(model, self.kind, allow_pickle).to(self.device).eval()
        self.tokenizer = load_tokenizer(model)
        self.max_input_tokens, self.max_length = max_input_tokens, max_length
        self.max_tokens = token_budget(self.model.config, self.device, max_tokens)

    def encode(self, inputs: Sequence[str], contexts: Sequence[str]) -> list[EncodedPair]:
        if self.clean:
            inputs, contexts = [clean_text(t) for t in inputs], [clean_text(t) for t in contexts]
        return encode_pairs(self.tokenizer, inputs, contexts, self.input_first, self.max_input_tokens, self.max_length)

    @torch.inference_mode()
    def align(self, inputs: Sequence[str], contexts: Sequence[str]) -> list[Alignment]:
        if len(inputs) != len(contexts):
            raise LuminaryError(f"{len(inputs)} inputs but {len(contexts)} contexts")
        pairs = self.encode(inputs, contexts)
        out: list[Alignment | None] = [None] * len(pairs)
        for batch_ids in length_batches([len(p["input_ids"]) for p in pairs], self.max_tokens):
            chunk = [pairs[i] for i in batch_ids]
            batch = {k: v.to(self.device) for k, v in collate_pairs(chunk, self.tokenizer.pad_token_id or 0).items()}
            logits = self.model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits.float()
            word_index = batch["word_index"]
            for i, alignment in zip(batch_ids, self.read(logits, word_index, chunk)):
                out[i] = alignment
        return out  # type: ignore[return-value]

    def read(self, logits: torch.Tensor, word_index: torch.Tensor, pairs: list[EncodedPair]) -> list[Alignment]:
        raise NotImplementedError


class DiscriminativeAligner(PairAligner):
    """D: per word of the input, P(not hallucinated | input, context).

    ``word_features``: ``sum`` (ctc_score) or ``mean`` of the subword features; default: what the folder records.
    """

    kind = "D"
    clean_by_default = True

    def __init__(
        self,
        model: str | Path,
        device: str | None = None,
        max_input_tokens: int = MAX_INPUT_TOKENS,
        max_length: int = MAX_LENGTH,
        max_tokens: int | None = None,
        allow_pickle: bool = False,
        clean: bool | None = None,
        word_features: WordFeatures | None = None,
    ):
        if word_features is not None and word_features not in WORD_FEATURES:
            raise LuminaryError(f"word_features must be one of {', '.join(WORD_FEATURES)}, got {word_features!r}")
        self.word_features = word_features or recorded_word_features(model)  # a bad record fails before loading
        super().__init__(model, device, max_input_tokens, max_length, max_tokens, allow_pickle, clean)
        self.bias = head_bias(self.model).detach().float() if self.word_features == "sum" else None

    def read(self, logits, word_index, pairs):
        n_words = max(1, max(len(p["words"]) for p in pairs))
        pooled = word_logits(logits, word_index, n_words, self.word_features, self.bias)  # (B, W, 2)
        probs = torch.softmax(pooled, dim=-1)[..., 0]  # (B, W)
        return [Alignment(list(p["words"]), probs[b, : len(p["words"])].tolist()) for b, p in enumerate(pairs)]


class RegressionAligner(PairAligner):
    """R: one regressed score for the whole input given the context."""

    kind = "R"
    input_first = False

    def read(self, logits, word_index, pairs):
        return [Alignment(None, [float(v)]) for v in logits[:, 0]]
