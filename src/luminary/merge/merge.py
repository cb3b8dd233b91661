"""``run_merge`` and the one writer of every merged folder (merges, stacks, mixtures).

Every output goes the same way: a plan of one small task per output tensor
(``luminary.merge.plan``), run tensor by tensor by the executor, written by
:func:`write_folder` into a temporary folder that is renamed into place whole:
the weights (sharded safetensors), ``config.json``, the generation config and
tokenizer of the reference model (or the joined vocabulary's), the files that
record how it was made (``merge_config.yaml``, ``mixture_config.json``), the
Hub model card ``README.md`` (``luminary.merge.card``) and ``MANIFEST.sha256``. The shards' digests are computed while they are written,
so the manifest costs no second read.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from luminary.core.io import MANIFEST, atomic_dir, atomic_write_text, remote_code_files, sha256_file
from luminary.core.locks import locked
from luminary.core.progress import info
from luminary.merge.card import as_given, model_card
from luminary.merge.chat_templates import resolve_chat_template
from luminary.merge.config import MergeConfig
from luminary.merge.executor import execute
from luminary.merge.methods import get_method
from luminary.merge.plan import MergePlan, build_plan
from luminary.merge.tensorio import StreamingWriter
from luminary.merge.vocab import write_tokenizer
from luminary.merge.zoo import open_models

CARD = "README.md"
DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16",
               "torch.float64": "float64"}


def output_config(plan: MergePlan) -> dict[str, Any]:
    config = json.loads(json.dumps(plan.models[plan.reference].config))  # a deep copy
    if plan.layer_counts is not None:  # a multi-module model: each merged module's own count
        for path, n in plan.layer_counts.items():
            *parents, key = path.split(".")
            node = config
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node[key] = n
    else:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if key in config:
                config[key] = plan.num_layers
                break
    if plan.vocab is not None:
        # where the reference's config keeps it: a vision-language model's under text_config
        text = config.get("text_config")
        nested = isinstance(text, dict) and "vocab_size" in text
        if nested:
            text["vocab_size"] = plan.vocab.size
        if "vocab_size" in config or not nested:
            config["vocab_size"] = plan.vocab.size
    dtype = DTYPE_NAMES[str(plan.out_dtype)]
    for key in ("torch_dtype", "dtype"):
        if key in config:
            config[key] = dtype
    return config


def write_folder(out: str | Path, plan: MergePlan, config_json: dict[str, Any], tokenizer_from: Path,
                 added_tokens: Sequence[Any] = (), chat_template: str | None = None,
                 files: dict[str, str] | None = None, max_shard_size: int = 5 * 10**9, overwrite: bool = False,
                 description: str = "merging", card: str | None = None, copy_tokenizer: bool = True) -> Path:
    """Run ``plan`` into the folder ``out``, written whole or not at all (see the module docstring).

    ``card``: the text of ``README.md`` (see ``luminary.merge.card``); ``copy_tokenizer=False``
    leaves the tokenizer out, unless the merge built its own (a joined vocabulary), as mergekit does."""
    ref = plan.models[plan.reference]
    config_json = dict(config_json)  # a pad token id may be added: the caller's copy stays as it was
    entries = [(t.name, t.out_dtype or plan.out_dtype, t.shape) for t in plan.tasks]
    with locked(out, "merge output"), atomic_dir(out, overwrite=overwrite) as tmp:
        if (ref.path / "generation_config.json").is_file():
            shutil.copy2(ref.path / "generation_config.json", tmp / "generation_config.json")
        if copy_tokenizer or plan.vocab is not None:
            write_tokenizer(tmp, tokenizer_from, list(added_tokens), chat_template)
            carry_pad_token(tmp, config_json)
        elif chat_template:
            info("[yellow]warning:[/yellow] chat_template is not written: the tokenizer is not copied "
                 "(--no-copy-tokenizer)")
        (tmp / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
        if "auto_map" in config_json:  # the architecture's own code (Crystal's), so it loads without luminary
            for path in remote_code_files(ref.path):
                shutil.copy2(path, tmp / path.name)
        writer = StreamingWriter(tmp, entries, max_shard_size)
        try:
            execute(plan, writer.write, description)
            writer.finish()
        finally:
            writer.abort()
        for name, text in {**(files or {}), **({CARD: card} if card is not None else {})}.items():
            (tmp / name).write_text(text, encoding="utf-8")
        write_manifest_with(tmp, writer.sha256)
    return Path(out)


def carry_pad_token(folder: Path, config_json: dict[str, Any]) -> None:
    """The written tokenizer's pad token id into ``config_json`` and ``generation_config.json`` where
    they leave it null (issue 25: batched generation and lm-eval read it from there). mergekit keeps
    the reference's null; an id the config already sets is kept."""
    if config_json.get("pad_token_id") is not None:
        return
    tokenizer_config = folder / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        return
    from luminary.models.loading import load_tokenizer

    pad = load_tokenizer(folder).pad_token_id
    if pad is None or pad >= int(config_json.get("vocab_size") or pad + 1):
        return
    config_json["pad_token_id"] = int(pad)
    generation = folder / "generation_config.json"
    if generation.is_file():
        data = json.loads(generation.read_text(encoding="utf-8"))
        if data.get("pad_token_id") is None:
            data["pad_token_id"] = int(pad)
            atomic_write_text(generation, json.dumps(data, indent=2) + "\n")


def write_manifest_with(folder: Path, known: dict[str, str]) -> None:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            lines.append(f"{known.get(rel) or sha256_file(path)}  {rel}")
    atomic_write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def merge_card(config: MergeConfig, out: str | Path, config_text: str | None = None) -> str:
    """The model card of a merge: its models and config as given (``config_text``, the YAML file's
    text) or, without the text, as ``config`` holds them."""
    given, config_text = as_given(config, config_text)
    base = given.base_model if get_method(config.merge_method).base != "ignored" else None
    return model_card(Path(out).name, config.merge_method, given.referenced_models(), config_text,
                      folders=config.referenced_models(), base_model=base)


def run_merge(config: MergeConfig, out: str | Path, overwrite: bool = False, *, allow_crimes: bool = False,
              copy_tokenizer: bool = True, write_card: bool = True, config_text: str | None = None) -> dict[str, Any]:
    """Merge as ``config`` says into the folder ``out``; returns a small summary.

    ``allow_crimes``: merge models whose architecture names differ (their tensors must still match);
    ``copy_tokenizer``, ``write_card``: mergekit-yaml's ``--copy-tokenizer``, ``--write-model-card``;
    ``config_text``: the config file as given, for the card."""
    start = time.perf_counter()
    models = open_models(config.referenced_models())
    try:
        plan = build_plan(config, models, allow_crimes=allow_crimes)
        chat_template = resolve_chat_template(config.chat_template,
                                              [models[n].path for n in config.referenced_models()])
        recorded = yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)
        card = merge_card(config, out, config_text) if write_card else None
        write_folder(out, plan, output_config(plan), plan.vocab.tokenizer_from if plan.vocab else
                     plan.models[plan.reference].path, plan.vocab.added_tokens if plan.vocab else (),
                     chat_template, {"merge_config.yaml": recorded}, config.max_shard_size, overwrite,
                     card=card, copy_tokenizer=copy_tokenizer)
    finally:
        for m in models.values():
            m.close()
    return {"out": str(out), "method": config.merge_method, "tensors": len(plan.tasks), "layers": plan.num_layers,
            "seconds": round(time.perf_counter() - start, 3), "device": plan.device}
