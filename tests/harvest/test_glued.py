"""Slots glued to the text before them ("class <ENT0>(<ENT1>):"), the causal end-of-entity read
(``boundary``) and the case variants of the rescoring, each against a hand computation."""

from __future__ import annotations

import itertools

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from luminary.core.errors import LuminaryError
from luminary.harvest.filters import prompt_words, tuple_ok
from luminary.harvest.relations import Relation
from luminary.harvest.run import case_variants, check_seeds, rescore
from luminary.harvest.scoring import LanguageModel, encode_entity, encode_template, score_pairs, tuple_score
from luminary.harvest.search import SearchSpace, SearchStats, allowed_tokens, beam, dfs
from tests.harvest.conftest import WORDS, TableLM, word_tokenizer


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level word tokenizer: " alpha" (Ġalpha) and "alpha" are different tokens, as in a GPT-2 BPE;
    "charlie" is known only after a space, "delta" only glued."""
    words = ["Ġalpha", "alpha", "Ġbravo", "bravo", "Ġcharlie", "delta", "Alpha", "ĠBravo", "Ġecho"]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[MASK]", "[BOS]", "[UNK]", "class", "(", "):", "Ġis"] + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]",
                                   bos_token="[BOS]", unk_token="[UNK]")


def test_a_glued_slot_takes_its_entity_without_the_space():
    tok = byte_level_tokenizer()
    ids = tok.convert_tokens_to_ids
    template = encode_template(tok, "class <ENT0>(<ENT1>):")
    assert template.attached == {0: False, 1: True} and template.spacing() == (False, True)
    assert template.pieces == [[ids("class")], 0, [ids("(")], 1, [ids("):")]]
    assert template.encode(tok, ["alpha", "bravo"]) == [[ids("Ġalpha")], [ids("bravo")]]
    assert encode_entity(tok, "bravo", space=False) != encode_entity(tok, "bravo")
    assert (template.after(0), template.after(1)) == (ids("("), ids("):"))
    prose = encode_template(tok, "<ENT0> is <ENT1>")
    assert prose.spacing() == (False, False) and prose.after(0) == ids("Ġis") and prose.after(1) is None


def test_check_seeds_reads_each_slot_as_its_prompts_write_it():
    tok = byte_level_tokenizer()
    lm = LanguageModel(TableLM(len(tok)), tok, "causal")
    # slot 0 only ever follows a space ("Ġcharlie" is known), slot 1 is only ever glued ("delta" is known)
    code = "class <ENT0>(<ENT1>):"
    check_seeds(lm, Relation(name="r", prompt=code, seeds=[["charlie", "delta"], ["alpha", "bravo"]]), 1)
    with pytest.raises(LuminaryError, match="'delta' has characters"):  # " delta" is unknown
        check_seeds(lm, Relation(name="r", prompt=code, seeds=[["delta", "bravo"], ["alpha", "bravo"]]), 1)
    with pytest.raises(LuminaryError, match="'charlie' has characters"):  # a paraphrase glues slot 0 too
        check_seeds(lm, Relation(name="r", prompt=code, prompts=["(<ENT0> is <ENT1>"],
                                 seeds=[["charlie", "delta"], ["alpha", "bravo"]]), 1)


@pytest.mark.parametrize("boundary", [False, True])
def test_the_boundary_adds_the_prompt_token_after_each_entity(boundary):
    tok = byte_level_tokenizer()
    ids = tok.convert_tokens_to_ids
    model = TableLM(len(tok), causal=True, seed=4)
    lm = LanguageModel(model, tok, "causal")
    template = encode_template(tok, "class <ENT0>(<ENT1>):")
    row = [ids("[BOS]"), ids("class"), ids("Ġalpha"), ids("Ġecho"), ids("("), ids("bravo"), ids("):")]
    logits = model(input_ids=torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long))
    lp = torch.log_softmax(logits[0], -1)
    reads = [2, 3, 5] + ([4, 6] if boundary else [])  # the entities' tokens (and "(" and "):" after them)
    expected = tuple_score([float(lp[q - 1, row[q]]) for q in reads], 2)
    got = score_pairs(lm, [(template, template.encode(tok, ["alpha echo", "bravo"]))], boundary=boundary)[0]
    assert got == pytest.approx(expected, abs=1e-5)
    masked = LanguageModel(TableLM(len(tok), seed=4), tok, "masked")
    pair = [(template, template.encode(tok, ["alpha echo", "bravo"]))]
    assert score_pairs(masked, pair, boundary=True) == score_pairs(masked, pair)  # a masked LM reads no boundary


SEARCH_GLUE = ["lives", "near", "close", "by", "the", ".", ","]
PROMPTS = ["<ENT0> lives near <ENT1> .", "<ENT0> close by <ENT1> ."]
WEIGHTS = [0.7, 0.3]


def brute_force_with_boundary(model, tok, n, k=2):
    """Every tuple of 1..k allowed tokens per entity, scored on the whole filled prompts (a causal LM's
    log-prob at a position depends only on what precedes it): the steps are ENT0's tokens, the token
    after ENT0, ENT1's tokens, the token after ENT1, each the weighted sum over the prompts."""
    content = tok.convert_tokens_to_ids(WORDS + ["lives", "near", "close"])
    templates = [encode_template(tok, p) for p in PROMPTS]
    banned = prompt_words(PROMPTS)
    results = []
    for p0, p1 in itertools.product(range(1, k + 1), repeat=2):
        tuples = [(toks[:p0], toks[p0:]) for toks in itertools.product(content, repeat=p0 + p1)
                  if tuple_ok([tok.decode(list(toks[:p0])), tok.decode(list(toks[p0:]))], banned)]
        steps = torch.zeros(len(tuples), p0 + p1 + 2)
        for w, t in zip(WEIGHTS, templates):  # one forward per prompt and length pattern, every tuple in it
            rows, spans = [], None
            for e0, e1 in tuples:
                filled, spans = t.fill([list(e0), list(e1)], tok.pad_token_id)
                rows.append([tok.bos_token_id] + filled)
            ids = torch.tensor(rows)  # (N, L)
            lp = torch.log_softmax(model(input_ids=ids, attention_mask=torch.ones_like(ids)), -1)  # (N, L, V)
            reads = torch.tensor([q + 1 for q in spans[0]] + [spans[0][-1] + 2]
                                 + [q + 1 for q in spans[1]] + [spans[1][-1] + 2])
            steps += w * lp[:, reads - 1].gather(-1, ids[:, reads].unsqueeze(-1)).squeeze(-1)
        results += [(min(s), sum(s), (tuple(e0), tuple(e1))) for s, (e0, e1) in zip(steps.tolist(), tuples)]
    results.sort(key=lambda x: (-x[0], -x[1]))
    return results[:n]


