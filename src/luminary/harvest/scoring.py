"""The score of an entity tuple under one prompt, for masked and causal LMs, batched.

Masked LM (BertNet, specs/bertnet.md step 2): every entity token is masked and
they are predicted left to right: token i is read with the tokens before it
filled in and the ones after it still masked, giving lp_1..lp_T. Causal LM
(the spec's "going beyond"): lp_t is the log-probability of entity token t in
the filled prompt, given everything before it, and (``boundary``, luminary's
own, on by default in a harvest) that of the prompt token right after each
entity, which is how a causal LM tells a whole name from its prefix. Either way

    score = (Σ lp / T + Σ lp / n_entities + min lp) / 3

a mix of the joint log-likelihood (per token and per entity) and the weakest
token. Every (tuple, prompt, step) is one row; rows are sorted by length and
run many per forward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from luminary.core.errors import LuminaryError

SLOT_SPLIT = re.compile(r"(<ENT\d+>)")


def tuple_score(lps: Sequence[float], n_entities: int) -> float:
    """(Σlp/T + Σlp/n_entities + min lp)/3 (specs/bertnet.md, step 2)."""
    total = float(sum(lps))
    return (total / len(lps) + total / n_entities + float(min(lps))) / 3.0


@dataclass
class Template:
    """A prompt cut into text token ids and slots.

    An entity carries the space before it, as in prose ("<ENT0> can <ENT1> ."),
    unless its slot is glued to the text before it, as in code
    ("class <ENT0>(<ENT1>):", where the base follows "(" with no space): a
    byte-level BPE writes " Exception" and "Exception" as different tokens, and
    the model has only seen the second one after "(".
    """

    text: str
    pieces: list[Any]  # list[int] token ids of text, or an int slot index
    order: list[int]  # slot indices in order of appearance
    attached: dict[int, bool] = field(default_factory=dict)  # slot -> glued to the text before it

    def spacing(self) -> tuple[bool, ...]:
        """Which slots are glued, by slot index: templates that agree take the same entity ids."""
        return tuple(self.attached.get(s, False) for s in sorted(self.order))

    def after(self, slot: int) -> int | None:
        """The prompt's first token right after ``slot`` (None when another slot or the end follows)."""
        i = self.pieces.index(slot)
        nxt = self.pieces[i + 1] if i + 1 < len(self.pieces) else None
        return nxt[0] if isinstance(nxt, list) and nxt else None

    def encode(self, tokenizer, entities: Sequence[str]) -> list[list[int]]:
        """The ids of each entity as it stands in its slot of this prompt."""
        return [encode_entity(tokenizer, e, space=not self.attached.get(i, False)) for i, e in enumerate(entities)]

    def fill(self, ents: Sequence[Sequence[int | None]], blank: int) -> tuple[list[int], list[list[int]]]:
        """Token ids with ``ents[i]`` in slot i (None -> ``blank``) and each slot's positions."""
        ids: list[int] = []
        spans: list[list[int]] = [[] for _ in ents]
        for piece in self.pieces:
            if isinstance(piece, int):
                spans[piece] = list(range(len(ids), len(ids) + len(ents[piece])))
                ids.extend(blank if t is None else t for t in ents[piece])
            else:
                ids.extend(piece)
        return ids, spans


def encode_entity(tokenizer, entity: str, space: bool = True) -> list[int]:
    """An entity's ids as it stands after a space in a sentence (``space=False``: glued to what precedes it)."""
    return list(tokenizer.encode((" " if space else "") + entity.strip(), add_special_tokens=False))


