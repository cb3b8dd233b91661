"""Search the LM for the entity tuples that fill the weighted prompts best (specs/bertnet.md step 4).

Entities are 1..K subword tokens (K = 2 by default) and every length pattern
is enumerated. Tokens are chosen slot by slot in ``order`` (the order of the
slots in the best prompt), token by token. At each step the next token's
score is the weighted average over prompts of the log-softmax at its mask
(earlier tokens filled, later ones masked); special tokens, stopwords and
tokens an entity may not hold are banned. A partial tuple is ranked by the
minimum of its token scores, ties by their sum; both can only fall as it grows.

* ``dfs`` (BertNet ``master``): depth first, candidates in descending score;
  once the size-n heap of complete tuples is full, a branch whose minimum
  falls below the heap's worst is cut. Exact: it returns the n best tuples by
  (minimum, sum), as a brute-force enumeration would.
* ``beam`` (BertNet ``demo``): per length pattern, a beam of max(128, 2n)
  partial tuples per step, all prompts and beam entries in one batch.

A causal LM sees only its left context, so it searches with the prompts whose
slots appear in ``order`` (their weights renormalised). With ``boundary`` (causal
LMs), an entity's last token is followed by a forced step that scores the
prompt's next token (Σ_p w_p · log p(token after the slot)), as the rescoring
does (:func:`luminary.harvest.scoring.scoring_rows`): a name's prefix is cut
there instead of crowding out the names. It is one more log-prob ≤ 0 in the
minimum and the sum, so the DFS stays exact.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.harvest.filters import entity_ok, pair_ok, token_allowed
from luminary.harvest.scoring import LanguageModel, Template, decode_entity

MAX_ENT_TOKENS = 2
END = -1  # the token index of a boundary step, and the placeholder it leaves in a prefix


@dataclass
class SearchStats:
    nodes_visited: int = 0  # partial tuples expanded (one weighted next-token distribution each)
    complete: int = 0  # complete valid tuples reached


@dataclass
class SearchSpace:
    """What the search runs over: the LM, weighted templates, slot order, allowed tokens, banned words."""

    lm: LanguageModel
    templates: list[Template]
    weights: list[float]
    n_ents: int
    order: list[int]
    allowed: torch.Tensor  # (V,) bool
    banned_words: set[str] = field(default_factory=set)
    max_ent_tokens: int = MAX_ENT_TOKENS
    boundary: bool = False  # causal LMs: score the prompt's token after each entity

    def patterns(self) -> list[tuple[int, ...]]:
        return list(itertools.product(range(1, self.max_ent_tokens + 1), repeat=self.n_ents))

    def steps(self, pattern: Sequence[int]) -> list[tuple[int, int]]:
        """(slot, token index) of each step, in search order; (slot, END) is a boundary step."""
        out = []
        for slot in self.order:
            out += [(slot, j) for j in range(pattern[slot])]
            if self.boundary and any(t.after(slot) is not None for t in self.templates):
                out.append((slot, END))
        return out

    def partial(self, pattern: Sequence[int], filled: Sequence[int]) -> list[list[int | None]]:
        ents: list[list[int | None]] = [[None] * pattern[s] for s in range(self.n_ents)]
        for (slot, j), token in zip(self.steps(pattern), filled):
            if j != END:
                ents[slot][j] = token
        return ents

    def next_scores(self, pattern: Sequence[int], prefixes: list[Sequence[int]]) -> torch.Tensor:
        """(len(prefixes), V): Σ_p w_p · log-softmax at the next mask of each prefix, banned tokens -inf."""
        rows = []
        for k, filled in enumerate(prefixes):
            slot, j = self.steps(pattern)[len(filled)]
            ents = self.partial(pattern, filled)
            for template in self.templates:
                ids, spans = template.fill(ents, self.lm.blank)
                rows.append(self.lm.row(ids, [(spans[slot][j], None)], k))
        out = self.lm.run(rows)
        size = self.allowed.numel()
        scores = torch.zeros((len(prefixes), size))
        for r, row in enumerate(rows):
            scores[row.key] += self.weights[r % len(self.templates)] * out[r][0][:size]
        return scores.masked_fill(~self.allowed, float("-inf"))

    def end_scores(self, pattern: Sequence[int], prefixes: list[Sequence[int]]) -> list[float]:
        """Per prefix (its next step a boundary step): Σ_p w_p · log p(the prompt's token after the slot)."""
        rows, owners = [], []
        for k, filled in enumerate(prefixes):
            slot, _end = self.steps(pattern)[len(filled)]
            ents = self.partial(pattern, filled)
            for template, weight in zip(self.templates, self.weights):
                token = template.after(slot)
                if token is not None:
                    ids, spans = template.fill(ents, self.lm.blank)
                    rows.append(self.lm.row(ids, [(spans[slot][-1] + 1, token)], k))
                    owners.append(weight)
        scores = [0.0] * len(prefixes)
        for row, weight, out in zip(rows, owners, self.lm.run(rows)):
            scores[row.key] += weight * out[0]
        return scores

    def entity_done(self, pattern: Sequence[int], filled: Sequence[int]) -> bool:
        """Whether the last token of ``filled`` completes an entity that passes the filters."""
        slot, j = self.steps(pattern)[len(filled) - 1]
        if j + 1 < pattern[slot]:
            return True
        ents = self.partial(pattern, filled)
        text = decode_entity(self.lm.tokenizer, ents[slot])
        done = [s for s in self.order[: self.order.index(slot)]]
        others = [decode_entity(self.lm.tokenizer, ents[s]) for s in done]
        return entity_ok(text, self.banned_words) and pair_ok(text, others)

    def result(self, pattern: Sequence[int], filled: Sequence[int]) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(e) for e in self.partial(pattern, filled))