def test_dfs_with_the_boundary_is_still_exact():
    tok = word_tokenizer(glue=SEARCH_GLUE)
    model = TableLM(len(tok), causal=True, seed=3)
    n = 12
    every = brute_force_with_boundary(model, tok, 10 ** 6)
    assert len(every) > 1000 and {len(e) for *_v, ents in every[:n] for e in ents} == {1, 2}
    expected = every[:n]
    lm = LanguageModel(model, tok, "causal", batch_size=16)
    space = SearchSpace(lm, [encode_template(tok, p) for p in PROMPTS], WEIGHTS, 2, [0, 1],
                        allowed_tokens(tok, len(tok)), prompt_words(PROMPTS), 2, boundary=True)
    assert [j for _s, j in space.steps((2, 1))] == [0, 1, -1, 0, -1]  # a forced step after each entity
    stats = SearchStats()
    found = dfs(space, n, stats)
    assert [ents for *_v, ents in found] == [ents for *_v, ents in expected]
    assert [x for v in found for x in v[:2]] == pytest.approx([x for v in expected for x in v[:2]], abs=1e-4)
    # the boundary changes the ranking: without it the search returns other tuples
    plain = SearchSpace(lm, space.templates, WEIGHTS, 2, [0, 1], space.allowed, space.banned_words, 2)
    assert [e for *_v, e in dfs(plain, n)] != [e for *_v, e in found]
    # the beam takes the forced steps too (every state kept through them, re-ranked), scored the same way
    by_tuple = {ents: (low, total) for low, total, ents in every}
    for low, total, ents in beam(space, n):
        assert (low, total) == pytest.approx(by_tuple[ents], abs=1e-4)


def test_case_variants_are_every_combination_as_found_first():
    assert case_variants(["abc", "Def"]) == [("abc", "Def"), ("Abc", "Def")]
    assert case_variants(["x y", "z"]) == [("x y", "z"), ("x y", "Z"), ("X Y", "z"), ("X Y", "Z")]
    assert case_variants(["Alpha"]) == [("Alpha",)]  # already title case: one variant


def test_rescore_keeps_the_best_case_variant():
    tok = byte_level_tokenizer()
    model = TableLM(len(tok), seed=7)
    lm = LanguageModel(model, tok, "masked")
    templates = [encode_template(tok, "class <ENT0>(<ENT1>):"), encode_template(tok, "<ENT0> is <ENT1>")]
    weights = [0.6, 0.4]

    def final(ents):
        scores = score_pairs(lm, [(t, t.encode(tok, ents)) for t in templates])
        return sum(w * s for w, s in zip(weights, scores))

    found = [("bravo", "alpha")]
    by_hand = {v: final(v) for v in case_variants(found[0])}  # " Bravo" and glued "Alpha" are tokens too
    assert len(by_hand) == 4 and len(set(by_hand.values())) == 4
    best = max(by_hand, key=by_hand.get)
    assert rescore(lm, templates, weights, found) == pytest.approx({best: by_hand[best]})
    assert rescore(lm, templates, weights, found, variants=False) == pytest.approx({found[0]: by_hand[found[0]]})
    flat = LanguageModel(lambda input_ids, attention_mask: torch.zeros(*input_ids.shape, len(tok)), tok, "masked")
    assert list(rescore(flat, templates, weights, found)) == found  # a tie keeps the tuple as found
