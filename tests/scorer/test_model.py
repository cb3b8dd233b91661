"""The scorer model: Cappy's format loads and scores exactly as transformers computes."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from luminary.core.errors import LuminaryError
from luminary.scorer import Scorer, score_pairs

PAIRS = [
    ("Write a one-line docstring for this function.\n\ndef add(a, b):\n    return a + b", "Add two numbers."),
    ("Does this function return a value?", "yes"),
    ("List the parameters of this function.\n\ndef f(path, mode='r', *args, **kwargs):\n    pass", "path, mode"),
    ("Name the module.", "os.path is where join lives, together with many other helpers " * 3),
]


def direct_scores(folder, pairs):
    """What the transformers user does with btan2/cappy-large: one pair at a time, logits[0][0]."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for instruction, response in pairs:
            inputs = tokenizer([(instruction, response)], return_tensors="pt", truncation=True, max_length=128)
            out.append(model(**inputs).logits[0][0].item())
    return out


def test_cappy_format_score_equals_transformers(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    assert type(scorer.model).__name__ == "RobertaForSequenceClassification"
    assert scorer.max_length == 128  # 130 positions, two reserved by RoBERTa's padding offset
    ours = score_pairs(scorer, [p[0] for p in PAIRS], [p[1] for p in PAIRS], batch_size=3)
    expected = direct_scores(cappy_dir, PAIRS)
    assert len({round(s, 6) for s in expected}) == len(expected)  # distinct pairs, distinct scores
    assert ours == pytest.approx(expected, abs=1e-5)


def test_dynamic_padding_equals_max_length_padding(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir)
    ins, res = [p[0] for p in PAIRS] * 3, [p[1] for p in PAIRS] * 3
    dynamic = score_pairs(scorer, ins, res, batch_size=4)
    padded = score_pairs(scorer, ins, res, batch_size=4, pad_to_max_length=True)
    unsorted = score_pairs(scorer, ins, res, batch_size=4, sort_by_length=False)
    assert dynamic == pytest.approx(padded, abs=1e-5)
    assert unsorted == pytest.approx(padded, abs=1e-5)


def test_pickle_weights_only_with_allow_pickle(tmp_path, make_roberta_scorer):
    folder = make_roberta_scorer(tmp_path / "bin", seed=3)
    expected = direct_scores(folder, PAIRS[:2])
    state = AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(LuminaryError, match="pickle weights are refused"):
        Scorer.from_pretrained(folder)
    scorer = Scorer.from_pretrained(folder, allow_pickle=True)
    assert score_pairs(scorer, [p[0] for p in PAIRS[:2]], [p[1] for p in PAIRS[:2]]) == pytest.approx(expected, abs=1e-5)


def test_a_legacy_bin_with_position_ids_loads_as_from_pretrained_does(tmp_path, make_roberta_scorer):
    """Files saved before transformers 4.31 hold roberta.embeddings.position_ids; the key is dropped, not fatal."""
    folder = make_roberta_scorer(tmp_path / "legacy", seed=4)
    expected = direct_scores(folder, PAIRS[:2])
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    state = dict(model.state_dict())
    assert "roberta.embeddings.position_ids" not in state
    state["roberta.embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings).expand((1, -1))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert "roberta.embeddings.position_ids" in torch.load(folder / "pytorch_model.bin", weights_only=True)
    scorer = Scorer.from_pretrained(folder, allow_pickle=True)
    scores = score_pairs(scorer, [p[0] for p in PAIRS[:2]], [p[1] for p in PAIRS[:2]])
    assert scores == pytest.approx(expected, abs=1e-5)
    # a key that is no buffer of the model still names the mismatch
    state["classifier.extra"] = torch.zeros(1)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(LuminaryError, match="unexpected \\['classifier.extra'\\]"):
        Scorer.from_pretrained(folder, allow_pickle=True)


def test_a_head_with_two_outputs_is_refused(tmp_path, make_roberta_scorer):
    folder = make_roberta_scorer(tmp_path / "two", num_labels=2)
    with pytest.raises(LuminaryError, match="head has 2 outputs"):
        Scorer.from_pretrained(folder)


def test_an_encoder_without_head_is_refused_for_scoring(bert_backbone_dir):
    with pytest.raises(LuminaryError, match="no scoring head"):
        Scorer.from_pretrained(bert_backbone_dir)


def test_backbone_gets_a_seeded_one_output_head(bert_backbone_dir, tmp_path):
    a = Scorer.from_backbone(bert_backbone_dir, seed=5)
    b = Scorer.from_backbone(bert_backbone_dir, seed=5)
    c = Scorer.from_backbone(bert_backbone_dir, seed=6)
    assert a.model.config.num_labels == 1 and a.model.classifier.weight.shape == (1, 32)
    assert torch.equal(a.model.classifier.weight, b.model.classifier.weight)
    assert not torch.equal(a.model.classifier.weight, c.model.classifier.weight)
    # the encoder is the pretrained one, untouched
    from transformers import BertModel

    encoder = BertModel.from_pretrained(bert_backbone_dir)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(a.model.bert.state_dict()[name], tensor), name
    # the saved scorer is Cappy's format: plain transformers loads it, same scores
    a.save_pretrained(tmp_path / "scorer")
    assert json.loads((tmp_path / "scorer" / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    ours = score_pairs(Scorer.from_pretrained(tmp_path / "scorer"), [p[0] for p in PAIRS], [p[1] for p in PAIRS])
    assert ours == pytest.approx(score_pairs(a, [p[0] for p in PAIRS], [p[1] for p in PAIRS]), abs=1e-6)


def test_num_layers_keeps_the_first_pretrained_layers(bert_backbone_dir):
    small = Scorer.from_backbone(bert_backbone_dir, num_layers=1)
    full = Scorer.from_backbone(bert_backbone_dir)
    assert len(small.model.bert.encoder.layer) == 1
    assert torch.equal(small.model.bert.encoder.layer[0].attention.self.query.weight,
                       full.model.bert.encoder.layer[0].attention.self.query.weight)
    with pytest.raises(LuminaryError, match="num_layers"):
        Scorer.from_backbone(bert_backbone_dir, num_layers=9)


def test_truncation_keeps_the_response(cappy_dir):
    scorer = Scorer.from_pretrained(cappy_dir, max_length=24)
    [features] = scorer.encode(["word " * 200], ["the response"])
    assert len(features["input_ids"]) == 24
    text = scorer.tokenizer.decode(features["input_ids"], skip_special_tokens=True)
    assert text.startswith("word") and text.endswith("the response")  # the instruction was cut, not the response
