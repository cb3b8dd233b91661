"""LoRA through ``peft``: low-rank adapters trained, the base frozen; and merging them back.

W' = W + (alpha / r) · B A, with A: (r, in), B: (out, r), B zero at the start
(Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"). Only A
and B train; checkpoints hold the adapter alone in peft's format
(``adapter_model.safetensors`` + ``adapter_config.json``), so
``PeftModel.from_pretrained(base, folder)`` loads it. :func:`merge_adapter`
folds it back (``merge_and_unload``) into a plain ``save_pretrained`` folder.
Under torchrun (``deploy.dp``) FSDP2 shards the frozen base and the adapter alike; rank 0
writes the whole adapter, gathered. With ``deploy.tp`` the base's plan is carried onto the adapter
layers (``luminary.parallel.adapters``); with ``deploy.float8`` the frozen base layers multiply in
float8 and the adapter's stay in full precision (``luminary.train.float8.float8_layers``).

    luminary train examples/finetune-chat-lora.yaml --out runs/chat-lora
    luminary merge-lora runs/chat-lora --out runs/chat-lora-merged
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_json


class LoraConfig(Config):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = Field(
        "all-linear", description="module names (or 'all-linear': every linear layer but the output head)")


def _peft():
    try:
        import peft
    except ImportError:
        raise LuminaryError("train.lora: needs peft (pip install 'luminary[lora]')") from None
    return peft


def apply_lora(model: torch.nn.Module, config: LoraConfig) -> torch.nn.Module:
    """The model with LoRA adapters on ``target_modules``; every base weight frozen."""
    peft = _peft()
    lora = peft.LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                           target_modules=config.target_modules, task_type="CAUSAL_LM")
    try:
        return _adapter_model(model, lora)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise LuminaryError(f"lora.target_modules: {str(exc).splitlines()[0]}") from None


class _Loader:
    """``load_state_dict`` that also takes an adapter file's keys (the Trainer's resume reads the checkpoint's
    safetensors as they are: peft's names without the adapter name)."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        # ``state_dict``: ``Module.load_state_dict``'s own name (torch.distributed.checkpoint passes it by name)
        peft = _peft()
        own = self.state_dict().keys()
        if state_dict and all("lora_" in k for k in state_dict) and not set(state_dict) <= own:  # an adapter file
            result = peft.set_peft_model_state_dict(self, state_dict)  # renames, then calls this again
            missing = [k for k in own if "lora_" in k and k in result.missing_keys]
            return torch.nn.modules.module._IncompatibleKeys(missing, list(result.unexpected_keys))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def from_adapter_names(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An adapter file's tensors under this model's state-dict names (peft's with the adapter name),
        for loaders that match names themselves (a one-process checkpoint resumed under torchrun)."""
        adapter = f".{self.active_adapter}"
        names = {k.replace(adapter, ""): k for k in self.state_dict() if "lora_" in k}
        return {names.get(k, k): v for k, v in state.items()}


def _adapter_model(model: torch.nn.Module, lora: Any) -> torch.nn.Module:
    """peft's ``PeftModelForCausalLM`` with :class:`_Loader` (made here: peft is an optional import)."""
    cls = type("AdapterModel", (_Loader, _peft().PeftModelForCausalLM), {})
    return cls(model, lora)


def trainable_share(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def find_adapter(path: str | Path) -> Path:
    """An adapter folder, or a run folder (then its latest checkpoint)."""
    from luminary.core.runs import list_checkpoints

    path = Path(path)
    if (path / "adapter_config.json").is_file():
        return path
    found = list_checkpoints(path / "checkpoints") if (path / "checkpoints").is_dir() else []
    if found and (found[-1][1] / "adapter_config.json").is_file():
        return found[-1][1]
    raise LuminaryError(f"{path}: no adapter_config.json here nor in a checkpoint of this run folder")


def merge_adapter(adapter: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """Fold the adapter into its base and write a plain HF folder (safetensors, config, tokenizer).

    ``base``: the base model folder; default the one the adapter names (``base_model_name_or_path``),
    which for a run from a preset is the run's own ``base/`` folder.
    """
    from luminary.core.io import atomic_dir, write_manifest
    from luminary.core.locks import locked
    from luminary.models import load_model, load_tokenizer

    peft = _peft()
    folder = find_adapter(adapter)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LuminaryError(f"--out: {out} exists and is not empty")
    base = Path(base or read_json(folder / "adapter_config.json").get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise LuminaryError(f"--base: {base} is not a model folder (give --base)")
    model = load_model(base)  # luminary's loader: safetensors only, no remote code
    merged = peft.PeftModel.from_pretrained(model, folder).merge_and_unload()
    with locked(out, "model folder"), atomic_dir(out, overwrite=True) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        (tmp / "README.md").write_text(merged_card(folder, base), encoding="utf-8")
        tok_dir = folder if (folder / "tokenizer_config.json").is_file() else base
        if (tok_dir / "tokenizer_config.json").is_file():
            load_tokenizer(tok_dir).save_pretrained(tmp)
        write_manifest(tmp)
    return out


def merged_card(adapter: Path, base: Path) -> str:
    """The folded model's card: its base as the adapter's card names it (else the base folder), a finetune."""
    import yaml

    named = None
    card = adapter / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if text.startswith("---\n") and "\n---" in text[4:]:
            try:
                named = (yaml.safe_load(text[4:text.index("\n---", 4)]) or {}).get("base_model")
            except yaml.YAMLError:
                named = None
    bases = named if isinstance(named, list) and named else [str(base)]
    front = {"base_model": bases, "base_model_relation": "finetune", "library_name": "transformers",
             "pipeline_tag": "text-generation", "tags": ["luminary", "lora", "merged"]}
    return ("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n"
            f"# {bases[0]} with its LoRA adapter folded in\n\n"
            f"`luminary merge-lora` folded the adapter of `{adapter}` into its base (peft's `merge_and_unload`).\n")
