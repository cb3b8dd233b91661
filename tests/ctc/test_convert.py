"""The released ctc_score D/R checkpoint format → a luminary aligner folder, against a hand-run of the originals.

Each test writes a tiny checkpoint in ctc_score's exact layout (``torch.save`` of the state dict of its
``DiscriminativeAligner``: ``_roberta.*`` with the old ``position_ids`` buffer and the pooler, and
``_classifier.*``; of its ``BleurtModel``: ``bert.*`` and ``dense.*``), converts it, and compares the
converted aligner with the original's forward re-run by hand on the same tensors.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from luminary.core.errors import LuminaryError
from luminary.ctc.aligners import DiscriminativeAligner, RegressionAligner
from luminary.ctc.convert import convert_checkpoint

SENTENCES = ["the council approved a new park on monday", "construction of the park starts in may",
             "dogs won the election in paris", "the museum reopened with modern paintings",
             "heavy rain flooded several streets of the city", "researchers found the drug reduced symptoms"]
INPUTS = ["the council approved a park", "dogs won the election", "unprecedented construction reopened"]
CONTEXTS = [SENTENCES[0] + ". " + SENTENCES[1], SENTENCES[0], SENTENCES[3] + ". " + SENTENCES[4]]


@pytest.fixture(scope="module")
def roberta_base(tmp_path_factory) -> Path:
    """A tiny roberta-large stand-in: config.json and a byte-level BPE tokenizer as roberta's (Ġ marks a space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    folder = tmp_path_factory.mktemp("roberta-base-folder")
    fast.save_pretrained(str(folder))
    RobertaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                  bos_token_id=0, eos_token_id=2).save_pretrained(folder)
    return folder


