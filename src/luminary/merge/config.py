"""The merge config: mergekit's YAML schema, plus a few luminary fields.

A mergekit config for the methods luminary implements runs unchanged
(``luminary merge --mergekit-config FILE``)::

    merge_method: ties
    base_model: models/base
    models:
      - model: models/math
        parameters: {weight: 0.5, density: [1, 0.7, 0.1]}   # a gradient over layers
      - model: models/code
        parameters:
          weight: [{filter: self_attn, value: 0.3}, {value: 0.6}]
    parameters: {normalize: true}
    dtype: float32

``slices`` (layer ranges per source, for frankenmerges and per-slice
parameters) and ``modules`` (per-module models or slices of a multi-module
model, ``luminary.merge.architectures``) are read as mergekit reads them. luminary adds ``seed`` (DARE's
Bernoulli masks), ``max_shard_size`` and ``device``; a model path that does not
exist relative to the working folder is looked up beside the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from luminary.core.config import Config, read_yaml, validate
from luminary.core.errors import LuminaryError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

Parameters = dict[str, Any]


class InputModel(Config):
    model: str
    parameters: Parameters | None = None


class InputSlice(Config):
    model: str
    layer_range: tuple[int, int]
    parameters: Parameters | None = None

    @field_validator("layer_range")
    @classmethod
    def _ordered(cls, value):
        if not 0 <= value[0] < value[1]:
            raise ValueError(f"layer_range {list(value)} must be [start, end) with 0 <= start < end")
        return value


class OutputSlice(Config):
    sources: list[InputSlice] = Field(min_length=1)
    base_model: str | None = None
    # mergekit 0.1.5 declares it on its output slices and reads it nowhere: accepted, no effect
    residual_weight: float | None = None
    parameters: Parameters | None = None


class OutputModule(Config):
    """One entry of mergekit's ``modules``: a module's own models or slices, and its parameters
    (looked up after the slice's and before the top level's). luminary adds ``merge_method``: this
    module's own method (mergekit has one method for all modules; the default is the top level's)."""

    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
    parameters: Parameters | None = None
    merge_method: str | None = None

    @model_validator(mode="after")
    def _inputs(self):
        if bool(self.models) == bool(self.slices):
            raise ValueError("a module gives exactly one of 'models' or 'slices'")
        return self


class ModelTokenEmbedding(Config):
    kind: Literal["model_token"]
    model: str
    token_id: int | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.token_id is None) == (self.token is None):
            raise ValueError("model_token: give exactly one of 'token' or 'token_id'")
        return self


class ZeroEmbedding(Config):
    kind: Literal["zero"]


class TokenEmbedding(Config):
    """mergekit's per-token embedding rule: where the row of a token comes from when some input
    lacks it (or always, with ``force``)."""

    source: ModelTokenEmbedding | ZeroEmbedding | str | None = None
    force: bool = False


class TokenizerConfig(Config):
    source: str = "union"  # mergekit's default
    tokens: dict[str, TokenEmbedding] | None = None
    # embedding and head rows padded up to a multiple (rows past the tokens: each model's mean row,
    # as mergekit pads); 0 or None: no padding
    pad_to_multiple_of: int | None = None

    @field_validator("pad_to_multiple_of")
    @classmethod
    def _non_negative(cls, value):
        if value is not None and value < 0:
            raise ValueError(f"must be a positive number of rows (got {value})")
        return value


class MergeConfig(Config):
    merge_method: str
    base_model: str | None = None
    models: list[InputModel] | None = None
    slices: list[OutputSlice] | None = None
    modules: dict[str, OutputModule] | None = None
    parameters: Parameters | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    tokenizer: TokenizerConfig | None = None
    chat_template: str | None = None
    # luminary
    seed: int = 0
    max_shard_size: int = Field(5 * 10**9, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"

    @field_validator("dtype", "out_dtype")
    @classmethod
    def _dtype(cls, value):
        if value is not None and value not in DTYPES:
            raise ValueError(f"unknown dtype '{value}' (known: {', '.join(DTYPES)})")
        return value

    @model_validator(mode="after")
    def _inputs(self):
        if sum(map(bool, (self.models, self.slices, self.modules))) != 1:
            raise ValueError("give exactly one of 'models', 'slices' or 'modules'")
        if self.tokenizer_source and self.tokenizer:
            raise ValueError("give 'tokenizer_source' or 'tokenizer', not both")
        return self

    def module_groups(self) -> dict[str, OutputModule]:
        """The config's inputs by module name: ``modules`` as given, or the top-level ``models`` or
        ``slices`` as the one module ``default`` (the planner gives top-level ``models`` to every
        module of a multi-module architecture, as mergekit does)."""
        if self.modules:
            return dict(self.modules)
        return {"default": OutputModule.model_construct(models=self.models, slices=self.slices, parameters=None,
                                                        merge_method=None)}

    @property
    def vocab_source(self) -> str | None:
        return self.tokenizer.source if self.tokenizer else self.tokenizer_source

    def referenced_models(self) -> list[str]:
        seen: list[str] = []
        names = [self.base_model] if self.base_model else []
        groups = [(self.models, self.slices)] + [(m.models, m.slices) for m in (self.modules or {}).values()]
        for models, slices in groups:
            names += [m.model for m in models or []]
            names += [s.model for out in slices or [] for s in out.sources]
            names += [out.base_model for out in slices or [] if out.base_model]
        for name in names:
            if name not in seen:
                seen.append(name)
        return seen


def load_merge_config(path: str | Path) -> MergeConfig:
    """Read a merge YAML; model paths are resolved (working folder first, then beside the file)."""
    path = Path(path)
    config = validate(MergeConfig, read_yaml(path), str(path))
    return resolve_paths(config, path.parent)


def locate(name: str, folder: Path) -> str:
    """``name`` as given if it exists (or nothing does), else beside the config file in ``folder``."""
    if Path(name).exists() or not (folder / name).exists():
        return name
    return str(folder / name)


def locate_zoo_paths(config: Config, folder: Path) -> dict:
    """``config`` dumped, with its ``models``, ``base_model`` and evaluator file located from ``folder``
    (search and glue configs share these fields)."""
    fix = lambda name: locate(name, folder)
    data = config.model_dump()
    data["models"] = [fix(m) for m in data["models"]]
    if data["evaluator"] and data["evaluator"]["path"]:
        data["evaluator"]["path"] = fix(data["evaluator"]["path"])
    data["base_model"] = fix(data["base_model"]) if data["base_model"] else None
    return data


def resolve_paths(config: MergeConfig, folder: Path) -> MergeConfig:
    fix = lambda name: locate(name, folder)

    data = config.model_dump()
    if data["base_model"]:
        data["base_model"] = fix(data["base_model"])
    for group in [data] + list((data["modules"] or {}).values()):
        for m in group["models"] or []:
            m["model"] = fix(m["model"])
        for out in group["slices"] or []:
            out["base_model"] = fix(out["base_model"]) if out["base_model"] else None
            for s in out["sources"]:
                s["model"] = fix(s["model"])
    if data["tokenizer_source"] not in (None, "base", "union"):
        data["tokenizer_source"] = fix(data["tokenizer_source"])
    if data["tokenizer"] and data["tokenizer"]["source"] not in ("base", "union"):
        data["tokenizer"]["source"] = fix(data["tokenizer"]["source"])
    for rule in ((data["tokenizer"] or {}).get("tokens") or {}).values():
        if isinstance(rule["source"], str):
            rule["source"] = fix(rule["source"])
        elif isinstance(rule["source"], dict) and "model" in rule["source"]:
            rule["source"]["model"] = fix(rule["source"]["model"])
    return MergeConfig.model_validate(data)


def torch_dtype(name: str | None) -> torch.dtype | None:
    return DTYPES[name] if name else None


def require_folder(name: str, what: str) -> Path:
    path = Path(name)
    if not path.is_dir():
        raise LuminaryError(f"{what}: model folder '{name}' not found (luminary reads local folders only)")
    return path
