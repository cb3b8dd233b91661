"""The pretraining recipe: sources, phases, model, training, and the ``deploy:`` section.

A YAML file maps onto :class:`Recipe`; this module is the one place where its
defaults live (the deploy keys' own defaults live in ``luminary.core.deploy``;
a recipe only changes two of them: seed 1 and eight evenly spaced checkpoints,
as LLM360 releases them). ``examples/crystal-tiny.yaml`` mirrors Crystal's three phases.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, CheckpointPolicy, DeployConfig
from luminary.core.errors import LuminaryError
from luminary.data.sources import SourceConfig, check_source
from luminary.train.optim import OptimizerConfig
from luminary.train.schedules import ScheduleConfig


class TokenizerConfig(Config):
    path: str | None = Field(None, description="an existing tokenizer folder")
    vocab_size: int = Field(4096, ge=300, description="when training a byte-level BPE")
    sample_docs: int = Field(300, ge=1, description="documents per source to train the tokenizer on")
    min_frequency: int = Field(2, ge=1)


class FimConfig(Config):
    """A phase's fill-in-the-middle (``luminary.data.fim``). CrystalCoder's defaults: code sources
    only, documents permuted whole and the chunk cut or padded at its end."""

    rate: float = Field(0.0, ge=0, le=1)
    spm: float = Field(0.5, ge=0, le=1, description="share of FIM documents in SPM order")
    sources: Literal["code", "all"] | list[str] | dict[str, float] = Field(
        "code", description="which sources get FIM: 'code' (sources of kind code, CrystalCoder), 'all', "
        "a list of names (at rate), or a map name -> rate")
    truncate: Literal["chunk", "document"] = Field(
        "chunk", description="back to length: cut or pad the whole chunk at its end (CrystalCoder), "
        "or each document's suffix (bigcode Megatron's truncate_or_pad)")

    def rates(self, sources: dict[str, Any]) -> dict[str, float]:
        """The FIM rate of each source (by name) in this phase."""
        if isinstance(self.sources, dict):
            return {name: float(self.sources.get(name, 0.0)) for name in sources}
        if isinstance(self.sources, list):
            chosen = set(self.sources)
        elif self.sources == "all":
            chosen = set(sources)
        else:
            chosen = {name for name, source in sources.items() if source.kind == "code"}
        return {name: self.rate if name in chosen else 0.0 for name in sources}

    @model_validator(mode="after")
    def _rates(self):
        if isinstance(self.sources, dict):
            for name, rate in self.sources.items():
                if not (math.isfinite(rate) and 0 <= rate <= 1):
                    raise ValueError(f"sources.{name}: a FIM rate must lie in [0, 1], got {rate}")
        return self


class PhaseConfig(Config):
    name: str
    steps: int | None = Field(None, description="length in optimizer steps")
    tokens: int | None = Field(None, description="length in tokens (rounded up to whole steps)")
    weights: dict[str, float]
    fim: FimConfig = FimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    checkpoint_at_end: bool = Field(True, description="a checkpoint when the phase ends")

    @model_validator(mode="after")
    def _length(self):
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("give exactly one of steps or tokens")
        if (self.steps is not None and self.steps <= 0) or (self.tokens is not None and self.tokens <= 0):
            raise ValueError("a phase must have a positive length")
        for source, weight in self.weights.items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of '{source}' must be >= 0, got {weight}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("all weights are zero")
        return self


class ModelConfig(Config):
    preset: str = "crystal-tiny"
    overrides: dict[str, Any] = {}
    vocab_size: int | None = Field(None, ge=1, description="default: the tokenizer's size")


class PretrainTrainConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    global_batch: int = Field(16, ge=1, description="sequences per optimizer step")
    micro_batch: int = Field(16, ge=1, description="sequences per forward on one device")
    seq_len: int = Field(256, ge=8)
    optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3, betas=(0.9, 0.95), eps=1e-9, weight_decay=0.1)
    max_grad_norm: float | None = Field(1.0, gt=0)


class PretrainCheckpoints(CheckpointPolicy):
    """The deploy section's checkpoint policy; a recipe saves 8 times, evenly spaced, by default
    (``every: N`` given alone replaces that default rather than adding to it)."""

    moved_keys = {"phase_ends": "phases[i].checkpoint_at_end"}
    count: int | None = Field(8, ge=1, description="this many checkpoints, evenly spaced over the run (LLM360)")

    @model_validator(mode="before")
    @classmethod
    def _every_alone(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("every") is not None and "count" not in data:
            data = {**data, "count": None}
        return data


class PretrainDeploy(DeployConfig):
    seed: int = 1
    checkpoints: PretrainCheckpoints = Field(default_factory=PretrainCheckpoints)


class ValidationConfig(Config):
    samples_per_source: int = Field(16, ge=0)
    batch_size: int = Field(16, ge=1)


class Recipe(Config):
    moved_keys = MOVED_TO_DEPLOY
    name: str = "run"
    sources: dict[str, SourceConfig]
    tokenizer: TokenizerConfig = TokenizerConfig()
    data_dir: str | None = Field(None, description="token shards; default: RUN/data")
    model: ModelConfig = ModelConfig()
    train: PretrainTrainConfig = PretrainTrainConfig()
    phases: list[PhaseConfig]
    blend: Literal["tijdeman", "megatron"] = Field(
        "tijdeman", description="how a phase interleaves its sources: Tijdeman's rule (within one sample of "
        "the weights at every prefix) or Megatron's BlendedDataset order (to reproduce a Megatron run)")
    validation: ValidationConfig = ValidationConfig()
    deploy: PretrainDeploy = Field(default_factory=PretrainDeploy)
    completion_prompt: str | None = Field(None, description="printed with its completion at the end")

    @model_validator(mode="after")
    def _check(self):
        if not self.sources:
            raise ValueError("no sources")
        if not self.phases:
            raise ValueError("no phases")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError("phase names must be unique")
        return self


def upgrade_recipe(data: dict[str, Any]) -> dict[str, Any]:
    """A recipe as an older luminary wrote it into ``run.json``, in today's shape; others unchanged.

    Before the ``deploy:`` section, the seed, checkpoints and run settings sat under ``train``;
    before ``fim.sources``/``fim.truncate``, FIM went to every source and cut each document back
    to its length, so such a run resumes with exactly those settings."""
    data = json.loads(json.dumps(data))
    for phase in data.get("phases", []):
        fim = phase.get("fim")
        if isinstance(fim, dict) and fim.get("rate", 0) > 0 and "truncate" not in fim and "sources" not in fim:
            phase["fim"] = {**fim, "sources": "all", "truncate": "document"}
    if "deploy" in data:
        return data
    deploy: dict[str, Any] = {}
    if "seed" in data:
        deploy["seed"] = data.pop("seed")
    old = data.pop("checkpoints", None)
    phase_ends = old.pop("phase_ends", True) if old else True
    if old:
        deploy["checkpoints"] = {"count": old.get("count"), "every": old.get("every")}
    train = data.get("train", {})
    for key, new in (("mixed_precision", "precision"), ("compile", "compile"), ("tp_size", "tp"),
                     ("activation_checkpointing", "activation_checkpointing"), ("float8", "float8"),
                     ("fused_cross_entropy", "fused_cross_entropy")):
        if key in train:
            value = train.pop(key)
            deploy[new] = {"no": "fp32"}.get(value, value) if key == "mixed_precision" else value
    for phase in data.get("phases", []):
        phase.setdefault("checkpoint_at_end", phase_ends)
    data["deploy"] = deploy
    return data


def check_recipe(recipe: Recipe, source_file: str = "recipe") -> None:
    """Checks that need the whole recipe; errors name the field."""
    t = recipe.train
    if t.global_batch % t.micro_batch:
        raise LuminaryError(f"{source_file}: train.global_batch {t.global_batch} is not a multiple of "
                            f"train.micro_batch {t.micro_batch}")
    for i, phase in enumerate(recipe.phases):
        for source in phase.weights:
            if source not in recipe.sources:
                raise LuminaryError(f"{source_file}: phases[{i}].weights.{source}: unknown source "
                                    f"(sources are: {', '.join(recipe.sources)})")
        if isinstance(phase.fim.sources, (list, dict)):
            for source in phase.fim.sources:
                if source not in recipe.sources:
                    raise LuminaryError(f"{source_file}: phases[{i}].fim.sources.{source}: unknown source "
                                        f"(sources are: {', '.join(recipe.sources)})")
        if i == 0 and (phase.schedule.kind == "continue" or phase.schedule.peak_lr == "continue"):
            raise LuminaryError(f"{source_file}: phases[0].schedule: 'continue' needs a previous phase")
    for name, source in recipe.sources.items():
        check_source(name, source)
    # the model's config is cheap: a bad preset, override or mesh is refused before any data is prepared
    from luminary.models.presets import build_config
    from luminary.parallel.plan import check_heads

    try:
        config = build_config(recipe.model.preset, recipe.model.vocab_size or 1, **recipe.model.overrides)
        if recipe.deploy.tp > 1:  # before any process group starts: a bad mesh never costs a rendezvous
            check_heads(config, recipe.deploy.tp)
    except LuminaryError as exc:
        raise LuminaryError(f"{source_file}: {exc}") from None
    vocab = recipe.model.vocab_size
    if vocab is not None:
        needed = tokenizer_size(recipe.tokenizer)
        if needed > vocab:
            raise LuminaryError(f"{source_file}: model.vocab_size: {vocab} does not fit the tokenizer's "
                                f"{needed} tokens")


def tokenizer_size(config: TokenizerConfig) -> int:
    """Tokens the recipe's tokenizer will have (read from its folder, or the size to train)."""
    if config.path is None:
        return config.vocab_size
    from transformers import AutoTokenizer

    folder = Path(config.path)
    if not (folder / "tokenizer.json").is_file():
        raise LuminaryError(f"tokenizer.path: {folder} has no tokenizer.json")
    return len(AutoTokenizer.from_pretrained(str(folder)))


def phase_steps(recipe: Recipe) -> list[int]:
    tokens_per_step = recipe.train.global_batch * recipe.train.seq_len
    return [p.steps if p.steps is not None else math.ceil(p.tokens / tokens_per_step) for p in recipe.phases]
