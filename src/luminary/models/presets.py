"""Model families and presets, from a debug flavour to the published sizes.

A preset is a family plus config values; ``luminary.models.build_model``
makes a model with random weights from a preset name and a vocabulary size.
Tiny presets let every recipe, plan and merge run on the CPU in seconds.
"""

from __future__ import annotations

import functools
from difflib import get_close_matches
from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel

from luminary.core.errors import LuminaryError
from luminary.models.crystal import CrystalConfig, CrystalForCausalLM

FAMILIES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "crystal": (CrystalConfig, CrystalForCausalLM),
}

PRESETS: dict[str, dict[str, Any]] = {
    # Crystal: μP width scale = 256 / hidden (CrystalCoder: 256 / 4096 = 0.0625)
    "crystal-debug": dict(family="crystal", hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=256, width_scale=1.0),
    "crystal-tiny": dict(family="crystal", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, max_position_embeddings=512, width_scale=1.0),
    "crystal-7b": dict(family="crystal", hidden_size=4096, intermediate_size=10922, num_hidden_layers=32,
                       num_attention_heads=32, max_position_embeddings=2048, width_scale=0.0625),
    "llama-debug": dict(family="llama", hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256),
    "llama-tiny": dict(family="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512),
    "llama-124m": dict(family="llama", hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=2048),
    "llama-1b": dict(family="llama", hidden_size=2048, intermediate_size=5504, num_hidden_layers=16,
                     num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048),
}


def build_config(preset: str, vocab_size: int, **overrides: Any) -> PretrainedConfig:
    """A config from a preset name (``crystal-tiny``) or a family name (``llama``)."""
    if preset in PRESETS:
        values = dict(PRESETS[preset])
        family = values.pop("family")
    elif preset in FAMILIES:
        family, values = preset, {}
    else:
        known = ", ".join(sorted(PRESETS) + sorted(FAMILIES))
        raise LuminaryError(f"model: unknown preset or family '{preset}' (known: {known})")
    config_cls, _ = FAMILIES[family]
    check_override_names(config_cls, overrides)
    values.update(overrides)
    values["vocab_size"] = vocab_size
    config = config_cls(**values)
    check_heads(config)
    return config


@functools.cache
def _config_keys(config_cls: type[PretrainedConfig]) -> frozenset[str]:
    return frozenset(config_cls().to_dict()) | frozenset(getattr(config_cls, "attribute_map", {}))


def check_override_names(config_cls: type[PretrainedConfig], overrides: dict[str, Any]) -> None:
    """transformers configs keep any keyword as an attribute, so a misspelt override
    ('num_hiden_layers') would be stored and never read; refuse names the config does not have."""
    known = _config_keys(config_cls)
    for key in overrides:
        if key not in known:
            close = get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise LuminaryError(f"model.overrides.{key}: not a field of {config_cls.__name__}{hint}")


def check_heads(config: PretrainedConfig) -> None:
    heads = getattr(config, "num_attention_heads", None)
    if heads and config.hidden_size % heads:
        raise LuminaryError(
            f"model: hidden_size {config.hidden_size} is not divisible by num_attention_heads {heads}"
        )


def check_context(config: PretrainedConfig, seq_len: int, field: str) -> None:
    """Refuse sequences longer than the model's position limit (``max_position_embeddings``, GPT-2's
    ``n_positions``): a learned position table has no row for them, and a rotary model was not built for them."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and seq_len > limit:
        raise LuminaryError(f"{field}: {seq_len} is above the model's max_position_embeddings ({limit}); "
                            f"lower it, or raise max_position_embeddings in the model's config")
