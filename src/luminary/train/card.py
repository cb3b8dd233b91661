"""The model card of a ``luminary train`` checkpoint: Hugging Face front matter, then what was trained.

Front matter as the Hub reads it (``huggingface_hub.ModelCard``): ``base_model``
(the model the run started from, as the config names it; none for fresh
weights from a preset), ``base_model_relation`` (``finetune``, or ``adapter``
for LoRA checkpoints, which hold only the adapter), ``library_name``
(``peft`` for an adapter), ``pipeline_tag`` and ``tags``.
"""

from __future__ import annotations

from typing import Any

import yaml


def finetune_card(config: Any, step: int, fresh: bool, model_type: str | None = None) -> str:
    """``config``: the run's ``FinetuneConfig``; ``step``: the checkpoint's; ``fresh``: a preset (no base)."""
    lora = config.train.lora
    front: dict[str, Any] = {}
    if not fresh:
        front["base_model"] = [config.model]
        front["base_model_relation"] = "adapter" if lora else "finetune"
    front["library_name"] = "peft" if lora else "transformers"
    front["pipeline_tag"] = "text-generation"
    tags = ["luminary", "text-generation"] + (["lora"] if lora else []) + (["chat"] if config.data.format == "chat" else [])
    front["tags"] = tags + ([model_type] if model_type else [])
    what = "LoRA adapter" if lora else ("model" if fresh else "finetune")
    origin = f"trained from fresh `{config.model}` weights" if fresh else f"of `{config.model}`"
    t, o = config.train, config.optimizer
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {what.capitalize()} {origin}", "",
             f"Written by `luminary train` at step {step}.", "",
             "| setting | value |", "| --- | --- |",
             f"| data | `{config.data.path}` ({config.data.format}, {config.data.seq_len} tokens a sequence) |",
             f"| batch | {t.per_device_batch_size} a device × {t.accumulate_grad_batches} accumulated |",
             f"| optimizer | AdamW, lr {o.lr}, betas {tuple(o.betas)}, weight decay {o.weight_decay} |",
             f"| seed | {config.deploy.seed} |"]
    if lora:
        lines.append(f"| LoRA | r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout}, "
                     f"target modules {lora.target_modules} |")
    if lora:
        lines += ["", "Fold the adapter into its base with `luminary merge-lora CHECKPOINT --out FOLDER`."]
    return "\n".join(lines) + "\n"
