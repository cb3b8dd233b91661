"""Joining vocabularies: merged models must agree on what each embedding row means.

Rows of the embedding and output head are tokens. Models whose vocabularies
differ (in size, or in which token has which id) cannot be merged row by row;
luminary stops with an error unless the config says how to join them
(mergekit's ``tokenizer_source``):

- ``base``: the base model's vocabulary (the first model's without a base);
- a model folder: that model's vocabulary;
- ``union``: the base vocabulary, then every other model's missing tokens
  appended in model order (they become added tokens of the output tokenizer).

Each model's rows are gathered by token string into the output order. A token
a model lacks takes its row from the first model that has it (base first), so
that model contributes the same vector as the others and the merge of that row
is the merge of the models that know the token.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from luminary.core.io import read_json
from luminary.core.errors import LuminaryError
from luminary.merge.zoo import ModelFolder

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def read_vocab(folder: Path) -> dict[str, int] | None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)


@dataclass
class VocabMap:
    """For each model, the source row of each output row (−1: the model lacks that token)."""

    size: int
    rows: dict[str, torch.Tensor]
    order: list[str]  # fill priority: base first
    tokenizer_from: Path
    added_tokens: list[str]

    def apply(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, tensor in tensors.items():
            idx = self.rows[name]
            gathered = tensor.new_zeros((self.size, *tensor.shape[1:]))
            have = idx >= 0
            gathered[have] = tensor[idx[have]]
            out[name] = gathered
        for name in out:
            missing = self.rows[name] < 0
            for donor in self.order:
                take = missing & (self.rows[donor] >= 0)
                if donor != name and take.any():
                    out[name][take] = out[donor][take]
                    missing = missing & ~take
        return out


def plan_vocab(models: dict[str, ModelFolder], base: str, source: str | None) -> VocabMap | None:
    """None when all vocabularies agree; else the joining chosen by ``source`` (an error without one)."""
    vocabs = {name: read_vocab(m.path) for name, m in models.items()}
    sizes = {name: m.vocab_size for name, m in models.items()}
    known = [v for v in vocabs.values() if v is not None]
    agree = len(set(sizes.values())) == 1 and all(v == known[0] for v in known)
    if agree and source in (None, "base"):
        return None
    if source is None:
        summary = ", ".join(f"{n}: {sizes[n]}" for n in models)
        raise LuminaryError(f"the models' vocabularies differ ({summary} rows); set tokenizer_source to "
                            "'base', 'union' or a model folder to choose how to join them")
    if any(v is None for v in vocabs.values()):
        missing = next(n for n, v in vocabs.items() if v is None)
        raise LuminaryError(f"{missing}: no tokenizer.json, so its rows cannot be matched to tokens")
    order = [base] + [n for n in models if n != base]
    source = base if source == "base" else source
    if source == "union":
        target = dict(vocabs[base])
        added = []
        for name in order[1:]:
            for token, _ in sorted(vocabs[name].items(), key=lambda kv: kv[1]):
                if token not in target:
                    target[token] = len(target)
                    added.append(token)
        size, tokenizer_from = max(len(target), sizes[base]), models[base].path
    else:
        folder = models[source].path if source in models else Path(source)
        target = read_vocab(folder)
        if target is None:
            raise LuminaryError(f"tokenizer_source: {folder} has no tokenizer.json")
        added = []
        size = max(len(target), read_json(folder / "config.json").get("vocab_size", 0)
                   if (folder / "config.json").is_file() else 0)
        tokenizer_from = folder
    by_id = {i: t for t, i in target.items()}
    rows = {}
    for name in models:
        idx = torch.full((size,), -1, dtype=torch.long)
        for i in range(size):
            token = by_id.get(i)
            j = vocabs[name].get(token, -1) if token is not None else (i if i < sizes[name] else -1)
            idx[i] = j if j < sizes[name] else -1
        rows[name] = idx
    return VocabMap(size, rows, order, tokenizer_from, added)


def write_tokenizer(out: Path, source: Path, added_tokens: list[str], chat_template: str | None) -> None:
    """Copy the tokenizer files of ``source``; add the union's new tokens; set a chat template."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    if added_tokens or chat_template:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(out))
        if added_tokens:
            tokenizer.add_tokens(added_tokens)
        if chat_template:
            tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(str(out))
