"""(input, context) pairs as token ids with a word index, for D and R.

CTC's trained aligners read the input text and its context as one sequence
pair; the input comes first for D (token classification) and second for R
(BLEURT-style regression over (context, input)). Words are the input's
whitespace-separated pieces. The input keeps at most ``max_input_tokens``
subword tokens (whole words only: a word cut by the limit is dropped); only
the context is truncated to fit ``max_length``.

Each subword token of the input carries the index of its word (-1 for the
context, special tokens and padding), found from the token's character
offsets (:func:`first_letter`: a token of no letters, such as RoBERTa's lone
``Ġ``, belongs to the word it opens, as in ctc_score), so D can pool subword
features per word. ctc_score sums them
(``align_features_to_words``) and applies the linear head once per word:

    logit(w) = W · Σ_{t ∈ w} h_t + b = Σ_{t ∈ w} logit(t) − (n_w − 1) b

(n_w the word's subword count, b the head's bias), which :func:`word_logits`
computes from the per-token logits; ``word_features="mean"`` averages them
instead (W · mean h_t + b), as luminary's first aligners were trained.

:func:`clean_text` is ctc_score's ``text_clean``, which its D applies to the
input and the context before aligning.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Literal, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.batching import pad

MAX_INPUT_TOKENS = 256
MAX_LENGTH = 512
WordFeatures = Literal["sum", "mean"]
WORD_FEATURES = ("sum", "mean")


def clean_text(text: str) -> str:
    """ctc_score's ``text_clean``: straight quotes, runs of spaces collapsed, case-folded, stripped; newlines kept.

    The original protects newlines as ``<newline>`` around ``cleantext.clean(text,
    lowercase=True, extra_spaces=True)`` (the PyPI package ``cleantext`` 1.1.4),
    whose two operations are the space collapsing and ``str.casefold()``.
    """
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\n", "<newline>")
    while "  " in text:
        text = text.replace("  ", " ")
    text = text.strip().casefold().replace("<newline>", "\n")
    return text.strip()


EncodedPair = dict  # input_ids, token_type_ids (or None), word_index, words: plain lists


def truncate_words(tokenizer: Any, words: list[str], max_tokens: int) -> list[str]:
    """The longest prefix of ``words`` whose subword tokens number at most ``max_tokens``."""
    text = " ".join(words)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return words
    limit = offsets[max_tokens][0]  # first character of the first token beyond the limit
    kept, end = [], 0
    for word in words:
        end += len(word)
        if end > limit:
            break
        kept.append(word)
        end += 1
    return kept


def first_letter(text: str, start: int, end: int) -> int:
    """Where a token's word is read: its first character that is not a space; for a token of spaces only
    or of no characters (RoBERTa's lone ``Ġ``), the character after it, where the next word begins.

    ctc_score gives a lone ``Ġ`` to the word it opens, as here."""
    while start < end and text[start] == " ":
        start += 1
    return start


def encode_pairs(
    tokenizer: Any,
    inputs: Sequence[str],
    contexts: Sequence[str],
    input_first: bool = True,
    max_input_tokens: int = MAX_INPUT_TOKENS,
    max_length: int = MAX_LENGTH,
) -> list[EncodedPair]:
    """Tokenize pairs; the input's tokens get their word's index, all others -1."""
    if not getattr(tokenizer, "is_fast", False):
        raise LuminaryError("D and R aligners need a fast tokenizer (tokenizer.json) for character offsets")
    words = [truncate_words(tokenizer, text.split(), max_input_tokens) for text in inputs]
    texts = [" ".join(w) for w in words]
    first, second = (texts, list(contexts)) if input_first else (list(contexts), texts)
    enc = tokenizer(first, second, truncation="only_second" if input_first else "only_first",
                    max_length=max_length, return_offsets_mapping=True)
    side = 0 if input_first else 1
    pairs = []
    for i, ws in enumerate(words):
        starts, pos = [], 0
        for w in ws:
            starts.append(pos)
            pos += len(w) + 1
        text = texts[i]
        index = [
            bisect_right(starts, first_letter(text, start, end)) - 1 if seq == side else -1
            for seq, (start, end) in zip(enc.sequence_ids(i), enc["offset_mapping"][i])
        ]
        types = enc["token_type_ids"][i] if "token_type_ids" in enc else None
        pairs.append({"input_ids": enc["input_ids"][i], "token_type_ids": types, "word_index": index, "words": ws})
    return pairs


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def collate_pairs(pairs: Sequence[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch: input_ids, attention_mask, token_type_ids (when used), word_index (-1 on padding).

    Training examples also carry word ``labels`` (padded with -100) and a regression ``target``.
    """
    input_ids, mask = pad([p["input_ids"] for p in pairs], pad_id)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if pairs[0]["token_type_ids"] is not None:
        batch["token_type_ids"] = pad([p["token_type_ids"] for p in pairs], 0)[0]
    batch["word_index"] = pad([p["word_index"] for p in pairs], -1)[0]
    if "labels" in pairs[0]:
        batch["labels"] = pad([p["labels"] or [-100] for p in pairs], -100)[0]
        batch["target"] = torch.tensor([float(p["target"]) for p in pairs])
    return batch


def word_sums(values: torch.Tensor, word_index: torch.Tensor, n_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``values`` (B, T, C) over the tokens of each word (B, n_words, C), and the words' token counts.

    ``word_index`` (B, T) gives each token's word, -1 for tokens of no word; counts are (B, n_words).
    """
    valid = (word_index >= 0).unsqueeze(-1).to(values.dtype)
    index = word_index.clamp(min=0)
    B, _, C = values.shape
    sums = values.new_zeros(B, n_words, C).scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, C), values * valid)
    counts = values.new_zeros(B, n_words).scatter_add_(1, index, valid.squeeze(-1))
    return sums, counts


def word_mean(values: torch.Tensor, word_index: torch.Tensor, n_words: int) -> torch.Tensor:
    """Mean of ``values`` (B, T, C) over the tokens of each word: (B, n_words, C)."""
    sums, counts = word_sums(values, word_index, n_words)
    return sums / counts.clamp(min=1).unsqueeze(-1)


def head_bias(model: torch.nn.Module) -> torch.Tensor:
    """The bias b of a token classifier's linear head (``model.classifier``: BERT, RoBERTa, ALBERT, DeBERTa, ...)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise LuminaryError(f"{type(model).__name__}: summed word features need a linear head at `.classifier`; "
                            "use word_features='mean'")
    if head.bias is None:
        return head.weight.new_zeros(head.out_features)
    bias = head.bias
    return bias.full_tensor() if hasattr(bias, "full_tensor") else bias  # a sharded DTensor, whole


def word_logits(logits: torch.Tensor, word_index: torch.Tensor, n_words: int, how: WordFeatures,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """(B, n_words, C) word logits from token logits (B, T, C) of a linear head.

    ``sum``: W · Σ_t h_t + b = Σ_t logit_t − (n_w − 1) b (ctc_score); ``mean``: W · mean_t h_t + b.
    """
    if how == "mean":
        return word_mean(logits, word_index, n_words)
    if how != "sum":
        raise LuminaryError(f"word_features must be 'sum' or 'mean', got {how!r}")
    if bias is None:
        raise LuminaryError("summed word features need the head's bias")
    sums, counts = word_sums(logits, word_index, n_words)
    return sums - (counts - 1).unsqueeze(-1) * bias.to(logits.dtype)
