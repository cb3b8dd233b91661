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

``tokenizer.tokens`` (mergekit's per-token rules, ``tokenizer/embed.py``) names
tokens whose rows are given instead: a token missing from the output
vocabulary is added to it; where some input of a tensor lacks the token (or
always, with ``force: true``) that input's row is the rule's ``source``: a
model (that model's row of the token), ``{kind: zero}``, or ``{kind:
model_token, model: M, token: T}`` (or ``token_id``: row T of M's own
vocabulary). A rule for a token every input has, without ``force``, changes
nothing.
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
    rules: list["TokenRule"] = None  # tokenizer.tokens, resolved
    pad_from: int | None = None  # rows from here on pad the size to a multiple (tokenizer.pad_to_multiple_of)
    tokens: int = 0  # the output vocabulary's number of tokens (its rows come first)

    def _rule_row(self, rule: "TokenRule", original: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
                  have: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        some = next(iter(out.values()))
        if rule.kind == "zero":
            return some.new_zeros(some.shape[1:], dtype=dtype)
        if rule.model not in out:
            raise LuminaryError(f"tokenizer.tokens: token {rule.token!r} takes its row from {rule.model}, "
                                "which is not an input of this tensor")
        if rule.kind == "model_token":
            tensor = original[rule.model]
            if not 0 <= rule.row < tensor.shape[0]:
                raise LuminaryError(f"tokenizer.tokens: token {rule.token!r}: row {rule.row} is out of range "
                                    f"for {rule.model} ({tensor.shape[0]} rows)")
            return tensor[rule.row].to(dtype)
        if not have[rule.model][rule.out_id]:
            raise LuminaryError(f"tokenizer.tokens: token {rule.token!r} is not in {rule.model}'s vocabulary")
        return out[rule.model][rule.out_id].to(dtype)

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
        self._fill(out, have, holders, partial)
        if self.rules:
            dtype = out[next(iter(out))].dtype
            for tensor in out.values():
                dtype = torch.promote_types(dtype, tensor.dtype)
            for rule in self.rules:
                lacking = [name for name in out if not have[name][rule.out_id]]
                if not (rule.force or lacking):
                    continue
                row = self._rule_row(rule, tensors, out, have, dtype)
                for name in (out if rule.force else lacking):
                    out[name][rule.out_id] = row.to(out[name].dtype)
        if self.pad_from is not None:  # as mergekit pads: each model's mean row of the tokens
            for tensor in out.values():
                tensor[self.pad_from:] = tensor[:self.tokens].float().mean(dim=0).to(tensor.dtype)
        return out

    def _fill(self, out, have, holders, partial) -> None:
        if not partial.any():
            return
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


@dataclass(frozen=True)
class TokenRule:
    token: str
    out_id: int
    force: bool
    kind: str  # "zero", "model" (the model's row of this token), "model_token" (row ``row`` of ``model``)
    model: str | None = None
    row: int = -1


def _token_rules(tokens, target: dict[str, int], vocabs: dict[str, dict[str, int]], sizes) -> list[TokenRule]:
    rules = []
    for token, cfg in tokens.items():
        out_id = target[token]
        source = cfg.source
        if source is None:
            if cfg.force or any(token not in v for v in vocabs.values()):
                raise LuminaryError(f"tokenizer.tokens: token {token!r} needs a source (a model, {{kind: zero}} "
                                    "or {kind: model_token, ...})")
            continue
        if isinstance(source, str):
            if source not in vocabs:
                raise LuminaryError(f"tokenizer.tokens: token {token!r}: source {source} is not a merged model")
            if token not in vocabs[source] and (cfg.force or any(token not in v for v in vocabs.values())):
                raise LuminaryError(f"tokenizer.tokens: token {token!r} is not in {source}'s vocabulary")
            rules.append(TokenRule(token, out_id, cfg.force, "model", source))
        elif source.kind == "zero":
            rules.append(TokenRule(token, out_id, cfg.force, "zero"))
        else:
            if source.model not in vocabs:
                raise LuminaryError(f"tokenizer.tokens: token {token!r}: model {source.model} is not a merged model")
            row = source.token_id
            if row is None:
                if source.token not in vocabs[source.model]:
                    raise LuminaryError(f"tokenizer.tokens: token {source.token!r} is not in {source.model}'s "
                                        "vocabulary")
                row = vocabs[source.model][source.token]
            if not 0 <= row < (sizes[source.model] or 0):
                raise LuminaryError(f"tokenizer.tokens: token {token!r}: token_id {row} is out of range for "
                                    f"{source.model}")
            rules.append(TokenRule(token, out_id, cfg.force, "model_token", source.model, row))
    return rules


def plan_vocab(models: dict[str, ModelFolder], base: str, source: str | None,
               true_base: str | None = None, tokens: dict | None = None,
               pad_to_multiple_of: int | None = None) -> VocabMap | None:
    """None when all vocabularies agree; else the joining chosen by ``source`` (an error without one).

    ``base`` is the reference model (the base, else the first model); ``true_base`` the config's
    ``base_model``, whose rows fill the tokens other inputs lack. ``pad_to_multiple_of``: the rows
    are padded up to a multiple of it, each pad row every model's mean row of the output tokens
    (mergekit's ``tokenizer/embed.py``)."""
    vocabs = {name: read_vocab(m.path) for name, m in models.items()}
    sizes = {name: m.vocab_size for name, m in models.items()}
    known = [v for v in vocabs.values() if v is not None]
    agree = len(set(sizes.values())) == 1 and all(v == known[0] for v in known)
    pad = pad_to_multiple_of or 0
    if agree and source in (None, "base") and not tokens and not (pad > 1 and (sizes[base] or 0) % pad):
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
    for token in tokens or {}:  # mergekit adds the tokens its rules name to the output tokenizer
        if token not in target:
            target[token] = len(target)
            added.append(token)
            size = max(size, len(target))
    pad_from = None
    if pad > 1 and size % pad:
        pad_from, size = size, size + pad - size % pad
    by_id = {i: t for t, i in target.items()}
    rows = {}
    for name in models:
        idx = torch.full((size,), -1, dtype=torch.long)
        for i in range(pad_from or size):
            token = by_id.get(i)
            j = vocabs[name].get(token, -1) if token is not None else (i if i < sizes[name] else -1)
            idx[i] = j if j < sizes[name] else -1
        rows[name] = idx
    rules = _token_rules(tokens, target, vocabs, sizes) if tokens else []
    return VocabMap(size, rows, order, tokenizer_from, added, true_base, rules, pad_from, len(target))


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
