"""D's word aggregation and pair encoding, R's single score, and refusing an untrained folder."""

from __future__ import annotations

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners import DiscriminativeAligner, RegressionAligner
from luminary.ctc.aligners.pairs import encode_pairs, truncate_words, word_mean

INPUT = "Unbelievably, the rapporteur's cat sat on Mat's mat."
CONTEXT = "A cat sat on a mat in the sun.\n\nIt was warm."


def test_word_mean_averages_each_words_tokens():
    values = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 9.0]]])
    word_index = torch.tensor([[-1, 0, 0, 1, -1]])
    out = word_mean(values, word_index, n_words=3)
    assert out.tolist() == [[[4.0, 3.0], [7.0, 6.0], [0.0, 0.0]]]


def test_word_scores_are_the_head_applied_to_mean_subword_features(tiny_d):
    """P(not hallucinated) of each word = softmax(W · mean of its subword features + b)[0], by hand."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    aligner = DiscriminativeAligner(tiny_d, device="cpu")
    alignment = aligner.align([INPUT], [CONTEXT])[0]
    words = INPUT.split()
    assert alignment.tokens == words

    tok = AutoTokenizer.from_pretrained(tiny_d)
    model = AutoModelForTokenClassification.from_pretrained(tiny_d).eval()
    enc = tok(" ".join(words), CONTEXT, return_tensors="pt")
    with torch.no_grad():
        features = model.bert(**enc).last_hidden_state[0]  # (T, H)
    expected, position = [], 1  # after [CLS]
    for word in words:
        n = len(tok(word, add_special_tokens=False)["input_ids"])  # this word's subwords
        mean = features[position : position + n].mean(0)
        expected.append(torch.softmax(model.classifier(mean), -1)[0].item())
        position += n
    assert tok.convert_ids_to_tokens([enc["input_ids"][0, position].item()]) == ["[SEP]"]
    assert alignment.scores == pytest.approx(expected, abs=1e-5)


def test_batched_scores_equal_single_scores(tiny_d):
    aligner = DiscriminativeAligner(tiny_d, device="cpu", max_tokens=40)
    inputs = [INPUT, "short one", "another input text with more words than that"]
    contexts = [CONTEXT, "ctx", CONTEXT * 3]
    batch = aligner.align(inputs, contexts)
    for alignment, a, c in zip(batch, inputs, contexts):
        assert aligner.align([a], [c])[0].scores == pytest.approx(alignment.scores, abs=1e-5)


def test_only_the_context_is_truncated_and_the_input_keeps_whole_words(tiny_d):
    tok = DiscriminativeAligner(tiny_d, device="cpu").tokenizer
    words = INPUT.split()
    [pair] = encode_pairs(tok, [INPUT], [CONTEXT * 200], max_length=64)
    assert len(pair["input_ids"]) == 64 and pair["words"] == words
    assert sorted(set(pair["word_index"]) - {-1}) == list(range(len(words)))
    # 'Unbelievably,' is several subwords: a limit inside it keeps no word, one after it keeps it
    n_first = len(tok(words[0], add_special_tokens=False)["input_ids"])
    assert n_first > 1
    assert truncate_words(tok, words, n_first - 1) == []
    assert truncate_words(tok, words, n_first) == words[:1]
    [short] = encode_pairs(tok, [INPUT], [CONTEXT], max_input_tokens=n_first + 1)
    assert short["words"] == words[:2]  # "the" is one token


def test_regression_aligner_gives_one_score_of_context_then_input(tiny_r):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    aligner = RegressionAligner(tiny_r, device="cpu")
    [alignment] = aligner.align([INPUT], [CONTEXT])
    assert alignment.tokens is None
    tok = AutoTokenizer.from_pretrained(tiny_r)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_r).eval()
    with torch.no_grad():
        expected = model(**tok(CONTEXT, INPUT, return_tensors="pt")).logits[0, 0].item()
    assert alignment.aggregate() == pytest.approx(expected, abs=1e-5)


def test_an_encoder_without_a_trained_head_is_refused(tiny_bert, tiny_r):
    with pytest.raises(LuminaryError, match="not a trained D aligner"):
        DiscriminativeAligner(tiny_bert)
    with pytest.raises(LuminaryError, match="not a trained D aligner"):
        DiscriminativeAligner(tiny_r)
