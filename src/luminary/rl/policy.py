"""A text generator read as a soft-Q function: causal LM or seq2seq.

A policy is a model folder (``save_pretrained``, with its tokenizer) whose
logits are the soft Q-values Q(s_t, ·) of each generation step. It is the same
object for sampling (top-k / top-p, transformers' ``generate`` with the global
torch RNG), for decoding (greedy or beam search) and for the teacher-forced
forward pass that the path-consistency losses need.

Alignment of steps: for a causal LM, prompt p (length P) and actions a_0 … a_{T−1},
Q(s_t, ·) are the logits at position P − 1 + t of the sequence ``p a``; for an
encoder-decoder, the decoder's logits at position t with decoder input
``start a_0 … a_{T−2}``. Prompts are left-padded for ``generate`` and packed to
the left (right-padded) for the teacher-forced pass, so positions are those of
an unpadded sequence whatever the batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.modules import unwrap


PROMPT_FORMAT = "luminary_prompt_format"


@dataclass
class Sampling:
    """How actions are drawn: sampling with top-k / top-p, or greedy / beam decoding."""

    max_new_tokens: int = 32
    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 1.0
    num_beams: int = 1


def _names(mapping: dict) -> set[str]:
    out: set[str] = set()
    for value in mapping.values():
        out.update(value if isinstance(value, (tuple, list)) else [value])
    return out


def generator_kind(config: Any, where: str) -> str:
    """``causal`` or ``seq2seq`` from a model config; anything else is an error."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    arch = (getattr(config, "architectures", None) or [None])[0]
    if getattr(config, "is_encoder_decoder", False):
        if arch is None or arch in _names(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES) \
                or arch.endswith("ForConditionalGeneration"):
            return "seq2seq"
    elif arch is None:
        if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
            return "causal"
    elif arch in _names(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) or arch.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal"
    what = arch or type(config).__name__
    raise LuminaryError(f"{where}: not a text generator ({what} is neither a causal LM nor a seq2seq model)")


def model_kind(model: torch.nn.Module, where: str) -> str:
    """``causal`` or ``seq2seq`` for a model object that can ``generate``."""
    model = unwrap(model)
    can = getattr(model, "can_generate", None)
    if not hasattr(model, "generate") or (can is not None and not can()):
        raise LuminaryError(f"{where}: not a text generator ({type(model).__name__} cannot generate)")
    return "seq2seq" if getattr(model.config, "is_encoder_decoder", False) else "causal"


def pad_batch(seqs: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of sequences padded on the left (``left``) or on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[row, cols] = torch.tensor(s, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


class SeededSampling:
    """A logits processor that samples each row with its own ``torch.Generator``.

    The scores are warped as transformers' sampling warps them (temperature,
    then top-k, then top-p), each row draws its token from its own generator,
    seeded by the caller, and every other token's score becomes −inf: greedy
    search then takes the drawn token. So a row's sample is a function of its
    seed alone, whatever the batch or the world size.
    """

    def __init__(self, seeds: list[int], sampling: Sampling, device: torch.device):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.warpers = []
        if sampling.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k:
            self.warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        picked = torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self.generators)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picked[:, None], 0.0)


