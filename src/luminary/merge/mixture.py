"""Mixture of experts from dense models (Model-GLUE §5, mergekit-moe's gates).

``level: ffn`` writes a Mixtral folder: attention, norms and embeddings from
``base_model``, expert e's MLP as ``block_sparse_moe.experts.e`` (w1 = gate_proj,
w2 = down_proj, w3 = up_proj), and a router per layer; the router computes
softmax(W h), keeps the top ``experts_per_token`` and renormalises (Mixtral).
``level: block`` and ``level: model`` write luminary's registered architectures
(``luminary.merge.mixture_models``).

Gate rows (one per expert) are initialised as mergekit-moe does:

- ``hidden``: the base model's hidden state (the input of the layer; the last
  token for ``ffn``, the pooled sequence for ``block``/``model``) averaged over
  the expert's positive prompts, minus the average over its negative prompts,
  L2-normalised;
- ``cheap_embed``: the same with the mean token embedding of the prompts;
- ``random``: N(0, 1/H) (seeded).

When the prompts of different experts are too similar, the gate matrix is
nearly singular and the router cannot tell the experts apart: luminary warns
when its condition number σ_max/σ_min exceeds ``max_condition``.

The folder is planned and written as every merge is (``luminary.merge.merge``):
each tensor a passthrough of one input, copied from a model or, for the
gates, computed before the plan runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from luminary.core.config import Config, read_yaml, validate
from luminary.core.errors import LuminaryError
from luminary.core.progress import info
from luminary.merge.card import as_given, model_card
from luminary.merge.config import DTYPES, locate
from luminary.merge.merge import write_folder
from luminary.merge.methods import get_method
from luminary.merge.plan import MergePlan, TensorTask
from luminary.merge.zoo import Computed, ModelFolder

LLAMA_FAMILY = {"LlamaForCausalLM", "MistralForCausalLM"}
MLP = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}


class Expert(Config):
    model: str
    positive_prompts: list[str] = []
    negative_prompts: list[str] = []


class MixtureConfig(Config):
    level: Literal["ffn", "block", "model"] = "ffn"
    base_model: str
    experts: list[Expert] = Field(min_length=2)
    gate_mode: Literal["hidden", "cheap_embed", "random"] = "hidden"
    experts_per_token: int | None = Field(None, ge=1)
    num_dense_layers: int = Field(0, ge=0)
    pooling: Literal["mean", "first"] = "mean"
    dtype: str | None = None
    seed: int = 0
    max_condition: float = Field(1000.0, gt=1)

    @model_validator(mode="after")
    def _k(self):
        k = self.top_k
        if k > len(self.experts):
            raise ValueError(f"experts_per_token {k} is more than the {len(self.experts)} experts")
        if self.gate_mode != "random":
            for i, e in enumerate(self.experts):
                if not e.positive_prompts:
                    raise ValueError(f"experts[{i}].positive_prompts: needed for gate_mode {self.gate_mode}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype: unknown '{self.dtype}'")
        return self

    @property
    def top_k(self) -> int:
        return self.experts_per_token or (2 if self.level == "ffn" else 1)


def load_mixture_config(path: str | Path) -> MixtureConfig:
    path = Path(path)
    config = validate(MixtureConfig, read_yaml(path), str(path))
    fix = lambda m: locate(m, path.parent)
    data = config.model_dump()
    data["base_model"] = fix(config.base_model)
    for e in data["experts"]:
        e["model"] = fix(e["model"])
    return MixtureConfig.model_validate(data)


# -- gates ------------------------------------------------------------------------------------------
def _prompt_states(model, tokenizer, prompts: list[str], layers: list[int], pooled: bool, pooling: str) -> torch.Tensor:
    """(len(layers), H): the mean over prompts of each layer's input state (last token or pooled)."""
    rows = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        if ids.shape[1] == 0:
            raise LuminaryError(f"prompt {prompt!r} has no tokens")
        with torch.no_grad():
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
        picked = [(states[l][0].mean(0) if pooling == "mean" else states[l][0, 0]) if pooled else states[l][0, -1]
                  for l in layers]
        rows.append(torch.stack(picked).float())
    return torch.stack(rows).mean(0)