def decode_entity(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()


def encode_template(tokenizer, prompt: str) -> Template:
    parts = [p for p in SLOT_SPLIT.split(prompt) if p != ""]
    pieces: list[Any] = []
    order: list[int] = []
    attached: dict[int, bool] = {}
    for i, part in enumerate(parts):
        match = re.fullmatch(r"<ENT(\d+)>", part)
        if match:
            slot = int(match.group(1))
            pieces.append(slot)
            order.append(slot)
            attached[slot] = i > 0 and not parts[i - 1][-1].isspace()
            continue
        before_slot = i + 1 < len(parts) and re.fullmatch(r"<ENT\d+>", parts[i + 1])
        text = part.rstrip() if before_slot else part
        if text.strip():
            pieces.append(list(tokenizer.encode(text, add_special_tokens=False)))
    return Template(prompt, pieces, order, attached)


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (BERT: [CLS] and [SEP])."""
    for probe in ("hello", "a", "x"):
        bare = list(tokenizer.encode(probe, add_special_tokens=False))
        full = list(tokenizer.encode(probe, add_special_tokens=True))
        for cut in range(len(full) - len(bare) + 1):
            if bare and full[cut:cut + len(bare)] == bare:
                return full[:cut], full[cut + len(bare):]
    return [], []


@dataclass
class Row:
    """One forward row: token ids and the (position, target) pairs read from it."""

    ids: list[int]
    reads: list[tuple[int, int | None]]  # (position of the predicted token, its id or None for the whole row)
    key: Any = None


@dataclass
class LanguageModel:
    """A masked or causal LM and its tokenizer, seen as "log-probs of tokens at positions".

    ``model`` is any module called as ``model(input_ids=..., attention_mask=...)``
    returning logits ``(B, L, V)`` (or an object with ``.logits``), so a
    hand-built table serves as well as a transformers model.
    """

    model: Any
    tokenizer: Any
    kind: str  # "masked" | "causal"
    batch_size: int = 64
    device: str = "cpu"
    forwards: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("masked", "causal"):
            raise LuminaryError(f"model kind {self.kind!r}: expected masked or causal")
        tok = self.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        if self.kind == "masked":
            if tok.mask_token_id is None:
                raise LuminaryError("the tokenizer has no mask token, which a masked LM needs")
            self.blank = tok.mask_token_id
            self.prefix, self.suffix = special_frame(tok)
        else:
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            if start is None:
                raise LuminaryError("the tokenizer has neither a BOS nor an EOS token to start a causal prompt")
            self.blank, self.prefix, self.suffix = self.pad_id, [start], []

    def row(self, ids: list[int], reads: list[tuple[int, int | None]], key: Any = None) -> Row:
        """Wrap prompt ids with the model's special tokens; positions shift with them."""
        off = len(self.prefix)
        return Row(self.prefix + ids + self.suffix, [(p + off, t) for p, t in reads], key)

    @torch.no_grad()
    def run(self, rows: list[Row], batch_size: int | None = None) -> list[list[Any]]:
        """For each row, each read: a float log-prob (target given) or the ``(V,)`` log-softmax."""
        size = batch_size or self.batch_size
        out: list[list[Any]] = [[] for _ in rows]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
        shift = 1 if self.kind == "causal" else 0  # a causal LM predicts token q at position q - 1
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            width = max(len(rows[i].ids) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, i in enumerate(chunk):
                ids[b, :len(rows[i].ids)] = torch.tensor(rows[i].ids)
                mask[b, :len(rows[i].ids)] = 1
            result = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            logits = getattr(result, "logits", result)  # (B, L, V)
            self.forwards += 1
            bs, ps, targets = [], [], []
            for b, i in enumerate(chunk):
                for pos, target in rows[i].reads:
                    bs.append(b), ps.append(pos - shift), targets.append(target)
            picked = torch.log_softmax(logits[torch.tensor(bs), torch.tensor(ps)].float(), dim=-1)  # (R, V)
            r = 0
            for b, i in enumerate(chunk):
                for _pos, target in rows[i].reads:
                    out[i].append(picked[r].cpu() if target is None else float(picked[r, target]))
                    r += 1
        return out


def scoring_rows(lm: LanguageModel, template: Template, ents: Sequence[Sequence[int]], key: Any,
                 boundary: bool = False) -> list[Row]:
    """The rows that give lp_1..lp_T of ``ents`` under ``template`` (left to right for a masked LM).

    ``boundary`` (causal LMs only): each entity's lps also hold that of the prompt token right
    after it, so that a causal LM can say the entity has ended ("class Bad(" is unlikely where
    "class BadZipFile(" was seen): without it a prefix of a name scores as well as the name.
    """
    ids, spans = template.fill(ents, lm.blank)
    positions = sorted(p for span in spans for p in span)
    if lm.kind == "causal":
        if boundary:
            positions += [spans[s][-1] + 1 for s in template.order if template.after(s) is not None]
        return [lm.row(ids, [(p, ids[p]) for p in positions], key)]
    rows = []
    for i, pos in enumerate(positions):
        later = set(positions[i:])
        masked = [lm.blank if p in later else t for p, t in enumerate(ids)]
        rows.append(lm.row(masked, [(pos, ids[pos])], key))
    return rows


def score_pairs(lm: LanguageModel, pairs: list[tuple[Template, Sequence[Sequence[int]]]],
                batch_size: int | None = None, boundary: bool = False) -> list[float]:
    """The score of each (template, entity ids) pair; all their rows share length-sorted batches."""
    rows = [row for k, (template, ents) in enumerate(pairs)
            for row in scoring_rows(lm, template, ents, k, boundary)]
    lps: list[list[float]] = [[] for _ in pairs]
    for row, values in zip(rows, lm.run(rows, batch_size)):
        lps[row.key].extend(values)
    return [tuple_score(lp, len(ents)) for lp, (_t, ents) in zip(lps, pairs)]
