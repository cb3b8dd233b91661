"""D's word pooling (sum, as ctc_score; mean as an option), its text cleaning, pair encoding, R's score, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners import DiscriminativeAligner, RegressionAligner
from luminary.ctc.aligners.pairs import clean_text, encode_pairs, truncate_words, word_logits, word_mean
from luminary.ctc.aligners.trained import recorded_word_features

INPUT = "Unbelievably, the rapporteur's cat sat on Mat's mat."
CONTEXT = "A cat sat on a mat in the sun.\n\nIt was warm."


def test_word_mean_averages_each_words_tokens():
    values = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 9.0]]])
    word_index = torch.tensor([[-1, 0, 0, 1, -1]])
    out = word_mean(values, word_index, n_words=3)
    assert out.tolist() == [[[4.0, 3.0], [7.0, 6.0], [0.0, 0.0]]]


def by_hand(folder, words, context, pool):
    """softmax(head(pool of each word's last hidden states))[0], from the encoder's features, word by word."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    enc = tok(" ".join(words), context, return_tensors="pt")
    with torch.no_grad():
        features = model.bert(**enc).last_hidden_state[0]  # (T, H)
    expected, position = [], 1  # after [CLS]
    for word in words:
        n = len(tok(word, add_special_tokens=False)["input_ids"])  # this word's subwords
        span = features[position : position + n]
        pooled = span.sum(0) if pool == "sum" else span.mean(0)
        expected.append(torch.softmax(model.classifier(pooled), -1)[0].item())
        position += n
    assert tok.convert_ids_to_tokens([enc["input_ids"][0, position].item()]) == ["[SEP]"]
    return expected


def test_word_scores_are_the_head_applied_to_summed_subword_features(tiny_d):
    """ctc_score: P(not hallucinated) of each word = softmax(W · Σ of its subword features + b)[0], by hand."""
    aligner = DiscriminativeAligner(tiny_d, device="cpu", clean=False)
    assert aligner.word_features == "sum"  # a folder without a training record
    alignment = aligner.align([INPUT], [CONTEXT])[0]
    words = INPUT.split()
    assert alignment.tokens == words
    expected = by_hand(tiny_d, words, CONTEXT, "sum")
    assert alignment.scores == pytest.approx(expected, abs=1e-5)
    # 'Unbelievably,' has several subwords, so sum and mean differ there
    assert alignment.scores[0] != pytest.approx(by_hand(tiny_d, words, CONTEXT, "mean")[0], abs=1e-3)


def test_mean_word_features_stay_an_option(tiny_d):
    aligner = DiscriminativeAligner(tiny_d, device="cpu", clean=False, word_features="mean")
    alignment = aligner.align([INPUT], [CONTEXT])[0]
    assert alignment.scores == pytest.approx(by_hand(tiny_d, INPUT.split(), CONTEXT, "mean"), abs=1e-5)
    with pytest.raises(LuminaryError, match="word_features must be one of sum, mean"):
        DiscriminativeAligner(tiny_d, word_features="max")


def test_summed_word_logits_subtract_the_extra_biases():
    logits = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 9.0]]])
    word_index = torch.tensor([[-1, 0, 0, 1, -1]])
    bias = torch.tensor([0.5, -1.0])
    out = word_logits(logits, word_index, 3, "sum", bias)
    # word 0: two tokens, (3 + 5, 2 + 4) - 1 * b; word 1: one token; word 2: none, so W·0 + b = b
    assert out.tolist() == [[[7.5, 7.0], [7.0, 6.0], [0.5, -1.0]]]
    assert word_logits(logits, word_index, 3, "mean").tolist() == word_mean(logits, word_index, 3).tolist()


def test_the_folder_record_says_how_words_are_pooled(tiny_d, tmp_path):
    import shutil

    folder = tmp_path / "d"
    shutil.copytree(tiny_d, folder)
    (folder / "ctc_aligner.json").write_text(json.dumps({"kind": "D", "step": 3, "eval": {}}))
    assert recorded_word_features(folder) == "mean"  # trained before the choice existed: mean
    assert DiscriminativeAligner(folder, device="cpu").word_features == "mean"
    (folder / "ctc_aligner.json").write_text(json.dumps({"kind": "D", "word_features": "sum"}))
    assert DiscriminativeAligner(folder, device="cpu").word_features == "sum"
    assert DiscriminativeAligner(folder, device="cpu", word_features="mean").word_features == "mean"
    (folder / "ctc_aligner.json").write_text(json.dumps({"kind": "D", "word_features": "max"}))
    with pytest.raises(LuminaryError, match="word_features must be one of"):
        recorded_word_features(folder)


def test_clean_text_is_ctc_scores_text_clean():
    text = "  He said \u201cHI\u201d,  it\u2019s   \u2018Fine\u2019.\n\nNEXT  line \n"
    assert clean_text(text) == "he said \"hi\", it's 'fine'.\n\nnext line"
    assert clean_text("fact\n\n\nHistory") == "fact\n\n\nhistory"
    assert clean_text("Die Straße") == "die strasse"  # casefold, as cleantext does, not lower()


def test_d_cleans_input_and_context_by_default(tiny_d):
    raw_input, raw_context = "The Cat\u2019s  \u201cmat\u201d  sat.", "A \u201cCat\u201d sat\n\non  a MAT."
    cleaned = DiscriminativeAligner(tiny_d, device="cpu")
    plain = DiscriminativeAligner(tiny_d, device="cpu", clean=False)
    [got] = cleaned.align([raw_input], [raw_context])
    [want] = plain.align([clean_text(raw_input)], [clean_text(raw_context)])
    assert got.tokens == ["the", "cat's", '"mat"', "sat."] == want.tokens
    assert got.scores == pytest.approx(want.scores, abs=1e-6)
    [raw] = plain.align([raw_input], [raw_context])
    assert raw.tokens == raw_input.split() and raw.scores != pytest.approx(got.scores, abs=1e-4)


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
