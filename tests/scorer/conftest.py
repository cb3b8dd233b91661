"""Tiny scorers and generators for the scorer tests (random weights, built on the fly)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def pair_tokenizer_dir(tmp_path_factory, stdlib_texts) -> Path:
    """A RoBERTa-style byte-level BPE: pairs read ``<s> a </s></s> b </s>`` (as Cappy's tokenizer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(stdlib_texts[:10], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False,
                                                      add_prefix_space=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    folder = tmp_path_factory.mktemp("pair_tokenizer")
    fast.save_pretrained(str(folder))
    return folder


def save_roberta_scorer(folder: Path, tokenizer_dir: Path, num_labels: int = 1, seed: int = 0) -> Path:
    """A Cappy-format folder: RobertaForSequenceClassification with random weights."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=num_labels)
    torch.manual_seed(seed)
    RobertaForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def make_roberta_scorer(pair_tokenizer_dir):
    """``make(folder, num_labels=1, seed=0)`` writes a Cappy-format folder."""
    return lambda folder, num_labels=1, seed=0: save_roberta_scorer(folder, pair_tokenizer_dir, num_labels, seed)


@pytest.fixture(scope="session")
def cappy_dir(tmp_path_factory, pair_tokenizer_dir) -> Path:
    return save_roberta_scorer(tmp_path_factory.mktemp("cappy"), pair_tokenizer_dir)


@pytest.fixture(scope="session")
def bert_backbone_dir(tmp_path_factory, pair_tokenizer_dir) -> Path:
    """A tiny BertModel (an encoder with no head), as a pretrained backbone is shipped."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(pair_tokenizer_dir))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=1)
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("bert")
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer) -> Path:
    """A causal generator folder: llama-debug, random weights, the session BPE."""
    from luminary.models import build_model

    model = build_model("llama-debug", len(tokenizer), seed=0, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory, tokenizer) -> Path:
    """A seq2seq generator folder: a tiny T5 with random weights."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder
