"""Training data for D and R: the masking rule, the word labels, the infillers."""

from __future__ import annotations

import random

import pytest

from luminary.core.errors import LuminaryError
from luminary.ctc import data
from luminary.ctc.data import MASK, Span


class FakeRng:
    """random() returns the given values in order (the draws of the masking walk)."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


WORDS = ["Paris", "is", "the", "capital"]
TREE = Span(0, 4, [Span(0, 2, [Span(0, 1, []), Span(1, 2, [])]), Span(2, 4, [Span(2, 3, []), Span(3, 4, [])])])


def test_mask_probability_is_span_length_over_sentence_length_over_height_plus_one():
    # visit order: Paris (p 1/4), is (stopword: 0), "Paris is" (2/4/2), the (0), capital (1/4), "the capital" (2/4/2),
    # root (4/4/3)
    draws = [0.2, 0.0, 0.3, 0.0, 0.24, 0.9, 0.5]
    template, height, answers = data.mask_tree(TREE, WORDS, FakeRng(draws))
    assert (template, height, answers) == ([MASK, "is", "the", MASK], 2, ["Paris", "capital"])
    just_above = [0.2, 0.0, 0.3, 0.0, 0.25, 0.9, 0.5]  # capital: 0.25 is not < 1/4
    assert data.mask_tree(TREE, WORDS, FakeRng(just_above))[0] == [MASK, "is", "the", "capital"]
    root = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.33]  # root: 0.33 < 1/3 masks the whole sentence
    assert data.mask_tree(TREE, WORDS, FakeRng(root))[2] == ["Paris is the capital"]


def test_masked_sentences_obey_the_rules():
    sentence = "The old lighthouse keeper walked slowly along the rocky northern shore at dawn .".split()
    stop = data.english_stopwords()
    seen = 0
    for seed in range(200):
        result = data.mask_sentence(sentence, random.Random(seed))
        if result is None:
            continue
        seen += 1
        template, answers = result
        assert template != [MASK] and data.acceptable(template, answers)
        assert all(not (a == b == MASK) for a, b in zip(template, template[1:]))
        assert all(any(w.lower() not in stop for w in a.split()) and any(c.isalnum() for c in a) for a in answers)
        # putting the spans back gives the sentence
        assert data.label_words(data.fragments(template), answers, answers)[0] == " ".join(sentence)
    assert seen > 150
    assert data.mask_sentence("the of and".split(), random.Random(0)) is None  # nothing maskable


def test_labels_mark_words_of_fillings_that_differ_from_the_span():
    text, labels = data.label_words(["The", "sat on the", "."], ["cat", "mat"], ["Cat ", "red rug"])
    assert text == "The Cat sat on the red rug ."
    assert labels == [0, 0, 0, 0, 0, 1, 1, 0]  # "Cat" equals "cat" ignoring case
    assert data.label_words(["", "end"], ["Start"], [""]) == ("end", [0])  # an empty filling adds no word
    with pytest.raises(LuminaryError, match="fragments need"):
        data.label_words(["a", "b"], ["x"], [])


def test_fillings_are_read_back_by_matching_the_template():
    frags = ["The", "sat on the", "."]
    assert data.extract_fillings(frags, "the  big dog sat on  the old mat.") == ["big dog", "old mat"]
    assert data.extract_fillings(["", "is here"], "Someone is here") == ["Someone"]
    assert data.extract_fillings(frags, "A dog sat on the mat.") is None


class ConstantInfiller:
    def __init__(self, word):
        self.word, self.calls = word, 0

    def fill(self, batch, seed):
        self.calls += 1
        return [[self.word] * (len(frags) - 1) for frags in batch]


class OracleInfiller:
    """Puts back exactly the masked spans (read from the original texts)."""

    def __init__(self, texts):
        self.texts = texts

    def fill(self, batch, seed):
        out = []
        for frags in batch:
            found = [data.extract_fillings(frags, t) for t in self.texts]
            out.append(next(f for f in found if f is not None))
        return out


RECORDS = [
    {"context": "Officials said the northern bridge will reopen next week after repairs.",
     "text": "The northern bridge will reopen next week."},
    {"context": "Heavy rain flooded streets downtown. Schools closed early. Buses were delayed for hours."},
]


def test_examples_label_exactly_the_changed_words():
    examples = data.make_examples(RECORDS, ConstantInfiller("zebra"), seed=3)
    assert examples
    for ex in examples:
        words = ex["input_text"].split()
        assert len(words) == len(ex["labels"])
        assert all((w == "zebra") == bool(label) for w, label in zip(words, ex["labels"]))
        assert ex["context"] in {r["context"] for r in RECORDS}
    texts = [r.get("text") or r["context"] for r in RECORDS]
    for ex in data.make_examples(RECORDS, OracleInfiller(texts), seed=3):
        assert sum(ex["labels"]) == 0 and ex["fillings"] == ex["answers"]
    assert data.make_examples(RECORDS, ConstantInfiller("zebra"), seed=3) == examples  # seeded


@pytest.fixture
def fim_model(tmp_path, tokenizer):
    from luminary.models import build_model

    folder = tmp_path / "fim"
    build_model("crystal-debug", len(tokenizer), seed=0).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_fim_infiller_prompts_in_psm_order_and_fills_every_mask(fim_model):
    infiller = data.build_infiller(fim_model, device="cpu")
    assert isinstance(infiller, data.FimInfiller)
    assert infiller.prompt("The cat", "on the mat.") == "<fim_prefix>The cat<fim_suffix> on the mat.<fim_middle>"
    batch = [["The", "sat on the", "."], ["", "is here"]]
    fills = infiller.fill(batch, seed=0)
    assert [len(f) for f in fills] == [2, 1] and all(isinstance(x, str) for f in fills for x in f)
    assert infiller.fill(batch, seed=0) == fills


def test_make_data_writes_labelled_jsonl(fim_model, tmp_path):
    from luminary.core.io import read_jsonl, write_jsonl

    write_jsonl(tmp_path / "in.jsonl", RECORDS)
    counts = data.make_data(tmp_path / "in.jsonl", tmp_path / "out.jsonl", fim_model, seed=0, device="cpu")
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert counts["examples"] == len(rows) > 0
    assert counts["words"] == sum(len(r["labels"]) for r in rows)
    for row in rows:
        assert len(row["input_text"].split()) == len(row["labels"])


def test_seq2seq_infiller_sends_mask_tokens_and_reads_the_fillings_back(tmp_path, tokenizer):
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    folder = tmp_path / "bart"
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.add_special_tokens({"mask_token": "<mask>"})
    tok.save_pretrained(folder)
    config = BartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        decoder_start_token_id=tok.eos_token_id)
    BartForConditionalGeneration(config).save_pretrained(folder)
    infiller = data.build_infiller(folder, device="cpu", max_new_tokens=8)
    assert isinstance(infiller, data.Seq2SeqInfiller)
    frags = [["The", "sat on the", "."]]
    [random_output] = infiller.fill(frags, seed=0)  # an untrained model: a filling list or None, never an error
    assert random_output is None or len(random_output) == 2

    sent = {}

    def generate(input_ids, **kwargs):
        sent["text"] = tok.decode(input_ids[0])
        return torch.tensor([tok("The big dog sat on the old mat.")["input_ids"]])

    infiller.model.generate = generate
    assert infiller.fill(frags, seed=0) == [["big dog", "old mat"]]
    assert sent["text"] == "The <mask> sat on the <mask> ."
