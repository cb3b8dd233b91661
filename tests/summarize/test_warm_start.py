"""BERT2BERT from the packaged MiniLM: pretrained everywhere but cross-attention, trained and run like a BART."""

import json

import pytest
import torch
from safetensors.torch import load_file

from luminary.ctc.encoder import default_encoder
from luminary.summarize.generate import AspectSummarizer, GenerationSettings
from luminary.summarize.train import SummarizeTrainConfig, train_summarizer
from luminary.summarize.warm_start import RECORD, warm_start

ROWS = [{"aspect": "file", "knowledge_words": ["file"], "document": "Open the file and read it. Close the socket.",
         "summary": "Open the file."},
        {"aspect": "socket", "knowledge_words": [], "document": "Open the file and read it. Close the socket.",
         "summary": "Close the socket."}] * 4


@pytest.fixture(scope="module")
def bert2bert(tmp_path_factory):
    return warm_start(tmp_path_factory.mktemp("ws") / "model", decoder_layers=2)


def test_every_weight_but_cross_attention_comes_from_the_encoder(bert2bert):
    from transformers import EncoderDecoderModel

    minilm = load_file(default_encoder() / "model.safetensors")
    model = EncoderDecoderModel.from_pretrained(bert2bert)
    assert model.config.decoder.num_hidden_layers == 2 and model.config.encoder.num_hidden_layers == 6
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, minilm[name]), name
    decoder = model.decoder.state_dict()
    fresh = [n for n in decoder if "crossattention" in n]
    assert fresh and all(".layer.0." in n or ".layer.1." in n for n in fresh)
    for name, value in decoder.items():
        if "crossattention" not in name and name.startswith("bert.") and "pooler" not in name:
            assert torch.equal(value, minilm[name.removeprefix("bert.")]), name
    assert model.decoder.get_output_embeddings().weight.data_ptr() == \
        model.decoder.get_input_embeddings().weight.data_ptr()  # the output layer is the word embeddings
    record = json.loads((bert2bert / RECORD).read_text())
    assert record["fresh_cross_attention_parameters"] == sum(decoder[n].numel() for n in fresh)
    assert model.generation_config.decoder_start_token_id == 101 and model.generation_config.eos_token_id == 102


def test_it_trains_and_summarizes_as_train_and_run_do(bert2bert, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = SummarizeTrainConfig(model=str(bert2bert), data=str(data), max_source=32, max_target=12, lr=3e-4,
                                  per_device_batch_size=8, accumulate_grad_batches=1, max_steps=6,
                                  deploy={"device": "cpu", "precision": "fp32"})
    result = train_summarizer(config, tmp_path / "run")
    losses = [r["loss"] for r in result["records"]]
    assert losses[-1] < losses[0]
    out = AspectSummarizer(result["model"], "cpu").summarize(ROWS[:2], GenerationSettings(
        num_beams=2, min_length=2, max_length=10))
    assert len(out) == 2 and all(isinstance(s, str) and s for s in out)


def test_bad_encoders_are_one_line(tmp_path, cli):
    from luminary.models import build_model

    build_model("llama-debug", 64, seed=0).save_pretrained(tmp_path / "llama")
    cli("summarize", "warm-start", "--out", str(tmp_path / "a"), "--encoder", str(tmp_path / "llama")) \
        .one_line_error("llama", "not a BERT-family encoder")
    cli("summarize", "warm-start", "--out", str(tmp_path / "b"), "--decoder-layers", "7") \
        .one_line_error("--decoder-layers", "6")
    cli("summarize", "warm-start", "--out", str(tmp_path / "c"), "--encoder", str(tmp_path / "missing")) \
        .one_line_error("missing")
    assert not any((tmp_path / n).exists() for n in "abc")
