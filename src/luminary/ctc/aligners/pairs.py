"""(input, context) pairs as token ids with a word index, for D and R.

CTC's trained aligners read the input text and its context as one sequence
pair; the input comes first for D (token classification) and second for R
(BLEURT-style regression over (context, input)). Words are the input's
whitespace-separated pieces. The input keeps at most ``max_input_tokens``
subword tokens (whole words only: a word cut by the limit is dropped); only
the context is truncated to fit ``max_length``.

Each subword token of the input carries the index of its word (-1 for the
context, special tokens and padding), found from the token's character
offsets, so D can average subword features per word:

    f(word w) = mean_{t ∈ w} f(t)
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners.batching import pad

MAX_INPUT_TOKENS = 256
MAX_LENGTH = 512


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
        index = [
            bisect_right(starts, end - 1) - 1 if seq == side and end > start else -1
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


def word_mean(values: torch.Tensor, word_index: torch.Tensor, n_words: int) -> torch.Tensor:
    """Mean of ``values`` (B, T, C) over the tokens of each word: (B, n_words, C).

    ``word_index`` (B, T) gives each token's word, -1 for tokens of no word.
    """
    valid = (word_index >= 0).unsqueeze(-1).to(values.dtype)
    index = word_index.clamp(min=0)
    B, _, C = values.shape
    sums = values.new_zeros(B, n_words, C).scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, C), values * valid)
    counts = values.new_zeros(B, n_words).scatter_add_(1, index, valid.squeeze(-1))
    return sums / counts.clamp(min=1).unsqueeze(-1)
