"""The probe: a tiny input every plan decision is read from, and the output it is judged by.

Two sequences of seven random token ids (and decoder ids for an encoder-decoder
model), drawn from a fixed seed so that positions (0, 1, 2 ...) never look
like token ids. A plan is judged by the model's main output on it: the logits,
else the last hidden state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from luminary.core.errors import LuminaryError


def probe_inputs(model: nn.Module, batch: int = 2, length: int = 7, seed: int = 0) -> dict[str, Any]:
    """A tiny input for a transformers model: random token ids (and decoder ids)."""
    config = getattr(model, "config", None)
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if config is None or not isinstance(embed, nn.Embedding):
        raise LuminaryError(
            f"{type(model).__name__}: automatic tensor parallelism needs a transformers model fed token ids"
        )
    device = embed.weight.device
    gen = torch.Generator().manual_seed(seed)
    vocab = embed.num_embeddings
    inputs: dict[str, Any] = {"input_ids": torch.randint(0, vocab, (batch, length), generator=gen).to(device)}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = torch.randint(0, vocab, (batch, length - 2), generator=gen).to(device)
    inputs["use_cache"] = False
    return inputs


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The main output of a forward: logits, else the last hidden state, else the first tensor."""
    for key in ("logits", "last_hidden_state"):
        value = out.get(key) if hasattr(out, "get") else getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return [value]
    leaves = [t for t in tree_leaves(out if not hasattr(out, "to_tuple") else out.to_tuple())
              if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return leaves[:1]


def run_probe(model: nn.Module, probe: dict[str, Any]) -> list[torch.Tensor]:
    """The model's main output on ``probe`` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [t.detach() for t in output_tensors(model(**probe))]
    finally:
        model.train(was_training)
