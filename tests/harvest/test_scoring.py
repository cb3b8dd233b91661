"""The tuple score against a hand computation, for a masked and a causal LM."""

from __future__ import annotations

import pytest
import torch

from luminary.harvest.scoring import LanguageModel, encode_entity, encode_template, score_pairs, tuple_score
from tests.harvest.conftest import TableLM


def test_formula_by_hand():
    lps = [-1.0, -2.0, -0.5]  # three entity tokens, two entities
    by_hand = ((-3.5 / 3) + (-3.5 / 2) + (-2.0)) / 3
    assert tuple_score(lps, 2) == pytest.approx(by_hand)
    assert tuple_score([-0.3], 1) == pytest.approx(-0.3)


def lp(model, ids, pos, target, causal):
    logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return float(torch.log_softmax(logits[0, pos - 1 if causal else pos], -1)[target])


@pytest.mark.parametrize("causal", [False, True])
def test_left_to_right_masking_by_hand(words_tokenizer, causal):
    tok = words_tokenizer
    model = TableLM(len(tok), causal=causal, seed=5)
    lm = LanguageModel(model, tok, "causal" if causal else "masked", batch_size=3)
    # the slots appear in the order ENT1, ENT0: left to right means ENT1's token first
    template = encode_template(tok, "<ENT1> lives near <ENT0> .")
    a, b, c = tok.convert_tokens_to_ids(["alpha", "bravo", "charlie"])
    lives, near, dot, m, bos = tok.convert_tokens_to_ids(["lives", "near", ".", "[MASK]", "[BOS]"])
    ents = [encode_entity(tok, "alpha bravo"), encode_entity(tok, "charlie")]
    assert ents == [[a, b], [c]]
    if causal:
        ids = [bos, c, lives, near, a, b, dot]
        lps = [lp(model, ids, 1, c, True), lp(model, ids, 4, a, True), lp(model, ids, 5, b, True)]
    else:
        lps = [lp(model, [m, lives, near, m, m, dot], 0, c, False),
               lp(model, [c, lives, near, m, m, dot], 3, a, False),
               lp(model, [c, lives, near, a, m, dot], 4, b, False)]
    expected = tuple_score(lps, 2)
    other = [encode_entity(tok, "delta"), encode_entity(tok, "echo foxtrot")]
    scores = score_pairs(lm, [(template, ents), (template, other), (template, ents)])
    assert scores[0] == pytest.approx(expected, abs=1e-5)
    assert scores[2] == pytest.approx(expected, abs=1e-5)
    one_by_one = [score_pairs(lm, [(template, e)], batch_size=1)[0] for e in (ents, other)]
    assert one_by_one == pytest.approx(scores[:2], abs=1e-5)  # batching and padding change nothing


def test_a_seed_the_tokenizer_cannot_represent(words_tokenizer):
    from luminary.core.errors import LuminaryError
    from luminary.harvest.relations import Relation
    from luminary.harvest.run import check_seeds

    lm = LanguageModel(TableLM(len(words_tokenizer)), words_tokenizer, "masked")
    relation = Relation(name="r", prompt="<ENT0> near <ENT1>", seeds=[["alpha", "bravo"], ["charlie", "zulu"]])
    with pytest.raises(LuminaryError, match="'zulu' has characters"):
        check_seeds(lm, relation, 2)
    long = Relation(name="r", prompt="<ENT0> near <ENT1>", seeds=[["alpha", "bravo charlie delta"], ["echo", "golf"]])
    with pytest.raises(LuminaryError, match="3 tokens"):
        check_seeds(lm, long, 2)
    check_seeds(lm, long, 3)


def test_wordpiece_frame_and_continuations():
    from transformers import BertTokenizerFast

    from luminary.harvest.scoring import decode_entity, special_frame
    from luminary.harvest.search import allowed_tokens

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "the", "kids", "."]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert special_frame(tok) == ([2], [3])
    ids = encode_entity(tok, "playing")
    assert ids == [5, 6] and decode_entity(tok, ids) == "playing"
    allowed = allowed_tokens(tok, len(tok))
    assert [vocab[i] for i in range(len(vocab)) if allowed[i]] == ["play", "##ing", "kids"]
