from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from luminary.core.errors import LuminaryError
from luminary.summarize.data import collate_seq2seq
from luminary.summarize.generate import AspectSummarizer, GenerationSettings, add_knowledge_words
from luminary.summarize.train import SummarizeTrainConfig, TinyModel, label_smoothed_loss, train_summarizer

ROWS = [
    {"aspect": "dog", "knowledge_words": ["bark"], "document": "The dog barked at night. The cat slept.",
     "summary": "A dog barked."},
    {"aspect": "cat", "knowledge_words": [], "document": "The dog barked at night. The cat slept.",
     "summary": "A cat slept."},
    {"aspect": "tree", "knowledge_words": ["plant"], "document": "A tree fell on a house in the storm.",
     "summary": "A tree fell."},
    {"aspect": "roof", "knowledge_words": [], "document": "A tree fell on a house in the storm. The roof broke.",
     "summary": "The roof broke."},
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("summarize")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = SummarizeTrainConfig(
        data=str(data), tiny=TinyModel(d_model=32, layers=1, heads=2, ffn=64, vocab_size=300, max_position=128),
        max_source=64, max_target=16, lr=3e-3, warmup_ratio=0.0, per_device_batch_size=4,
        accumulate_grad_batches=1, max_steps=12, deploy={"device": "cpu", "precision": "fp32"})
    return train_summarizer(config, folder / "run")


def test_loss_is_torch_label_smoothing_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)  # (B, T, V)
    labels = torch.tensor([[1, 4, -100], [0, 2, 3]])

    class Fake(torch.nn.Module):
        def prepare_decoder_input_ids_from_labels(self, labels):
            return labels.clamp(min=0)

        def forward(self, **kwargs):
            return type("Out", (), {"logits": logits})()

    out = label_smoothed_loss(Fake(), {"input_ids": labels, "attention_mask": labels, "labels": labels}, epsilon=0.1)
    logp = F.log_softmax(logits, -1)
    keep = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0][keep]
    smooth = -logp.mean(-1)[keep]  # (1/V) Σ_v −log p(v)
    assert out["count"] == 5
    assert torch.allclose(out["loss"], (0.9 * nll + 0.1 * smooth).mean())


def test_the_tiny_model_takes_its_dropout_from_the_config():
    from luminary.summarize.train import tiny_source

    tiny = TinyModel(d_model=32, layers=1, heads=2, ffn=64, vocab_size=300, max_position=128)
    config = SummarizeTrainConfig(data="unused.jsonl", tiny=tiny)
    assert tiny_source(config, ROWS)[0].config.dropout == 0.1  # BART's default, unchanged
    config = SummarizeTrainConfig(data="unused.jsonl", tiny=tiny.model_copy(update={"dropout": 0.0}))
    assert tiny_source(config, ROWS)[0].config.dropout == 0.0


def test_collate_pads_sources_and_masks_labels():
    batch = collate_seq2seq([{"input_ids": [5, 6, 2], "labels": [7, 2]}, {"input_ids": [5, 2], "labels": [2]}],
                            pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 2], [5, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 2], [2, -100]]


def test_training_through_the_trainer_lowers_the_loss_and_exports(trained):
    losses = [r["loss"] for r in trained["records"]]
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert (trained["model"] / "model.safetensors").is_file()
    assert json.loads((trained["model"] / "luminary_summarize.json").read_text())["aspect_blind"] is False


def test_generation_is_batched_and_bounded(trained):
    summarizer = AspectSummarizer(trained["model"], "cpu")
    settings = GenerationSettings(num_beams=2, min_length=3, max_length=10, batch_size=4)
    together = summarizer.summarize(ROWS, settings)
    one_by_one = [summarizer.summarize([r], settings.model_copy(update={"batch_size": 1}))[0] for r in ROWS]
    assert together == one_by_one
    lengths = [len(summarizer.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in together]
    assert all(n <= 10 for n in lengths)


def test_an_aspect_the_knowledge_lacks_warns_and_gets_no_knowledge_words(conceptnet_json, capsys, monkeypatch):
    from luminary.summarize.knowledge import ConceptNetKnowledge

    monkeypatch.setenv("LUMINARY_QUIET", "0")
    rows = add_knowledge_words([{"aspect": "zeppelin", "document": "The dog barked."},
                                {"aspect": "dog", "document": "The dog barked at the animal."}],
                               ConceptNetKnowledge(conceptnet_json))
    assert rows[0]["knowledge_words"] == []
    assert rows[1]["knowledge_words"] == ["animal", "dog"]  # by tf-idf: "dog" is in both documents
    assert "warning: aspect 'zeppelin' is not in the knowledge" in capsys.readouterr().err


def test_a_model_folder_that_is_not_seq2seq_is_one_line(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50, n_positions=16)).save_pretrained(tmp_path)
    with pytest.raises(LuminaryError, match="model_type 'gpt2' is not a seq2seq"):
        AspectSummarizer(tmp_path, "cpu")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    with pytest.raises(LuminaryError, match="not a seq2seq"):
        train_summarizer(SummarizeTrainConfig(model=str(tmp_path), data=str(data)), tmp_path / "run")


def test_run_command_on_one_document_and_on_jsonl(trained, conceptnet_json, tmp_path):
    import typer
    from typer.testing import CliRunner

    from luminary.cli.summarize import register

    app = typer.Typer()
    register(app)
    doc = tmp_path / "doc.txt"
    doc.write_text(ROWS[0]["document"])
    common = ["--knowledge", str(conceptnet_json), "--num-beams", "2", "--min-length", "2", "--max-length", "8",
              "--device", "cpu"]
    one = CliRunner().invoke(app, ["summarize", "run", str(trained["model"]), str(doc), "--aspect", "dog", *common])
    assert one.exit_code == 0, one.output
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"aspect": "dog", "document": ROWS[0]["document"]}) + "\n")
    many = CliRunner().invoke(app, ["summarize", "run", str(trained["model"]), "--input", str(rows),
                                    "--output", str(tmp_path / "out.jsonl"), *common])
    assert many.exit_code == 0, many.output
    out = json.loads((tmp_path / "out.jsonl").read_text())
    assert out["aspect_summary"] == one.output.strip() and out["knowledge_words"] == ["dog"]
