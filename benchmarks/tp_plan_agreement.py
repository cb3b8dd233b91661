"""luminary's automatic tensor-parallel plans against the ones transformers' authors wrote by hand.

For every config class in the installed transformers that defines
``base_model_tp_plan``: shrink the config (two layers, small hidden size,
small vocabulary, few experts), build the base model with random weights,
derive ``luminary.parallel.auto_plan(model, tp)`` and compare it with the
hand-written plan module by module. Styles are compared by what they split:

- column: colwise, colwise_gather_output, colwise_rep, packed_colwise (ours: colwise*, any output);
- row: rowwise, rowwise_split_input, rowwise_rep, packed_rowwise;
- vocab: embedding_rowwise; whole: replicate, replicated_with_grad_allreduce, mla_kv_a_proj;
- experts: moe_tp_experts (ours: an expert bank split, its parameters column and row as above);
- anything else (local_params, embedding_colwise, all_reduce ...) is its own kind.

Each module the hand-written plan names falls in one of four classes, and
the headline ``agreement`` counts only the first:

- ``split_as_hand``: split (or kept whole) as the hand-written plan does, and
  where it is an attention projection, its heads really split (local outputs);
- ``attention_whole``: split the same way, but its output kept as a DTensor
  (``colwise_dtensor``) because the model code needs global shapes: the weight
  is split, attention itself runs on all heads on every rank;
- ``gathered_where_hand_splits``: left whole where the hand-written plan splits it;
- ``other``: split another way (column where the hand plan has row, ...).

Configs that cannot be built tiny and offline, or whose base model does not
take token ids, are skipped, counted and listed. Prints ONE JSON object.

    PYTHONPATH=src python benchmarks/tp_plan_agreement.py            # all (a few minutes on 2 cores)
    PYTHONPATH=src python benchmarks/tp_plan_agreement.py --only llama,qwen3 --tp 4
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

KIND = {
    "colwise": "column", "colwise_gather_output": "column", "colwise_rep": "column", "packed_colwise": "column",
    "local_colwise": "column",
    "rowwise": "row", "rowwise_split_input": "row", "rowwise_rep": "row", "packed_rowwise": "row",
    "local_rowwise": "row",
    "embedding_rowwise": "vocab",
    "replicate": "whole", "replicated_with_grad_allreduce": "whole", "mla_kv_a_proj": "whole",
    "moe_tp_experts": "experts",
}
OURS = {"colwise": "column", "colwise_dtensor": "column", "colwise_gather": "column", "colwise_packed2": "column",
        "colwise_packed3": "column", "rowwise": "row",
        "vocab_embedding": "vocab", "replicate": "whole", "experts": "experts"}

SHRINK = {
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2, "num_decoder_layers": 2,
    "hidden_size": 64, "n_embd": 64, "d_model": 64,
    "intermediate_size": 128, "ffn_dim": 128, "n_inner": 128, "d_ff": 128, "ffn_hidden_size": 128,
    "moe_intermediate_size": 48, "shared_expert_intermediate_size": 64, "expert_intermediate_size": 32,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "num_key_value_heads": 2, "n_kv_heads": 2,
    "head_dim": 16, "kv_channels": 16,
    "vocab_size": 512, "max_position_embeddings": 128, "n_positions": 128,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "moe_topk": 2, "n_group": 1, "topk_group": 1, "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "q_lora_rank": 32, "kv_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16,
    "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
    "sliding_window": 32, "rotary_dim": 8,
}
MAX_PARAMS = 20_000_000
TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id")


def configs_with_plans() -> list[tuple[str, type]]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    found = []
    for model_type in sorted(CONFIG_MAPPING.keys()):
        try:
            cls = CONFIG_MAPPING[model_type]
        except Exception:  # noqa: BLE001 - a config whose module fails to import
            continue
        if getattr(cls, "base_model_tp_plan", None):
            found.append((model_type, cls))
    return found


def shrink(cls: type):
    """The config class with small sizes (only the fields it has)."""
    defaults = cls()
    kwargs = {k: v for k, v in SHRINK.items() if hasattr(defaults, k) and not _derived(cls, k)}
    if "qk_rope_head_dim" in kwargs:  # multi-head latent attention derives its head_dim from the rope part
        kwargs.pop("head_dim", None)
    n_layers = next((kwargs[k] for k in ("num_hidden_layers", "num_layers", "n_layer", "n_layers") if k in kwargs), 2)
    for key in ("layer_types", "block_types", "layers_block_type"):
        value = getattr(defaults, key, None)
        if _derived(cls, key):
            continue
        if isinstance(value, (list, tuple)) and value:
            kinds = list(dict.fromkeys(value))  # one of each kind, as far as the layers go
            kwargs[key] = (kinds + list(value))[:n_layers]
    config = cls(**kwargs)
    for key in TOKEN_FIELDS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value >= kwargs.get("vocab_size", 10**9):
            setattr(config, key, 1)
    return config


def _derived(cls: type, key: str) -> bool:
    """A read-only property computed from other fields (it cannot be passed in)."""
    return isinstance(getattr(cls, key, None), property)


def reference_plan(model, plan: dict[str, str]) -> dict[str, str]:
    """The hand-written plan expanded over the tiny model's module and parameter names."""
    names = [n for n, _ in model.named_modules() if n] + [n for n, _ in model.named_parameters()]
    out = {}
    for pattern, style in plan.items():
        for name in names:
            if fnmatch.fnmatchcase(name, pattern) and name.count(".") == pattern.count("."):
                out[name] = style
    return out


