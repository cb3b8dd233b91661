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
some inputs of a tensor lack is filled in for them as mergekit fills it: from
the one input that has it; else from ``base_model`` when that is an input and
has it; else with the mean of the rows of the inputs that have it. The merge of
that row is then the merge of the models that know the token. A token no input
has stays zero.
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
    base: str | None = None  # the config's base_model (None: every holder of a token is averaged)

    def apply(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each tensor's rows in the output order; rows a model lacks filled as the module docstring says."""
        out, have = {}, {}
        for name, tensor in tensors.items():
            idx = self.rows[name]
            gathered = tensor.new_zeros((self.size, *tensor.shape[1:]))
            have[name] = idx >= 0
            gathered[have[name]] = tensor[idx[have[name]]]
            out[name] = gathered
        holders = torch.stack(list(have.values())).sum(dim=0)  # (size,)
        partial = (holders > 0) & (holders < len(out))
        if not partial.any():
            return out
        rows = partial.nonzero().squeeze(1)
        dtype = out[next(iter(out))].dtype
        for tensor in out.values():
            dtype = torch.promote_types(dtype, tensor.dtype)
        # the mean over holders (one holder: its own row); rows the base holds take the base's row
        fill = sum(out[name][rows].to(dtype) * have[name][rows].to(dtype).view(-1, *[1] * (out[name].dim() - 1))
                   for name in out)
        fill = fill / holders[rows].to(dtype).view(-1, *[1] * (fill.dim() - 1))
        if self.base in out:
            from_base = have[self.base][rows]
            fill[from_base] = out[self.base][rows[from_base]].to(dtype)
        for name, tensor in out.items():
            lacking = rows[~have[name][rows]]
            tensor[lacking] = fill[~have[name][rows]].to(tensor.dtype)
        return out


def plan_vocab(models: dict[str, ModelFolder], base: str, source: str | None,
               true_base: str | None = None) -> VocabMap | None:
    """None when all vocabularies agree; else the joining chosen by ``source`` (an error without one).

    ``base`` is the reference model (the base, else the first model); ``true_base`` the config's
    ``base_model``, whose rows fill the tokens other inputs lack."""
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
    return VocabMap(size, rows, order, tokenizer_from, added, true_base)


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
