"""Text generation from a causal-LM folder (what ``luminary generate`` calls)."""

from __future__ import annotations

from pathlib import Path

import torch

from luminary.core.errors import LuminaryError
from luminary.models.loading import load_model, load_tokenizer


def generate_text(
    model_path: str | Path,
    prompt: str,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    num: int = 1,
    seed: int = 0,
    allow_pickle: bool = False,
) -> list[str]:
    model = load_model(model_path, allow_pickle=allow_pickle).eval()
    if not hasattr(model, "generate"):
        raise LuminaryError(f"{model_path}: {type(model).__name__} cannot generate text")
    tokenizer = load_tokenizer(model_path)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    if ids.shape[1] == 0:
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = torch.tensor([[bos]])
    do_sample = not greedy and temperature > 0
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_return_sequences=num,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    if do_sample:
        kwargs.update(temperature=temperature, top_k=top_k or None, top_p=top_p)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    return [prompt + tokenizer.decode(seq[ids.shape[1]:], skip_special_tokens=True) for seq in out]
