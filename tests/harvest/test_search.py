"""DFS and beam search against a brute-force enumeration on a hand-built LM with a known distribution."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from luminary.harvest.filters import prompt_words, tuple_ok
from luminary.harvest.scoring import LanguageModel, encode_template
from luminary.harvest.search import SearchSpace, SearchStats, allowed_tokens, beam, dfs
from tests.harvest.conftest import WORDS, TableLM, word_tokenizer

SEARCH_GLUE = ["lives", "near", "close", "by", "the", ".", ","]

PROMPTS = ["<ENT0> lives near <ENT1> .", "<ENT0> close by <ENT1> ."]
WEIGHTS = [0.7, 0.3]


def brute_force(model, tok, n, causal, k=2):
    """Every tuple of 1..k allowed tokens per entity, its per-token weighted log-probs computed by hand.

    The distribution at a step depends only on the tokens before it, so it is cached per prefix;
    every complete tuple is still enumerated and scored.
    """
    content = tok.convert_tokens_to_ids(WORDS + ["lives", "near", "close"])
    glue = [tok.convert_tokens_to_ids(p.split()[1:-2]) for p in PROMPTS]
    dot, bos, mask = tok.convert_tokens_to_ids("."), tok.bos_token_id, tok.mask_token_id
    banned = prompt_words(PROMPTS)

    @functools.lru_cache(maxsize=None)
    def step_lp(p0, p1, prefix):
        step, lp = len(prefix), torch.zeros(len(tok))
        for w, g in zip(WEIGHTS, glue):
            filled = list(prefix) + [mask] * (p0 + p1 - step)
            ids = filled[:p0] + g + filled[p0:] + [dot]
            pos = step if step < p0 else step + len(g)
            if causal:  # only the left context matters; the rest is padding
                ids, pos = [bos] + [t if t != mask else tok.pad_token_id for t in ids], pos + 1
            logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            lp += w * torch.log_softmax(logits[0, pos - 1 if causal else pos], -1)
        return lp

    results = []
    for p0, p1 in itertools.product(range(1, k + 1), repeat=2):
        for toks in itertools.product(content, repeat=p0 + p1):
            e0, e1 = toks[:p0], toks[p0:]
            if not tuple_ok([tok.decode(list(e0)), tok.decode(list(e1))], banned):
                continue
            lps = [float(step_lp(p0, p1, toks[:s])[toks[s]]) for s in range(p0 + p1)]
            results.append((min(lps), sum(lps), (tuple(e0), tuple(e1))))
    results.sort(key=lambda x: (-x[0], -x[1]))
    return results[:n], len(results)


def space_for(model, tok, causal):
    lm = LanguageModel(model, tok, "causal" if causal else "masked", batch_size=16)
    templates = [encode_template(tok, p) for p in PROMPTS]
    return SearchSpace(lm, templates, WEIGHTS, 2, [0, 1], allowed_tokens(tok, len(tok)), prompt_words(PROMPTS), 2)


@pytest.mark.parametrize("causal", [False, True])
def test_dfs_and_beam_return_the_brute_force_top_n(causal):
    tok = word_tokenizer(glue=SEARCH_GLUE)
    model = TableLM(len(tok), causal=causal, seed=3)
    n = 12
    expected, total = brute_force(model, tok, n, causal)
    assert total > 1000  # multi-token entities of every length pattern were enumerated
    assert {len(e) for *_v, ents in expected for e in ents} == {1, 2}
    stats = SearchStats()
    space = space_for(model, tok, causal)
    for found in (dfs(space, n, stats), beam(space, n)):
        assert [ents for *_v, ents in found] == [ents for *_v, ents in expected]
        assert [x for v in found for x in v[:2]] == pytest.approx([x for v in expected for x in v[:2]], abs=1e-4)
    assert stats.nodes_visited < total / 10  # the heap cut prunes most of the tree


def test_banned_tokens_never_appear():
    tok = word_tokenizer(glue=SEARCH_GLUE)
    allowed = allowed_tokens(tok, len(tok))
    names = [tok.convert_ids_to_tokens(i) for i in range(len(tok)) if allowed[i]]
    assert set(names) == set(WORDS) | {"lives", "near", "close"}
    found = dfs(space_for(TableLM(len(tok), seed=1), tok, False), 30)
    words = {tok.decode(list(e)) for *_v, ents in found for e in ents}
    assert not words & {"lives", "near", "close", "by", "the", ".", ","}