class Policy:
    """A causal-LM or seq2seq model with its tokenizer, as a soft-Q policy.

    ``prompt_format`` builds the causal LM's prompt from a source text (BOS is
    put first when the tokenizer has one); it is kept in the model's config
    (``luminary_prompt_format``), so a saved policy prompts the same way when
    loaded (None: the config's, else ``{source}``). Dataset targets become
    actions: their tokens, then EOS when ``append_eos`` and the tokenizer has
    one, cut to ``max_new_tokens``.
    """

    def __init__(self, model: torch.nn.Module | None, tokenizer: Any, max_new_tokens: int = 32,
                 prompt_format: str | None = None, append_eos: bool = True, where: str = "policy",
                 config: Any = None):
        """``model`` may be None when ``config`` is given: the model then is built elsewhere
        (by the Deployer, from a ``ModelSource`` of this config) and passed to each call."""
        config = model.config if model is not None else config
        self.kind = model_kind(model, where) if model is not None else generator_kind(config, where)
        self.model, self.tokenizer = model, tokenizer
        if prompt_format is None:
            prompt_format = getattr(config, PROMPT_FORMAT, "{source}")
        if "{source}" not in prompt_format:
            raise LuminaryError(f"{where}: prompt_format {prompt_format!r} has no {{source}}")
        setattr(config, PROMPT_FORMAT, prompt_format)  # saved with the policy: it prompts the same way loaded
        self.max_new_tokens, self.prompt_format, self.append_eos = max_new_tokens, prompt_format, append_eos
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        vocab = model.get_input_embeddings().weight.shape[0] if model is not None else config.vocab_size
        if len(tokenizer) > vocab:
            raise LuminaryError(f"{where}: the tokenizer's {len(tokenizer)} tokens do not fit the model's vocabulary")

    @classmethod
    def load(cls, path: str | Path, tokenizer: str | Path | None = None, allow_pickle: bool = False,
             **kwargs: Any) -> "Policy":
        """Load a policy folder, refusing folders that do not hold a text generator."""
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        from luminary.models.loading import load_config, load_model, load_tokenizer

        kind = generator_kind(load_config(path), str(path))
        auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        model = load_model(path, auto_class=auto, allow_pickle=allow_pickle)
        return cls(model, load_tokenizer(tokenizer or path), where=str(path), **kwargs)

    # --- text <-> token ids ------------------------------------------------------------
    def encode_sources(self, sources: list[str]) -> list[list[int]]:
        tok, out = self.tokenizer, []
        for source in sources:
            if self.kind == "seq2seq":
                ids = tok(source, add_special_tokens=True)["input_ids"]
            else:
                ids = tok(self.prompt_format.replace("{source}", source), add_special_tokens=False)["input_ids"]
                if tok.bos_token_id is not None:
                    ids = [tok.bos_token_id] + ids
            if not ids:
                raise LuminaryError(f"policy: the prompt of source {source!r} is empty and the tokenizer has no BOS")
            out.append(ids)
        return out

    def encode_targets(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if self.append_eos and self.eos_id is not None:
                ids = ids + [self.eos_id]
            ids = ids[: self.max_new_tokens]
            if not ids:
                raise LuminaryError(f"policy: target {text!r} has no tokens")
            out.append(ids)
        return out

    def prompts(self, sources: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask) of the prompts: left-padded for a causal LM, right-padded for seq2seq."""
        return pad_batch(self.encode_sources(sources), self.pad_id, left=self.kind == "causal")

    def actions(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions (B, T), lengths (B,)) of texts taken as action sequences."""
        ids, mask = pad_batch(self.encode_targets(texts), self.pad_id, left=False)
        return ids, mask.sum(1)

    def decode(self, actions: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.tokenizer.decode(a[: int(n)].tolist(), skip_special_tokens=True)
                for a, n in zip(actions.cpu(), lengths.cpu())]

    # --- Q-values ----------------------------------------------------------------------
    def q_values(self, model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 actions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Teacher-forced Q(s_t, ·) for each action step: (B, T, V)."""
        steps = actions.shape[1]
        action_mask = (torch.arange(steps, device=actions.device)[None] < lengths[:, None]).long()
        if self.kind == "seq2seq":
            start = self.decoder_start_id(model)
            decoder_in = torch.cat([torch.full_like(actions[:, :1], start), actions[:, :-1]], dim=1)
            decoder_mask = torch.cat([torch.ones_like(action_mask[:, :1]), action_mask[:, :-1]], dim=1)
            return model(input_ids=prompt_ids, attention_mask=prompt_mask, decoder_input_ids=decoder_in,
                         decoder_attention_mask=decoder_mask).logits
        # causal: rotate each row left by its padding so prompt and actions start at position 0
        ids = torch.cat([prompt_ids, actions], dim=1)
        mask = torch.cat([prompt_mask, action_mask], dim=1)
        width = ids.shape[1]
        shift = (prompt_mask == 0).sum(1)
        index = (torch.arange(width, device=ids.device)[None] + shift[:, None]) % width
        ids, mask = ids.gather(1, index), mask.gather(1, index)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, P + T, V)
        prompt_len = prompt_mask.sum(1)
        where = (prompt_len[:, None] - 1 + torch.arange(steps, device=ids.device)[None])  # (B, T)
        return logits.gather(1, where[..., None].expand(-1, -1, logits.shape[-1]))

    def decoder_start_id(self, model: torch.nn.Module) -> int:
        config = unwrap(model).config
        start = getattr(config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(unwrap(model).generation_config, "decoder_start_token_id", None)
        if start is None:
            raise LuminaryError("policy: the seq2seq model has no decoder_start_token_id")
        return int(start)

    # --- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 sampling: Sampling, seeds: list[int] | None = None,
                 synced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions (B, T), lengths (B,)): a sequence ends after its first EOS.

        ``seeds``: one per row; each row is then sampled with its own generator
        (:class:`SeededSampling`), so a row's actions depend on its seed only,
        not on the batch it falls in nor the number of processes. Without
        them, sampling draws from torch's global RNG. ``synced``: every process
        runs the same number of steps (FSDP gathers weights at each one).
        """
        model = unwrap(model)
        was_training = model.training
        model.eval()
        seeded = sampling.do_sample and seeds is not None
        processors = None
        if seeded:
            from transformers import LogitsProcessorList

            processors = LogitsProcessorList([SeededSampling(seeds, sampling, prompt_ids.device)])
        config = copy.deepcopy(model.generation_config)
        config.update(max_new_tokens=sampling.max_new_tokens, min_new_tokens=None, max_length=None,
                      do_sample=sampling.do_sample and not seeded, num_beams=sampling.num_beams, num_return_sequences=1,
                      pad_token_id=self.pad_id, eos_token_id=self.eos_id, bos_token_id=self.tokenizer.bos_token_id,
                      top_k=sampling.top_k if sampling.do_sample else None,
                      top_p=sampling.top_p if sampling.do_sample else None,
                      temperature=sampling.temperature if sampling.do_sample else None,
                      repetition_penalty=None, no_repeat_ngram_size=None, length_penalty=1.0,
                      output_scores=False, output_logits=False, return_dict_in_generate=False)
        if seeded:  # the sampled token is the only one left, so greedy search takes it
            config.update(top_k=None, top_p=None, temperature=None)
        try:
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config,
                                 logits_processor=processors, synced_gpus=synced)
        finally:
            model.train(was_training)
        actions = out[:, 1:] if self.kind == "seq2seq" else out[:, prompt_ids.shape[1]:]
        return actions, self.lengths(actions)

    def lengths(self, actions: torch.Tensor) -> torch.Tensor:
        """Steps up to and including the first EOS (all steps when there is none)."""
        steps = actions.shape[1]
        if self.eos_id is None:
            return torch.full((actions.shape[0],), steps, dtype=torch.long, device=actions.device)
        is_eos = actions == self.eos_id
        first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(actions[:, 0], steps))
        return first.long()