def _embed_states(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    table = model.get_input_embeddings().weight
    vectors = [table[tokenizer(p, return_tensors="pt", add_special_tokens=False)["input_ids"][0]].float().mean(0) for p in prompts]
    return torch.stack(vectors).mean(0)


def gate_vectors(config: MixtureConfig, layers: list[int], hidden: int) -> torch.Tensor:
    """(len(layers), E, H) gate rows."""
    E = len(config.experts)
    if config.gate_mode == "random":
        gen = torch.Generator().manual_seed(config.seed)
        return torch.randn(len(layers), E, hidden, generator=gen) / math.sqrt(hidden)
    from luminary.models import load_model, load_tokenizer

    model = load_model(config.base_model, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(config.base_model)
    rows = []
    for expert in config.experts:
        if config.gate_mode == "cheap_embed":
            pos = _embed_states(model, tokenizer, expert.positive_prompts).expand(len(layers), -1)
            neg = (_embed_states(model, tokenizer, expert.negative_prompts).expand(len(layers), -1)
                   if expert.negative_prompts else 0)
        else:
            pooled = config.level != "ffn"
            pos = _prompt_states(model, tokenizer, expert.positive_prompts, layers, pooled, config.pooling)
            neg = (_prompt_states(model, tokenizer, expert.negative_prompts, layers, pooled, config.pooling)
                   if expert.negative_prompts else 0)
        rows.append(torch.nn.functional.normalize(pos - neg, dim=-1))
    return torch.stack(rows, dim=1)


def condition_numbers(gates: torch.Tensor) -> list[float]:
    values = []
    for g in gates:
        s = torch.linalg.svdvals(g.double())
        values.append(float("inf") if s[-1] <= s[0] * 1e-12 else (s[0] / s[-1]).item())
    return values


# -- tensor layouts ---------------------------------------------------------------------------------
def _head(m: ModelFolder) -> str:
    return "lm_head.weight" if "lm_head.weight" in m.tensors else "model.embed_tokens.weight"


def layout(config: MixtureConfig, base: ModelFolder, experts: list[ModelFolder]) -> list[tuple[str, int, str]]:
    """(output name, source: −1 base / e expert, source tensor name) for every copied tensor."""
    L, D = base.num_layers, config.num_dense_layers
    out: list[tuple[str, int, str]] = []
    if config.level == "ffn":
        for name in base.tensors.names():
            if ".mlp." not in name:
                out.append((name, -1, name))
        for i in range(L):
            for e in range(len(experts)):
                for proj, w in MLP.items():
                    out.append((f"model.layers.{i}.block_sparse_moe.experts.{e}.{w}.weight", e,
                                f"model.layers.{i}.mlp.{proj}.weight"))
        return out
    out.append(("embed_tokens.weight", -1, "model.embed_tokens.weight"))
    out += [(f"layers.{i}.{s}", -1, f"model.layers.{i}.{s}") for i in range(D) for s in base.layers[i]]
    for e, x in enumerate(experts):
        for j, i in enumerate(range(D, L)):
            target = f"moe_layers.{j}.experts.{e}" if config.level == "block" else f"experts.{e}.layers.{j}"
            out += [(f"{target}.{s}", e, f"model.layers.{i}.{s}") for s in x.layers[i]]
        if config.level == "model":
            out += [(f"experts.{e}.norm.weight", e, "model.norm.weight"), (f"experts.{e}.lm_head.weight", e, _head(x))]
    if config.level == "block":
        out += [("norm.weight", -1, "model.norm.weight"), ("lm_head.weight", -1, _head(base))]
    return out


def output_config(config: MixtureConfig, base: ModelFolder) -> dict:
    c = dict(base.config)
    E, k = len(config.experts), config.top_k
    if config.level == "ffn":
        if c.get("mlp_bias") or c.get("attention_bias"):
            raise LuminaryError(f"{config.base_model}: Mixtral has no biases; this model has mlp/attention biases")
        c.update(model_type="mixtral", architectures=["MixtralForCausalLM"], num_local_experts=E,
                 num_experts_per_tok=k, output_router_logits=False, router_aux_loss_coef=0.02, sliding_window=None)
        for key in ("mlp_bias", "attention_bias", "pretraining_tp"):
            c.pop(key, None)
        return c
    kind = "block" if config.level == "block" else "model"
    c.update(model_type=f"luminary_{kind}_moe", architectures=[f"{kind.capitalize()}MixtureForCausalLM"],
             num_experts=E, experts_per_token=k, num_dense_layers=config.num_dense_layers, pooling=config.pooling,
             tie_word_embeddings=False, use_cache=False)
    return c


def mixture_card(config: MixtureConfig, out: str | Path, config_text: str | None = None) -> str:
    """The model card of a mixture: models and config as given (``config_text``) or as ``config`` holds them."""
    given, config_text = as_given(config, config_text)
    return model_card(Path(out).name, f"moe_{config.level}", [e.model for e in given.experts], config_text,
                      folders=[config.base_model] + [e.model for e in config.experts],
                      base_model=given.base_model, extra_tags=("moe",), kind="mixture of experts")


def run_mixture(config: MixtureConfig, out: str | Path, overwrite: bool = False, write_card: bool = True,
                config_text: str | None = None) -> dict:
    """Write the mixture folder ``out``; returns a summary with the gates' condition numbers.

    ``config_text``: the YAML as given, for the model card (``README.md``)."""
    base = ModelFolder.open(config.base_model)
    experts = [ModelFolder.open(e.model) for e in config.experts]
    try:
        for m in [base] + experts:
            if not set(m.architecture) & LLAMA_FAMILY:
                raise LuminaryError(f"{m.path}: architecture {list(m.architecture)} is not Llama/Mistral-shaped")
            if m.num_layers != base.num_layers:
                raise LuminaryError(f"{m.path}: {m.num_layers} layers, the base has {base.num_layers}")
        if config.level != "ffn" and not 0 <= config.num_dense_layers < base.num_layers:
            raise LuminaryError(f"num_dense_layers: must be below the {base.num_layers} layers")
        cfg = output_config(config, base)
        copies = layout(config, base, experts)
        models = [base] + experts
        for name, src, src_name in copies:
            model = models[src + 1]
            if src_name not in model.tensors:
                raise LuminaryError(f"{model.path}: has no tensor '{src_name}'")
            if model.tensors.infos[src_name].shape != base.tensors.infos.get(src_name, model.tensors.infos[src_name]).shape:
                raise LuminaryError(f"{model.path}: tensor '{src_name}' has another shape than the base's")
        H = cfg["hidden_size"]
        if config.level == "ffn":
            gate_layers = list(range(base.num_layers))
        elif config.level == "block":
            gate_layers = list(range(config.num_dense_layers, base.num_layers))
        else:
            gate_layers = [config.num_dense_layers]
        gates = gate_vectors(config, gate_layers, H)
        conds = condition_numbers(gates)
        warnings = [f"gate of layer {l}: condition number {c:.3g} > {config.max_condition:g}; the experts' prompts "
                    "are too similar for the router to tell them apart" for l, c in zip(gate_layers, conds)
                    if c > config.max_condition]
        for w in warnings:
            info(f"[yellow]warning:[/yellow] {w}")
        if config.level == "ffn":
            gate_names = [f"model.layers.{l}.block_sparse_moe.gate.weight" for l in gate_layers]
        elif config.level == "block":
            gate_names = [f"moe_layers.{j}.gate.weight" for j in range(len(gate_layers))]
        else:
            gate_names = ["gate.weight"]
        dtype = DTYPES[config.dtype] if config.dtype else base.tensors.infos[copies[0][2]].dtype
        cfg["torch_dtype" if "torch_dtype" in cfg else "dtype"] = str(dtype).replace("torch.", "")
        # every tensor is a passthrough of one input: a copy from a model, or a gate computed above
        sources = {str(m.path) + f"#{i}": m for i, m in enumerate(models)}
        keys = list(sources)
        gate_source = "<gates>"
        sources[gate_source] = Computed(dict(zip(gate_names, (g.contiguous() for g in gates))))
        one = ({"scale": None},)
        tasks = [TensorTask(n, None, ((keys[s + 1], sn),), {}, one, models[s + 1].tensors.infos[sn].shape, False)
                 for n, s, sn in copies]
        tasks += [TensorTask(n, None, ((gate_source, n),), {}, one, tuple(g.shape), False)
                  for n, g in zip(gate_names, gates)]
        plan = MergePlan(get_method("passthrough"), sources, tasks, keys[0], base.num_layers, None, None, dtype, config.seed)
        record = {**config.model_dump(mode="json"), "gate_condition_numbers": conds, "warnings": warnings}
        write_folder(out, plan, cfg, base.path, files={"mixture_config.json": json.dumps(record, indent=2)},
                     overwrite=overwrite, description="mixture",
                     card=mixture_card(config, out, config_text) if write_card else None)
    finally:
        for m in [base] + experts:
            m.close()
    return {"level": config.level, "experts": len(experts), "condition_numbers": conds, "warnings": warnings}