def compare(model_type: str, cls: type, tp: int) -> dict:
    from transformers import AutoModel

    from luminary.parallel import auto_plan

    config = shrink(cls)
    with torch.device("meta"):  # count first: a sub-model this script does not shrink may be huge
        size = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    if size > MAX_PARAMS:
        raise ValueError(f"{size:,} parameters after shrinking (a part this script does not shrink)")
    torch.manual_seed(0)
    model = AutoModel.from_config(config).eval()
    ref = reference_plan(model, cls.base_model_tp_plan)
    if not ref:
        raise ValueError("the hand-written plan names no module of the tiny model")
    ours = auto_plan(model, tp).entries
    rows = []
    for name, style in ref.items():
        mine, why = ours_for(ours, name)
        rows.append({"module": name, "theirs": style, "ours": mine, "class": classify(style, mine, ours.get(name)),
                     "why": why})
    return {"architecture": model_type, "modules": rows}


def classify(theirs: str, mine: str, entry) -> str:
    """Which of the four classes of the module docstring a module falls in."""
    kind = KIND.get(theirs, theirs)
    if kind == mine:
        return "attention_whole" if entry is not None and entry.style == "colwise_dtensor" else "split_as_hand"
    if mine == "whole" and kind in ("column", "row", "vocab", "experts"):
        return "gathered_where_hand_splits"
    return "other"


def ours_for(entries: dict, name: str) -> tuple[str, str]:
    """What luminary's plan does to a module, or to a parameter of an expert bank."""
    if name in entries:
        return OURS[entries[name].style], entries[name].reason
    owner, _, param = name.rpartition(".")
    e = entries.get(owner)
    if e is not None and e.kind == "experts":
        if e.style != "experts" or param not in (e.split or {}):
            return "whole", e.reason
        # transformers names a 3-D parameter's style by the stored dimension it splits:
        # colwise = dimension 1 (-2), rowwise = dimension 2 (-1), whatever the layout (Llama 4 stores (E, in, out))
        return ("column" if e.split[param][0] == 1 else "row"), e.reason
    return "whole", "not a Linear, Conv1D, Embedding or expert bank: left whole"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated model types")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    only = set(filter(None, args.only.split(",")))
    compared, skipped = [], []
    for model_type, cls in configs_with_plans():
        if only and model_type not in only:
            continue
        try:
            compared.append(compare(model_type, cls, args.tp))
        except Exception as exc:  # noqa: BLE001 - counted and listed, never hidden
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            skipped.append({"architecture": model_type, "reason": f"{type(exc).__name__}: {first}"})
        print(f"{model_type}", file=sys.stderr, flush=True)
    rows = [r for c in compared for r in c["modules"]]
    classes = ("split_as_hand", "attention_whole", "gathered_where_hand_splits", "other")
    counts = {k: sum(r["class"] == k for r in rows) for k in classes}
    result = {
        "benchmark": "tp_plan_agreement",
        "tp_size": args.tp,
        "architectures": len(compared),
        "modules": len(rows),
        "agreeing_modules": counts["split_as_hand"],
        "agreement": counts["split_as_hand"] / len(rows) if rows else 0.0,
        "classes": counts,
        "architectures_in_full_agreement": sum(all(r["class"] == "split_as_hand" for r in c["modules"])
                                               for c in compared),
        "per_architecture": {c["architecture"]: {k: sum(r["class"] == k for r in c["modules"]) for k in classes}
                             for c in compared},
        "disagreements": [{"architecture": c["architecture"], **r} for c in compared for r in c["modules"]
                          if r["class"] != "split_as_hand"],
        "skipped": len(skipped),
        "skipped_architectures": skipped,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
