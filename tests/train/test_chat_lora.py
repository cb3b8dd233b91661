"""Chat data with responses-only loss, LoRA through peft, and merging the adapter back."""

import json

import numpy as np
import pytest
import torch
import yaml

from luminary.train.chat import CHATML, encode_conversation
from luminary.train.labels import IGNORE

WORDS = ["system", "user", "assistant", "be", "kind", "hi", "there", "hello", "you", "bye", "ok"]


@pytest.fixture(scope="session")
def word_tokenizer():
    """Word-level tokenizer: one token per word, the ChatML markers as special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<|im_start|>", "<|im_end|>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHATML
    return fast


def test_labels_mask_responses_only(word_tokenizer):
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi there"},
                {"role": "assistant", "content": "hello you"}, {"role": "user", "content": "bye"},
                {"role": "assistant", "content": "ok"}]
    ex = encode_conversation(word_tokenizer, messages)
    tokens = word_tokenizer.convert_ids_to_tokens(ex["input_ids"].tolist())
    S, E = "<|im_start|>", "<|im_end|>"
    assert tokens == [S, "system", "be", "kind", E, S, "user", "hi", "there", E, S, "assistant", "hello", "you", E,
                      S, "user", "bye", E, S, "assistant", "ok", E]
    # by hand: the reply words and their end marker (positions 12-14 and 21-22) carry labels, nothing else
    want = np.full(len(tokens), IGNORE)
    for i in (12, 13, 14, 21, 22):
        want[i] = ex["input_ids"][i]
    np.testing.assert_array_equal(ex["labels"], want)


def test_no_template_is_refused(word_tokenizer, tmp_path):
    from luminary.core.errors import LuminaryError
    from luminary.train.chat import use_template

    tok = word_tokenizer.__class__(tokenizer_object=word_tokenizer.backend_tokenizer)
    tok.chat_template = None
    with pytest.raises(LuminaryError, match="data.chat_template"):
        use_template(tok, "model")
    use_template(tok, "chatml")
    assert tok.chat_template == CHATML


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tokenizer_dir):
    """A chat LoRA run from the llama-debug preset: 6 steps, checkpoints at 3 and 6."""
    from luminary.core.config import load_config
    from luminary.train.finetune import FinetuneConfig, run_finetune

    root = tmp_path_factory.mktemp("lora")
    rows = [{"prompt": f"what is {a} plus {b}?", "response": f"{a + b}"} for a in range(6) for b in range(4)]
    rows.append({"messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}]})
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"model": "llama-debug", "tokenizer": str(tokenizer_dir),
           "data": {"path": str(root / "chat.jsonl"), "format": "chat", "seq_len": 64, "chat_template": "chatml"},
           "train": {"per_device_batch_size": 4, "max_steps": 6,
                     "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
           "optimizer": {"lr": 0.01, "weight_decay": 0.0},
           "deploy": {"seed": 0, "precision": "fp32", "checkpoints": {"every": 3}}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(root / "cfg.yaml", FinetuneConfig)
    records = run_finetune(config, root / "run")
    return root, config, records


def _adapter(folder):
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_lora_trains_adapter_only_and_saves_peft_format(lora_run):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    root, _, records = lora_run
    run = root / "run"
    assert len(records) == 6 and all(np.isfinite(r["loss"]) for r in records)
    ckpt = run / "checkpoints" / "step_000006"
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "model.safetensors").exists()
    adapter = _adapter(ckpt)
    assert adapter and all("lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at zero: it moved
    # the base weights the run started from, bitwise, inside the trained PeftModel
    base = load_file(run / "base" / "model.safetensors")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run / "base"), ckpt)
    merged_names = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in model.state_dict().items() if "lora_" not in k}
    for name, value in base.items():
        assert torch.equal(merged_names[name], value), name
    for k, v in model.state_dict().items():
        if "lora_B" in k:
            assert torch.equal(v, adapter[k.replace(".default", "")])


def test_lora_resume_is_bitwise(lora_run, tmp_path):
    import shutil

    from luminary.core.runs import read_metrics
    from luminary.train.finetune import run_finetune

    root, config, records = lora_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    shutil.rmtree(run / "checkpoints" / "step_000006")
    resumed = run_finetune(config, run, resume=True)
    assert [r["step"] for r in resumed] == [r["step"] for r in records[3:]]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in records[3:]]
    a, b = _adapter(root / "run" / "checkpoints" / "step_000006"), _adapter(run / "checkpoints" / "step_000006")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_merge_lora_matches_peft_logits(lora_run, tmp_path, cli):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, _, _ = lora_run
    out = tmp_path / "merged"
    result = cli("merge-lora", root / "run", "--out", out)
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "tokenizer_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "run" / "base"),
                                           root / "run" / "checkpoints" / "step_000006").eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, peft_model(ids).logits, atol=1e-5, rtol=0)
    assert cli("merge-lora", tmp_path / "nothing", "--out", tmp_path / "m2").returncode == 2


def test_bad_lora_target_names_the_field(tmp_path, tokenizer_dir, cli):
    (tmp_path / "chat.jsonl").write_text(json.dumps({"prompt": "hi", "response": "hello"}) + "\n")
    cfg = {"model": "llama-debug", "tokenizer": str(tokenizer_dir),
           "data": {"path": str(tmp_path / "chat.jsonl"), "format": "chat", "chat_template": "chatml", "seq_len": 128},
           "train": {"max_steps": 1, "lora": {"target_modules": ["nope_proj"]}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cli("train", tmp_path / "cfg.yaml", "--out", tmp_path / "run").one_line_error("lora.target_modules")
    assert not (tmp_path / "run").exists()


def test_chat_lora_example_loads(tokenizer):
    from pathlib import Path

    from luminary.core.config import load_config
    from luminary.train.chat import chat_examples
    from luminary.train.finetune import FinetuneConfig

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "examples" / "finetune-chat-lora.yaml", FinetuneConfig)
    assert config.data.format == "chat" and config.train.lora.r == 8
    examples = chat_examples(root / config.data.path, tokenizer.__class__.from_pretrained(tokenizer.name_or_path),
                             config.data.seq_len, config.data.chat_template)
    assert len(examples) == 300 and all((ex["labels"] != IGNORE).any() for ex in examples)


def test_checkpoint_cards_name_their_base_as_the_hub_reads_them(lora_run, tmp_path, tokenizer_dir, cli):
    """A LoRA checkpoint's card says adapter/peft; a finetune of a folder names it as base_model; the folded
    model's card is a finetune."""
    from huggingface_hub import ModelCard

    root, _, _ = lora_run
    card = ModelCard.load(root / "run" / "checkpoints" / "step_000006" / "README.md").data.to_dict()
    assert card["library_name"] == "peft" and "lora" in card["tags"] and "chat" in card["tags"]
    assert "base_model" not in card  # fresh preset weights: no base to name
    result = cli("merge-lora", root / "run", "--out", tmp_path / "merged")
    assert result.returncode == 0, result.stderr
    merged = ModelCard.load(tmp_path / "merged" / "README.md").data.to_dict()
    assert merged["base_model_relation"] == "finetune" and merged["base_model"] == [str(root / "run" / "base")]
    # a full finetune of that folder
    data = tmp_path / "text.txt"
    data.write_text("def f(x):\n    return x + 1\n" * 40)
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump({"model": str(tmp_path / "merged"), "data": {"path": str(data), "seq_len": 32},
                                      "train": {"per_device_batch_size": 2, "max_steps": 1},
                                      "deploy": {"precision": "fp32"}}))
    assert cli("train", config, "--out", tmp_path / "ft").returncode == 0
    ft = ModelCard.load(tmp_path / "ft" / "checkpoints" / "step_000001" / "README.md")
    assert ft.data.to_dict()["base_model"] == [str(tmp_path / "merged")]
    assert ft.data.to_dict()["base_model_relation"] == "finetune" and "step 1" in ft.text
