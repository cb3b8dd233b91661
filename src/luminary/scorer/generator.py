"""Candidates from any generator: a causal or a sequence-to-sequence LM folder.

A sampling plan is a list of decodings; Cappy's plan for boosting FLAN-T5
(``tanyuqian/cappy``, ``scripts/bigbench_flan_generate.py``) draws 17
candidates per input: beam search with 4 beams (1), then 4 each of plain
sampling, temperature 0.9, top-k 40 and top-p 0.95, with 3 to 64 new tokens.
Here every knob is explicit: "plain" sampling really is ancestral
(``top_k=0``, ``top_p=1``), whereas the original inherited transformers'
default ``top_k=50`` in all four sampling strategies.

The generator also scores its own candidates (mean token log-likelihood,
the closing end-of-sequence token included), the "self-scoring" baseline of
the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.seed import derive_seed
from luminary.models.loading import load_config, load_model, load_tokenizer


class Decoding(Config):
    """One decoding strategy of a sampling plan, ``num_return_sequences`` candidates."""

    name: str
    num_return_sequences: int = Field(1, ge=1)
    num_beams: int = Field(1, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0: no top-k cut")
    top_p: float = Field(1.0, gt=0, le=1)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(num_return_sequences=self.num_return_sequences, num_beams=self.num_beams,
                                      do_sample=self.do_sample)
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        return kwargs


SAMPLERS = (
    Decoding(name="sampling", do_sample=True),
    Decoding(name="temp0.9", do_sample=True, temperature=0.9),
    Decoding(name="topk40", do_sample=True, top_k=40),
    Decoding(name="topp0.95", do_sample=True, top_p=0.95),
)


def cappy_plan(n: int = 17) -> list[Decoding]:
    """Cappy's plan for ``n`` candidates: beam search (4 beams) once, the other n−1 shared
    as evenly as possible among the four samplers (n=17: 1 + 4×4, the paper's plan)."""
    if n < 1:
        raise LuminaryError(f"n: need at least one candidate, got {n}")
    plan = [Decoding(name="beam4", num_beams=4)]
    share, extra = divmod(n - 1, len(SAMPLERS))
    for i, sampler in enumerate(SAMPLERS):
        count = share + (i < extra)
        if count:
            plan.append(sampler.model_copy(update={"num_return_sequences": count}))
    return plan


def plan_size(plan: Sequence[Decoding]) -> int:
    return sum(d.num_return_sequences for d in plan)


class Generator:
    """A language model that writes candidate responses to instructions.

    Args:
        model, tokenizer: a causal LM (prompt = ``prompt_template`` filled with
            the instruction, left-padded) or an encoder-decoder (the instruction
            is the encoder input).
        prompt_template: ``{instruction}`` is replaced by the instruction.
        min_new_tokens, max_new_tokens: candidate length in tokens (Cappy: 3 to 64).
        stop: a candidate is cut at the first of these strings (e.g. a newline).
        batch_size: instructions per ``generate`` call.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompt_template: str = "{instruction}",
                 min_new_tokens: int = 3, max_new_tokens: int = 64, stop: Sequence[str] = (),
                 batch_size: int = 8):
        if "{instruction}" not in prompt_template:
            raise LuminaryError("prompt_template: must contain {instruction}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.prompt_template = prompt_template
        self.min_new_tokens, self.max_new_tokens = min_new_tokens, max_new_tokens
        self.stop = tuple(stop)
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise LuminaryError("generator tokenizer: has neither a pad nor an eos token")
        self.pad_id = pad

    @classmethod
    def from_pretrained(cls, path: str | Path, allow_pickle: bool = False, device: str | None = None,
                        **kwargs: Any) -> "Generator":
        """Load any causal-LM or seq2seq-LM folder (chosen by ``is_encoder_decoder``)."""
        config = load_config(path)
        auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = load_model(path, auto_class=auto, allow_pickle=allow_pickle)
        if not hasattr(model, "generate"):
            raise LuminaryError(f"{path}: {type(model).__name__} cannot generate text")
        if device:
            model = model.to(device)
        return cls(model, load_tokenizer(path), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = list(instructions) if self.is_encoder_decoder else \
            [self.prompt_template.format(instruction=i) for i in instructions]
        ids = [self.tokenizer(t, add_special_tokens=self.is_encoder_decoder)["input_ids"] for t in texts]
        T = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), T), dtype=torch.long)
        for i, x in enumerate(ids):
            if self.is_encoder_decoder:  # encoders read right-padded input
                input_ids[i, : len(x)], mask[i, : len(x)] = torch.as_tensor(x), 1
            else:  # decoders continue from the last position: pad on the left
                input_ids[i, T - len(x):], mask[i, T - len(x):] = torch.as_tensor(x), 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _decode(self, out: torch.Tensor, prompt_len: int) -> list[str]:
        new = out if self.is_encoder_decoder else out[:, prompt_len:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [self._cut(t) for t in texts]

    def _cut(self, text: str) -> str:
        for s in self.stop:
            if s and s in text:
                text = text[: text.index(s)]
        return text.strip()

    def generate(self, instructions: Sequence[str], plan: Sequence[Decoding] | None = None,
                 seed: int = 0) -> list[list[dict[str, str]]]:
        """For each instruction, the plan's candidates in order: ``{"text", "decoding"}``.

        Each (decoding, batch) draws from torch's RNG seeded by (seed, decoding,
        batch), so a candidate depends on the seed alone; the caller's RNG is untouched.
        """
        plan = list(plan) if plan is not None else cappy_plan()
        result: list[list[dict[str, str]]] = [[] for _ in instructions]
        devices = [self.device] if self.device.type == "cuda" else []
        for decoding in plan:
            for start in range(0, len(instructions), self.batch_size):
                batch = self._inputs(instructions[start : start + self.batch_size])
                with torch.no_grad(), torch.random.fork_rng(devices=devices):
                    torch.manual_seed(derive_seed("candidates", seed, decoding.name, start))
                    out = self.model.generate(**batch, min_new_tokens=self.min_new_tokens,
                                              max_new_tokens=self.max_new_tokens, pad_token_id=self.pad_id,
                                              **decoding.generate_kwargs())
                texts = self._decode(out, batch["input_ids"].shape[1])
                k = decoding.num_return_sequences
                for j, text in enumerate(texts):
                    result[start + j // k].append({"text": text, "decoding": decoding.name})
        return result

    def log_likelihood(self, instructions: Sequence[str], responses: Sequence[str],
                       include_eos: bool = True) -> list[float]:
        """Mean log-probability per response token, log p(response </s> | instruction) / (|response| + 1)
        (Cappy's "self-scoring" baseline). Responses are tokenized as the model writes them, and
        the end-of-sequence token that closes them counts, as in the original's T5 labels
        (``tokenizer(response)`` appends ``</s>``); ``include_eos=False`` scores the response tokens only."""
        eos = self.tokenizer.eos_token_id
        scores = []
        for instruction, response in zip(instructions, responses):
            batch = self._inputs([instruction])
            target = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            if include_eos and eos is not None:
                target = target + [eos]
            target_t = torch.as_tensor([target or [self.pad_id]], device=self.device)
            with torch.no_grad():
                if self.is_encoder_decoder:
                    logits = self.model(**batch, labels=target_t).logits  # (1, R, V)
                else:
                    ids = torch.cat([batch["input_ids"], target_t], dim=1)
                    logits = self.model(input_ids=ids).logits[:, batch["input_ids"].shape[1] - 1 : -1]
            logp = F.log_softmax(logits.float(), dim=-1).gather(-1, target_t[..., None])[..., 0]
            scores.append(float(logp.mean()))
        return scores
