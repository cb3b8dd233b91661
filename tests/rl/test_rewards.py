"""Built-in rewards against direct computations; weighted sums; bad rewards are named errors."""

import math

import pytest
import sacrebleu
import torch

from luminary.core.errors import LuminaryError
from luminary.models import build_model
from luminary.rl.rewards import (
    ClassifierProbability,
    LanguageModelNLL,
    RepetitionCount,
    SentenceBLEU,
    WeightedSum,
    checked_rewards,
    load_callable,
)

TEXTS = ["the cat sat on the mat", "a dog", "the the the cat"]
SOURCES = ["the cat is on the mat", "one dog", "cats"]
TARGETS = ["the cat sat on the mat", "the dog", None]


def test_bleu_against_the_target_the_source_or_a_fixed_text():
    bleu = SentenceBLEU("target")
    got = bleu(SOURCES[:2], TEXTS[:2], TARGETS[:2])
    assert got[0] == pytest.approx(100.0)
    assert got[1] == pytest.approx(sacrebleu.sentence_bleu("a dog", ["the dog"]).score)
    assert SentenceBLEU("source")(SOURCES, TEXTS, TARGETS)[2] == pytest.approx(
        sacrebleu.sentence_bleu(TEXTS[2], [SOURCES[2]]).score)
    assert SentenceBLEU("a dog")(SOURCES, TEXTS, TARGETS)[1] == pytest.approx(100.0)
    with pytest.raises(LuminaryError, match="needs a target"):
        bleu(SOURCES, TEXTS, TARGETS)


def test_repetition_counts_repeated_ngrams():
    assert RepetitionCount(1)(SOURCES, TEXTS, TARGETS) == [1.0, 0.0, 2.0]
    assert RepetitionCount(2)(SOURCES, ["a b a b a b"], [None]) == [3.0]  # ab ba ab ba ab: 5 - 2


def test_classifier_probability_is_the_softmax_of_the_chosen_class(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=3,
                         id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "nli")
    tokenizer.save_pretrained(tmp_path / "nli")
    by_name = ClassifierProbability(str(tmp_path / "nli"), label="neutral")
    got = by_name(SOURCES, TEXTS, TARGETS)
    for text, value in zip(TEXTS, got):  # one at a time: no padding involved
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            expected = 100 * model(**ids).logits.softmax(-1)[0, 1].item()
        assert value == pytest.approx(expected, rel=1e-4)
    pair = ClassifierProbability(str(tmp_path / "nli"), label=2, pair=True)(SOURCES[:1], TEXTS[:1], TARGETS[:1])
    enc = tokenizer(SOURCES[0], TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        assert pair[0] == pytest.approx(100 * model(**enc).logits.softmax(-1)[0, 2].item(), rel=1e-4)
    with pytest.raises(LuminaryError, match="label 'happy' not in"):
        ClassifierProbability(str(tmp_path / "nli"), label="happy")


def test_language_model_nll_is_the_mean_token_cross_entropy(tmp_path, tokenizer):
    model = build_model("llama-debug", len(tokenizer), seed=0).eval()
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    got = LanguageModelNLL(str(tmp_path / "lm"), batch_size=2)(SOURCES, TEXTS, TARGETS)
    for text, value in zip(TEXTS, got):
        ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        logp = logits.log_softmax(-1)
        expected = -sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1)) / (len(ids) - 1)
        assert value == pytest.approx(expected, rel=1e-4)
    assert all(v > math.log(len(tokenizer)) - 1 for v in got)  # an untrained model: about uniform


def test_weighted_sum_adds_weighted_terms():
    total = WeightedSum([("bleu", 1.0, SentenceBLEU("source")), ("rep", -5.0, RepetitionCount())])
    expected = [b - 5 * r for b, r in zip(SentenceBLEU("source")(SOURCES, TEXTS, TARGETS),
                                          RepetitionCount()(SOURCES, TEXTS, TARGETS))]
    assert total(SOURCES, TEXTS, TARGETS).tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("values, message", [
    ([1.0, 2.0], "reward 'mine': returned 2 values for a batch of 3 texts"),
    ([1.0, float("nan"), 2.0], "reward 'mine': nan at batch index 1"),
    ([1.0, 2.0, float("inf")], "reward 'mine': inf at batch index 2"),
    (["a", "b", "c"], "reward 'mine': expected one number per text"),
])
def test_bad_reward_outputs_are_named_errors(values, message):
    with pytest.raises(LuminaryError) as err:
        checked_rewards(lambda s, t, r: values, "mine", SOURCES, TEXTS, TARGETS)
    assert message in str(err.value)


def test_load_callable_from_a_file(tmp_path):
    (tmp_path / "my_reward.py").write_text("def score(sources, texts, targets):\n    return [len(t) for t in texts]\n")
    fn = load_callable(f"{tmp_path / 'my_reward.py'}:score")
    assert fn(SOURCES, TEXTS, TARGETS) == [len(t) for t in TEXTS]
    with pytest.raises(LuminaryError, match="has no function"):
        load_callable(f"{tmp_path / 'my_reward.py'}:nope")
    with pytest.raises(LuminaryError, match="expected 'module:function'"):
        load_callable("no_colon")
