"""LLM360's released checkpoints as luminary folders: CrystalCoder to ``crystal``, Amber as Llama.

CrystalCoder's Hugging Face release (``LLM360/CrystalCoder``, model type
``crystalcoder``, remote code) keeps GPT-2's layout: ``transformer.wte``,
``transformer.h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_fc2,
mlp.c_proj}``, ``transformer.ln_f``, Conv1D weights stored (in, out), q, k and v
packed in ``c_attn`` as [q; k; v], tied embeddings. What each tensor is was read
from LLM360's own converter to Megatron (``crystalcoder-train``,
``tools/checkpoint/loader_crystalcoder_hf.py``): ``c_fc2`` is the SwiGLU gate
(``silu`` applied: Megatron's ``dense_h_to_4h`` is [c_fc2; c_fc] and its SwiGLU is
``silu(first half) · second half``), ``c_fc`` the up projection; and the rotary
embedding its fine-tuning runs with ``--rotary-interleave-repeat``: GPT-J's pairs
(2i, 2i + 1) on the first ``rotary_dim`` dimensions of each head, base 10000
(``megatron/core/models/common/embeddings/rotary_pos_embedding.py``), hence
``rotary: interleaved`` by default here. The μP numbers come from its
``config.json`` (``mup_embeddings_scale``, ``mup_output_alpha``,
``mup_width_scale``, ``mup_scale_qk_dot_by_d``).

Parameters: the released config's shapes give 6,575,278,720 (32 × 201,377,108
per block, 131,203,072 embedding, 8,192 final norm), which is what luminary's
``crystal-7b`` counts; ``test_crystal_7b_counts_what_the_released_shapes_give``
checks the sum. The 6,583,754,752 of CrystalCoder's params.yaml comment is
8,476,032 more, 2,069.3 rows of the hidden width: no tensor of the release has
that size (a learned position table would be 8,388,608), so the comment does
not describe the released weights.

Amber (``LLM360/Amber``) is a plain Llama folder with sharded pickle weights:
luminary reads it as it is (``allow_pickle``: ``torch.load(weights_only=True)``,
only the shards ``pytorch_model.bin.index.json`` names) and can write it as
safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, read_json, write_manifest
from luminary.core.locks import locked

BUFFERS = (".attn.bias", ".attn.masked_bias")  # GPT-2's causal-mask buffers, not weights
ROTARY = ("interleaved", "halves")


def crystal_config(raw: dict[str, Any], where: str, rotary: str = "interleaved"):
    """The :class:`CrystalConfig` of a CrystalCoder ``config.json``."""
    from luminary.models.crystal import CrystalConfig

    if rotary not in ROTARY:
        raise LuminaryError(f"--rotary: expected one of {', '.join(ROTARY)}, got {rotary!r}")
    if raw.get("model_type") != "crystalcoder":
        raise LuminaryError(f"{where}: model_type is {raw.get('model_type')!r}, not 'crystalcoder' "
                            "(a CrystalCoder release folder)")
    for key, want in (("activation_function", "swiglu"), ("position_embedding_type", "rotary")):
        if raw.get(key, want) != want:
            raise LuminaryError(f"{where}: {key} is {raw[key]!r}; luminary's crystal has {want}")
    try:
        d, heads = int(raw["n_embd"]), int(raw["n_head"])
        head_dim = d // heads
        return CrystalConfig(
            vocab_size=int(raw["vocab_size"]), hidden_size=d, intermediate_size=int(raw["n_inner"]),
            num_hidden_layers=int(raw["n_layer"]), num_attention_heads=heads,
            max_position_embeddings=int(raw["n_positions"]),
            rotary_pct=int(raw.get("rotary_dim", head_dim)) / head_dim, rope_theta=10000.0,
            rotary_interleaved=rotary == "interleaved", layer_norm_eps=float(raw.get("layer_norm_epsilon", 1e-5)),
            use_bias=True, embeddings_scale=float(raw.get("mup_embeddings_scale", 1.0)),
            width_scale=float(raw.get("mup_width_scale", 1.0)),
            output_logits_alpha=float(raw.get("mup_output_alpha", 1.0)),
            scale_qk_dot_by_d=bool(raw.get("mup_scale_qk_dot_by_d", False)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
            bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"),
            pad_token_id=raw.get("pad_token_id"),
        )
    except KeyError as exc:
        raise LuminaryError(f"{where}: a CrystalCoder config needs {exc.args[0]!r}") from None


def crystal_state_dict(get, keys: list[str], config, where: str) -> dict[str, torch.Tensor]:
    """luminary's crystal tensors from CrystalCoder's; every weight is used once and checked for shape."""
    d, f = config.hidden_size, config.intermediate_size
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in keys:
            raise LuminaryError(f"{where}: tensor {name} is missing")
        t = get(name)
        if tuple(t.shape) != shape:
            raise LuminaryError(f"{where}: {name} has shape {list(t.shape)}, config.json makes it {list(shape)}")
        used.add(name)
        return t

    out = {"model.embed_tokens.weight": take("transformer.wte.weight", (config.vocab_size, d))}
    for i in range(config.num_hidden_layers):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        qkv = take(src + "attn.c_attn.weight", (d, 3 * d)).t()  # Conv1D (in, out) -> Linear (out, in)
        qkv_bias = take(src + "attn.c_attn.bias", (3 * d,))
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[f"{dst}self_attn.{name}.weight"] = qkv[j * d:(j + 1) * d]
            out[f"{dst}self_attn.{name}.bias"] = qkv_bias[j * d:(j + 1) * d]
        out[f"{dst}self_attn.o_proj.weight"] = take(src + "attn.c_proj.weight", (d, d)).t()
        out[f"{dst}self_attn.o_proj.bias"] = take(src + "attn.c_proj.bias", (d,))
        for ours, theirs, shape in (("gate_proj", "c_fc2", (d, f)), ("up_proj", "c_fc", (d, f)),
                                    ("down_proj", "c_proj", (f, d))):
            out[f"{dst}mlp.{ours}.weight"] = take(f"{src}mlp.{theirs}.weight", shape).t()
            out[f"{dst}mlp.{ours}.bias"] = take(f"{src}mlp.{theirs}.bias", (shape[1],))
        for ours, theirs in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            for p in ("weight", "bias"):
                out[f"{dst}{ours}.{p}"] = take(f"{src}{theirs}.{p}", (d,))
    for p in ("weight", "bias"):
        out[f"model.norm.{p}"] = take(f"transformer.ln_f.{p}", (d,))
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = take("lm_head.weight", (config.vocab_size, d))
    left = [k for k in keys if k not in used and not k.endswith(BUFFERS)
            and not (config.tie_word_embeddings and k == "lm_head.weight")]
    if left:
        raise LuminaryError(f"{where}: tensor {left[0]} has no place in crystal ({len(left)} such)")
    return {k: v.contiguous() for k, v in out.items()}


def convert_crystalcoder(src: str | Path, out: str | Path, rotary: str = "interleaved",
                         allow_pickle: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Write the CrystalCoder folder ``src`` (a release checkpoint) as a luminary ``crystal`` folder ``out``."""
    from luminary.data.tokenizer import save_tokenizer
    from luminary.models.crystal import CrystalForCausalLM
    from luminary.models.loading import load_model
    from luminary.models.source import FolderWeights

    src, out = Path(src), Path(out)
    if not (src / "config.json").is_file():
        raise LuminaryError(f"{src}: no config.json (a CrystalCoder release folder)")
    config = crystal_config(read_json(src / "config.json"), f"{src}/config.json", rotary)
    weights = FolderWeights(src, allow_pickle=allow_pickle)
    state = crystal_state_dict(weights.get, weights.keys, config, str(src))
    with torch.device("meta"):
        model = CrystalForCausalLM(config)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    tokenizer = _tokenizer(src)
    with locked(out, "model folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp, model_max_length=config.max_position_embeddings)
        (tmp / "luminary_conversion.json").write_text(json.dumps(
            {"source": "LLM360 CrystalCoder (Hugging Face layout)", "from": src.name, "rotary": rotary}, indent=2)
            + "\n")
        load_model(tmp)  # the folder reads back before it takes the name
        write_manifest(tmp)
    return {"out": str(out), "parameters": sum(t.numel() for t in state.values() if t is not state.get("lm_head.weight")),
            "tensors": len(state), "rotary": rotary, "tokenizer": tokenizer is not None}


def convert_amber(src: str | Path, out: str | Path, allow_pickle: bool = False,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write LLM360's Amber (a Llama folder, pickle shards) as a safetensors Llama folder ``out``."""
    from luminary.data.tokenizer import save_tokenizer
    from luminary.models.loading import load_model

    src, out = Path(src), Path(out)
    raw = read_json(src / "config.json") if (src / "config.json").is_file() else None
    if raw is None or raw.get("model_type") != "llama":
        raise LuminaryError(f"{src}: expected a Llama folder (config.json with model_type 'llama'), as Amber is")
    model = load_model(src, allow_pickle=allow_pickle)
    tokenizer = _tokenizer(src)
    with locked(out, "model folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp, model_max_length=model.config.max_position_embeddings)
        load_model(tmp)
        write_manifest(tmp)
    return {"out": str(out), "parameters": sum(p.numel() for p in model.parameters()),
            "tokenizer": tokenizer is not None}


def _tokenizer(src: Path):
    """The folder's tokenizer (never remote code), or None when it ships none."""
    if not any((src / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        return None
    from luminary.models.loading import load_tokenizer

    return load_tokenizer(src)
