"""Tokenizer folders that transformers 4.4x reads as 5.x does (checked by hand with 4.46.3)."""

import json

from transformers import AutoTokenizer

from luminary.data.tokenizer import save_tokenizer

TEXT = "<fim_prefix>def f(x):<fim_suffix>    return x<fim_middle>"


def test_saved_config_uses_the_spelling_both_versions_read(tmp_path, tokenizer):
    save_tokenizer(tokenizer, tmp_path / "tok", model_max_length=256)
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # 4.x has no TokenizersBackend
    assert "extra_special_tokens" not in config
    assert config["additional_special_tokens"][:4] == ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]
    assert config["model_max_length"] == 256
    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again(TEXT).input_ids == tokenizer(TEXT).input_ids
    assert again.all_special_tokens == tokenizer.all_special_tokens and again.pad_token_id == tokenizer.pad_token_id
    assert again.model_max_length == 256


def test_a_checkpoint_tokenizer_knows_the_model_context(tmp_path, tokenizer, tiny_crystal):
    from luminary.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ckpt", tiny_crystal, tiny_crystal.state_dict(), {"step": 0}, None, {}, {},
                    tokenizer)
    config = json.loads((tmp_path / "ckpt" / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == tiny_crystal.config.max_position_embeddings