def allowed_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """(V,) True for a token that may be part of an entity: not special, no punctuation, not a stopword."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    special = set(tokenizer.all_special_ids)
    for i in range(min(vocab_size, len(tokenizer))):
        if i not in special:
            text = tokenizer.decode([i], clean_up_tokenization_spaces=False)
            allowed[i] = token_allowed(text.removeprefix("##"))  # a WordPiece continuation joins the word
    return allowed


Found = list[tuple[float, float, tuple[tuple[int, ...], ...]]]  # (min, sum of token scores, entity ids), best first


def dfs(space: SearchSpace, n: int, stats: SearchStats | None = None) -> Found:
    """Depth-first search with the heap cut; the n best tuples by (minimum, then sum) of token scores.

    Exact: a token score is ≤ 0, so extending a branch never raises its minimum nor its sum;
    a branch at or below the heap's worst (when the heap is full) cannot enter it, and nor can
    its siblings that come later (visited in descending score).
    """
    stats = stats or SearchStats()
    heap: list[tuple[float, float, int, tuple]] = []  # min-heap of (min, sum, tie, entity ids)
    tie = itertools.count()

    def visit(pattern: tuple[int, ...], filled: list[int], low: float, total: float) -> None:
        stats.nodes_visited += 1
        last = len(filled) + 1 == len(space.steps(pattern))
        if space.steps(pattern)[len(filled)][1] == END:  # forced: the one way on is the prompt's token
            value = space.end_scores(pattern, [filled])[0]
            key = (min(low, value), total + value)
            if len(heap) == n and key <= heap[0][:2]:
                return
            if last:
                stats.complete += 1
                item = (*key, next(tie), space.result(pattern, filled + [END]))
                heapq.heappush(heap, item) if len(heap) < n else heapq.heapreplace(heap, item)
            else:
                visit(pattern, filled + [END], *key)
            return
        scores = space.next_scores(pattern, [filled])[0]
        finite = int(torch.isfinite(scores).sum())
        values, tokens = torch.sort(scores, descending=True)
        for value, token in zip(values[:finite].tolist(), tokens[:finite].tolist()):
            key = (min(low, value), total + value)
            if len(heap) == n and key <= heap[0][:2]:
                break  # sorted: every later candidate is lower still
            new = filled + [token]
            if not space.entity_done(pattern, new):
                continue
            if last:
                stats.complete += 1
                item = (*key, next(tie), space.result(pattern, new))
                heapq.heappush(heap, item) if len(heap) < n else heapq.heapreplace(heap, item)
            else:
                visit(pattern, new, *key)

    for pattern in space.patterns():
        visit(pattern, [], 0.0, 0.0)
    return [(low, total, ents) for low, total, _t, ents in sorted(heap, key=lambda x: (-x[0], -x[1], x[2]))]


def beam(space: SearchSpace, n: int, width: int | None = None, stats: SearchStats | None = None) -> Found:
    """Beam search per length pattern, beam max(128, 2n) (BertNet ``demo``), ranked like :func:`dfs`."""
    stats = stats or SearchStats()
    width = width or max(128, 2 * n)
    found: Found = []
    for pattern in space.patterns():
        states: list[tuple[float, float, list[int]]] = [(0.0, 0.0, [])]
        for _slot, j in space.steps(pattern):
            stats.nodes_visited += len(states)
            if j == END:  # forced step: every state takes the prompt's token; re-rank, no branching
                ends = space.end_scores(pattern, [f for _l, _t, f in states])
                states = sorted(((min(l, e), t + e, f + [END]) for (l, t, f), e in zip(states, ends)),
                                key=lambda s: (-s[0], -s[1]))
                continue
            scores = space.next_scores(pattern, [f for _l, _t, f in states])  # (S, V)
            lows = torch.minimum(scores, torch.tensor([l for l, _t, _f in states]).unsqueeze(1)).flatten()
            totals = (scores + torch.tensor([t for _l, t, _f in states]).unsqueeze(1)).flatten()
            by_total = torch.sort(totals, descending=True, stable=True).indices
            order = by_total[torch.sort(lows[by_total], descending=True, stable=True).indices]
            nxt: list[tuple[float, float, list[int]]] = []
            for index in order.tolist():
                if lows[index] == float("-inf") or len(nxt) == width:
                    break
                k, token = divmod(index, scores.shape[1])
                new = states[k][2] + [token]
                if space.entity_done(pattern, new):
                    nxt.append((float(lows[index]), float(totals[index]), new))
            states = nxt
        stats.complete += len(states)
        found.extend((low, total, space.result(pattern, f)) for low, total, f in states)
    found.sort(key=lambda x: (-x[0], -x[1]))
    return found[:n]


SEARCHES = {"dfs": dfs, "beam": beam}


def run_search(kind: str, space: SearchSpace, n: int, stats: SearchStats | None = None) -> Found:
    if kind not in SEARCHES:
        raise LuminaryError(f"search {kind!r}: expected one of {', '.join(SEARCHES)}")
    return SEARCHES[kind](space, n, stats=stats)
