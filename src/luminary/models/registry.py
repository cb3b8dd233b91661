"""The architectures luminary registers with transformers' Auto classes.

One explicit list; ``import luminary`` runs :func:`register_all` once, after
which ``AutoModelForCausalLM.from_pretrained(folder)`` loads any of them with no
remote code. A test checks that every architecture luminary writes is here.
"""

from __future__ import annotations

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

# (model_type, module, config class, base model class, causal-LM class)
ARCHITECTURES: list[tuple[str, str, str, str | None, str]] = [
    ("crystal", "luminary.models.crystal", "CrystalConfig", "CrystalModel", "CrystalForCausalLM"),
    ("luminary_block_moe", "luminary.merge.mixture_models", "BlockMixtureConfig", None, "BlockMixtureForCausalLM"),
    ("luminary_model_moe", "luminary.merge.mixture_models", "ModelMixtureConfig", None, "ModelMixtureForCausalLM"),
]

_done = False


def register_all() -> None:
    global _done
    if _done:
        return
    _done = True
    for model_type, module_name, config_name, base_name, lm_name in ARCHITECTURES:
        module = importlib.import_module(module_name)
        config_cls = getattr(module, config_name)
        AutoConfig.register(model_type, config_cls, exist_ok=True)
        if base_name:
            AutoModel.register(config_cls, getattr(module, base_name), exist_ok=True)
        AutoModelForCausalLM.register(config_cls, getattr(module, lm_name), exist_ok=True)


register_all()
