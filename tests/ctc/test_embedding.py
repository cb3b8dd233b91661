"""E-alignment against an explicit cosine computation, layer choice, batching, idf and baseline."""

from __future__ import annotations

import math

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners import EmbeddingAligner, estimate_baseline, idf_weights

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on a mat in the sun."),
    ("Stocks fell sharply on Monday.", "On Monday, the market dropped; stocks fell by five percent."),
    ("unbelievably", "It was believable."),
    ("Paris is the capital of France.", "France's capital city is Paris, on the Seine."),
    ("A", "B"),
]


def explicit_scores(folder, layer: int, a: str, b: str, with_specials: bool = False) -> tuple[list[str], list[float]]:
    """Tokens of a (no [CLS]/[SEP]) and max_j cos(h_i, c_j) by hand, in float64."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def hidden(text):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            return model(**enc, output_hidden_states=True).hidden_states[layer][0].double(), enc["input_ids"][0]

    ha, ids = hidden(a)
    hb, _ = hidden(b)
    ha = ha[1:-1]
    hb = hb if with_specials else hb[1:-1]
    scores = []
    for i in range(ha.shape[0]):
        cos = [float(ha[i] @ hb[j] / (ha[i].norm() * hb[j].norm())) for j in range(hb.shape[0])]
        scores.append(max(cos))
    return [tok.decode([t]) for t in ids[1:-1].tolist()], scores


@pytest.mark.parametrize("layer", [1, 2])
def test_token_scores_are_the_greatest_cosine_with_the_context(tiny_bert, layer):
    aligner = EmbeddingAligner(tiny_bert, layer=layer, device="cpu")
    for alignment, (a, b) in zip(aligner.align([p[0] for p in PAIRS], [p[1] for p in PAIRS]), PAIRS):
        tokens, scores = explicit_scores(tiny_bert, layer, a, b)
        assert alignment.tokens == tokens
        assert alignment.scores == pytest.approx(scores, abs=1e-5)


def test_matching_the_context_specials_as_bert_score_does(tiny_bert):
    aligner = EmbeddingAligner(tiny_bert, layer=2, device="cpu", match_specials=True)
    a, b = PAIRS[1]
    _, scores = explicit_scores(tiny_bert, 2, a, b, with_specials=True)
    assert aligner.align([a], [b])[0].scores == pytest.approx(scores, abs=1e-5)


def test_a_pair_scores_the_same_alone_or_in_a_batch(tiny_bert):
    aligner = EmbeddingAligner(tiny_bert, device="cpu", max_tokens=64)  # several encoder batches
    batch = aligner.align([p[0] for p in PAIRS], [p[1] for p in PAIRS])
    for alignment, (a, b) in zip(batch, PAIRS):
        assert aligner.align([a], [b])[0].scores == pytest.approx(alignment.scores, abs=1e-6)


def test_empty_texts_score_zero(tiny_bert):
    aligner = EmbeddingAligner(tiny_bert, device="cpu")
    empty_input, empty_context = aligner.align(["", "some words"], ["a context", ""])
    assert empty_input.tokens == [] and empty_input.aggregate() == 0.0
    assert empty_context.scores == [0.0, 0.0]


def test_baseline_rescaling(tiny_bert):
    plain = EmbeddingAligner(tiny_bert, device="cpu").align([PAIRS[0][0]], [PAIRS[0][1]])[0].scores
    rescaled = EmbeddingAligner(tiny_bert, device="cpu", baseline=0.8).align([PAIRS[0][0]], [PAIRS[0][1]])[0].scores
    assert rescaled == pytest.approx([(s - 0.8) / (1 - 0.8) for s in plain], abs=1e-6)
    with pytest.raises(LuminaryError, match="below 1"):
        EmbeddingAligner(tiny_bert, baseline=1.0)


def test_baseline_of_identical_texts_is_one(tiny_bert):
    aligner = EmbeddingAligner(tiny_bert, device="cpu")
    assert estimate_baseline(aligner, ["same words here"] * 4, pairs=10) == pytest.approx(1.0, abs=1e-5)
    assert aligner.baseline is None
    with pytest.raises(LuminaryError, match="at least two"):
        estimate_baseline(aligner, ["only one", " "])


def test_idf_weights_follow_bert_score(tiny_bert):
    aligner = EmbeddingAligner(tiny_bert, device="cpu")
    tok = aligner.tokenizer
    idf = idf_weights(["cat dog", "cat bird", "cat cat"], tok)
    cat, dog, fish = (tok.convert_tokens_to_ids(w) for w in ("cat", "dog", "fish"))
    assert idf[cat] == pytest.approx(math.log(4 / 4))  # in all 3 texts (counted once in "cat cat")
    assert idf[dog] == pytest.approx(math.log(4 / 2))
    assert idf[fish] == pytest.approx(math.log(4))  # never seen
    aligner.idf = idf
    alignment = aligner.align(["cat dog"], ["a dog"])[0]
    assert alignment.weights == pytest.approx([0.0, math.log(2)])
    assert alignment.aggregate("mean") == pytest.approx(alignment.scores[1])


def test_bad_encoder_requests(tiny_bert, tmp_path):
    with pytest.raises(LuminaryError, match="model folder not found"):
        EmbeddingAligner(tmp_path / "missing")
    with pytest.raises(LuminaryError, match="layer must be between 0 and 2"):
        EmbeddingAligner(tiny_bert, layer=3)


def test_ctc_layer_presets_pick_the_papers_layer_from_the_config():
    """bert-base → 9, roberta-large → 17, roberta-large-mnli → 9 (ctc_score E-bert, E-roberta, E-roberta-mnli)."""
    from transformers import BertConfig, RobertaConfig

    from luminary.ctc.aligners import E_PRESETS, pick_layer

    bert_base = BertConfig(num_hidden_layers=12, hidden_size=768)
    roberta_large = RobertaConfig(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16)
    mnli = RobertaConfig(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                         id2label={0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})
    minilm = BertConfig(num_hidden_layers=6, hidden_size=384)
    assert {name: p.layer for name, p in E_PRESETS.items()} == {
        "bert-base": 9, "roberta-large": 17, "roberta-large-mnli": 9}
    assert [pick_layer(c) for c in (bert_base, roberta_large, mnli, minilm)] == [9, 17, 9, 6]  # else: the last
    assert pick_layer(roberta_large, preset="roberta-large-mnli") == 9  # any folder of the family
    assert pick_layer(bert_base, layer=12) == 12
    with pytest.raises(LuminaryError, match="preset roberta-large is for a roberta encoder with 24 layers"):
        pick_layer(bert_base, preset="roberta-large")
    with pytest.raises(LuminaryError, match="unknown E preset 'gpt2'"):
        pick_layer(bert_base, preset="gpt2")
    with pytest.raises(LuminaryError, match="not both"):
        pick_layer(bert_base, layer=3, preset="bert-base")


def test_the_aligner_takes_a_matching_presets_layer(tiny_bert, monkeypatch):
    from luminary.ctc.aligners import embedding

    tiny = embedding.EncoderPreset("bert", 2, 32, 1, False, "a test family", "bert-base-uncased")
    monkeypatch.setitem(embedding.E_PRESETS, "tiny", tiny)
    assert EmbeddingAligner(tiny_bert, device="cpu").layer == 1
    assert EmbeddingAligner(tiny_bert, device="cpu", preset="tiny").layer == 1
    assert EmbeddingAligner(tiny_bert, device="cpu", layer=2).layer == 2
    with pytest.raises(LuminaryError, match="preset bert-base is for a bert encoder with 12 layers"):
        EmbeddingAligner(tiny_bert, preset="bert-base")