def ctc_d_checkpoint(path: Path, base: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """ctc_score's DiscriminativeAligner state dict: _roberta (RobertaModel, pooler, legacy position_ids), _classifier."""
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    config = RobertaConfig.from_pretrained(base)
    roberta = RobertaModel(config).eval()  # add_pooling_layer=True, as RobertaModel.from_pretrained('roberta-large')
    state = {f"_roberta.{k}": v for k, v in roberta.state_dict().items()}
    state["_roberta.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]  # transformers < 4.31
    classifier = torch.nn.Linear(config.hidden_size, 2)
    torch.nn.init.normal_(classifier.weight, std=0.3)  # spread the probabilities, so that a wrong pooling shows
    state.update({f"_classifier.{k}": v for k, v in classifier.state_dict().items()})
    torch.save(state, path)
    return state


def original_d_forward(state, base, input_text, context):
    """ctc_score DiscriminativeAligner.align/forward by hand: pair encoding, words from the Ġ markers, features
    summed per word (divided by how many words share a token: 1 here), _classifier, softmax[:, 0]."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(base)
    roberta = RobertaModel(RobertaConfig.from_pretrained(base)).eval()
    roberta.load_state_dict({k[len("_roberta."):]: v for k, v in state.items()
                             if k.startswith("_roberta.") and "position_ids" not in k})
    tokens = tokenizer(input_text, context, truncation="only_second", max_length=512, return_tensors="pt")
    with torch.no_grad():
        features = roberta(**tokens).last_hidden_state[0]
    ids = tokenizer(input_text)["input_ids"]
    features = features[: len(ids)]
    pieces = tokenizer.convert_ids_to_tokens(ids)[1:-1]
    alignment, current = [], []
    for i, piece in enumerate(pieces):
        if piece.startswith("Ġ") and current:
            alignment.append(current)
            current = [i + 1]
        else:
            current.append(i + 1)
    alignment.append(current)
    words = torch.stack([features[idx].sum(dim=0) for idx in alignment])
    logits = words @ state["_classifier.weight"].T + state["_classifier.bias"]
    assert len(alignment) == len(input_text.split())
    return torch.softmax(logits, dim=-1)[:, 0].tolist()


def test_a_released_d_checkpoint_scores_as_the_original(tmp_path, roberta_base, cli):
    state = ctc_d_checkpoint(tmp_path / "doc_to_summ.ckpt", roberta_base)
    res = cli("ctc", "convert", tmp_path / "doc_to_summ.ckpt", tmp_path / "d", "--base", roberta_base)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["kind"] == "D" and summary["word_features"] == "sum"
    assert (tmp_path / "d" / "model.safetensors").is_file() and (tmp_path / "d" / "MANIFEST.sha256").is_file()
    aligner = DiscriminativeAligner(tmp_path / "d", device="cpu")
    assert aligner.word_features == "sum"
    # a lone Ġ (a token of no letters) opens "council": ctc_score counts it in that word, and so must we
    assert "Ġ" in aligner.tokenizer.tokenize(INPUTS[0])
    got = aligner.align(INPUTS, CONTEXTS)
    for alignment, text, context in zip(got, INPUTS, CONTEXTS):
        assert alignment.tokens == text.split()
        assert alignment.scores == pytest.approx(original_d_forward(state, roberta_base, text, context), abs=1e-5)
    # the pooling matters on these words: the mean gives other scores
    mean = DiscriminativeAligner(tmp_path / "d", device="cpu", word_features="mean").align(INPUTS, CONTEXTS)
    assert max(abs(x - y) for a, b in zip(got, mean) for x, y in zip(a.scores, b.scores)) > 1e-3


def test_the_lightning_checkpoint_of_the_training_code_converts_too(tmp_path, roberta_base):
    state = ctc_d_checkpoint(tmp_path / "plain.ckpt", roberta_base, seed=1)
    torch.save({"state_dict": state, "epoch": 0, "global_step": 10}, tmp_path / "lightning.ckpt")
    convert_checkpoint(tmp_path / "lightning.ckpt", tmp_path / "d", roberta_base)
    got = DiscriminativeAligner(tmp_path / "d", device="cpu").align(INPUTS[:1], CONTEXTS[:1])[0].scores
    assert got == pytest.approx(original_d_forward(state, roberta_base, INPUTS[0], CONTEXTS[0]), abs=1e-5)


def test_a_released_r_checkpoint_scores_as_the_original(tmp_path, tiny_bert):
    """BLEURTAligner: dense(BertModel(context, input).pooler_output), keys bert.* and dense.*."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(4)
    bert = BertModel(BertConfig.from_pretrained(tiny_bert)).eval()
    dense = torch.nn.Linear(bert.config.hidden_size, 1)
    state = {**{f"bert.{k}": v for k, v in bert.state_dict().items()},
             **{f"dense.{k}": v for k, v in dense.state_dict().items()}}
    torch.save(state, tmp_path / "summ_to_ref.ckpt")
    summary = convert_checkpoint(tmp_path / "summ_to_ref.ckpt", tmp_path / "r", tiny_bert)
    assert summary["kind"] == "R"
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    got = [a.scores[0] for a in RegressionAligner(tmp_path / "r", device="cpu").align(INPUTS, CONTEXTS)]
    for score, text, context in zip(got, INPUTS, CONTEXTS):
        enc = tokenizer(context, text, truncation="longest_first", max_length=512, return_tensors="pt")
        with torch.no_grad():
            expected = dense(bert(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).pooler_output)
        assert score == pytest.approx(expected.item(), abs=1e-5)


def test_wrong_files_get_one_line(tmp_path, roberta_base, tiny_bert, cli):
    base = ("--base", roberta_base)
    cli("ctc", "convert", tmp_path / "missing.ckpt", tmp_path / "o", *base).one_line_error("checkpoint not found")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    cli("ctc", "convert", tmp_path / "text.ckpt", tmp_path / "o", *base).one_line_error("weights_only=True")
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.ckpt")
    cli("ctc", "convert", tmp_path / "other.ckpt", tmp_path / "o", *base).one_line_error("not a ctc_score D or R")
    torch.save({"_roberta.x": torch.zeros(1), "_classifier.weight": torch.zeros(3, 32)}, tmp_path / "three.ckpt")
    cli("ctc", "convert", tmp_path / "three.ckpt", tmp_path / "o", *base).one_line_error("(2, hidden)")
    torch.save(defaultdict(int, a=1), tmp_path / "pickled.ckpt")  # a pickled class: refused by weights_only
    cli("ctc", "convert", tmp_path / "pickled.ckpt", tmp_path / "o", *base).one_line_error("weights_only=True")
    ctc_d_checkpoint(tmp_path / "d.ckpt", roberta_base)
    cli("ctc", "convert", tmp_path / "d.ckpt", tmp_path / "o", "--base", tiny_bert).one_line_error("has shape")
    state = torch.load(tmp_path / "d.ckpt", weights_only=True)
    del state["_roberta.encoder.layer.1.output.dense.weight"]
    torch.save(state, tmp_path / "cut.ckpt")
    cli("ctc", "convert", tmp_path / "cut.ckpt", tmp_path / "o", *base).one_line_error("missing")
    assert not (tmp_path / "o").exists()  # nothing half-written


@pytest.mark.parametrize("trim_offsets", [True, False])
def test_a_lone_space_token_belongs_to_the_word_it_opens(roberta_base, trim_offsets):
    """ctc_score starts a word at every Ġ token; with trimmed offsets a lone Ġ is empty, untrimmed it is the space."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    from luminary.ctc.aligners.pairs import encode_pairs

    tokenizer = AutoTokenizer.from_pretrained(roberta_base)
    tokenizer.backend_tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=trim_offsets, add_prefix_space=False)
    [pair] = encode_pairs(tokenizer, [INPUTS[0]], ["a context"])
    pieces = tokenizer.convert_ids_to_tokens(pair["input_ids"])
    n = len(tokenizer(INPUTS[0])["input_ids"])
    words, word = [], -1
    for piece in pieces[1 : n - 1]:  # ctc_score's rule: a Ġ opens the next word
        word += piece.startswith("Ġ") or word < 0
        words.append(word)
    assert "Ġ" in pieces[1 : n - 1] and pair["word_index"][1 : n - 1] == words
    assert set(pair["word_index"][n - 1 :]) == {-1}
