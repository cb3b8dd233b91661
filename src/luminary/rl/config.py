"""The YAML config of ``luminary rl train``: one place for every default.

Defaults follow Guo et al. (2022) and their published commands: mixed mode,
the average of the single- and multi-step losses, shaping onto [−50, 50],
Polyak τ = 0.001, top-k 50 sampling, Adam lr 1e-3, gradient clip 5, beam
search (10) when decoding for evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from luminary.core.config import Config
from luminary.core.deploy import MOVED_TO_DEPLOY, DeployConfig
from luminary.train.finetune import TrainLoopConfig
from luminary.train.optim import OptimizerConfig
from luminary.train.schedules import ScheduleConfig


class PolicyConfig(Config):
    model: str = Field(description="a causal-LM or seq2seq folder, or a luminary preset (then give tokenizer)")
    tokenizer: str | None = None
    prompt_format: str | None = Field(None, description="the causal LM's prompt with {source}; default: the "
                                      "folder's own (a luminary policy keeps it), else '{source}'")
    append_eos: bool = True
    allow_pickle: bool = False


class InlineExample(Config):
    source: str
    target: str | None = None


class DataConfig(Config):
    path: str | None = Field(None, description="JSONL with a source (and optionally a target) field per line")
    source_field: str = "source"
    target_field: str = "target"
    examples: list[str | InlineExample] | None = Field(None, description="inline: sources, or {source, target}")
    eval_fraction: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.examples is None):
            raise ValueError("give exactly one of data.path and data.examples")
        return self


class RewardConfig(Config):
    kind: Literal["bleu", "classifier", "lm_nll", "repetition", "python"]
    weight: float = 1.0
    name: str | None = Field(None, description="shown in errors; default: the kind")
    reference: str = Field("target", description="bleu: 'target', 'source' or a fixed text")
    model: str | None = Field(None, description="classifier / lm_nll: a model folder")
    label: int | str = Field(0, description="classifier: the class index or name whose probability is the reward")
    pair: bool = Field(False, description="classifier: score (source, text) pairs, as an NLI model")
    n: int = Field(1, ge=1, description="repetition: the n-gram order")
    function: str | None = Field(None, description="python: 'module:function' or 'file.py:function'")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind in ("classifier", "lm_nll") and not self.model:
            raise ValueError(f"reward kind '{self.kind}' needs 'model'")
        if self.kind == "python" and not self.function:
            raise ValueError("reward kind 'python' needs 'function'")
        return self

    def arguments(self) -> dict:
        """Keyword arguments of the reward's builder in ``REWARDS``."""
        return {
            "bleu": {"reference": self.reference},
            "classifier": {"model": self.model, "label": self.label, "pair": self.pair},
            "lm_nll": {"model": self.model},
            "repetition": {"n": self.n},
            "python": {"function": self.function},
        }[self.kind]


class ShapingConfig(Config):
    min: float = -50.0
    max: float = 50.0

    @model_validator(mode="after")
    def _ordered(self):
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be smaller than max ({self.max})")
        return self


class SamplingConfig(Config):
    max_new_tokens: int = Field(32, ge=1)
    top_k: int = Field(50, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)


class BehaviourConfig(SamplingConfig):
    model: str = Field(description="a generator folder whose sampled outputs are the off-policy actions")
    allow_pickle: bool = False


class TargetConfig(Config):
    update: Literal["polyak", "copy"] = "polyak"
    tau: float = Field(0.001, gt=0, le=1)
    every: int = Field(1, ge=1, description="copy: steps between hard copies")


class SQLConfig(Config):
    mode: Literal["on", "off", "mixed", "alternate"] = "mixed"
    loss: Literal["single_step", "multi_step", "mixed"] = "mixed"
    off_policy: Literal["targets", "replay", "behaviour"] = "targets"
    warmup_steps: int = Field(0, ge=0, description="off-policy only for the first steps")
    replay_capacity: int = Field(10000, ge=1)
    behaviour: BehaviourConfig | None = None
    eval_num_beams: int = Field(10, ge=1, description="decoding for evaluation: 1 is greedy")

    @model_validator(mode="after")
    def _sources(self):
        if self.off_policy == "behaviour" and self.behaviour is None and self.mode != "on":
            raise ValueError("off_policy 'behaviour' needs sql.behaviour (a model folder)")
        if self.behaviour is not None and self.off_policy != "behaviour":
            raise ValueError("sql.behaviour is given but sql.off_policy is not 'behaviour'")
        return self


class RLTrainLoopConfig(TrainLoopConfig):
    max_grad_norm: float | None = Field(5.0, gt=0)


class RLConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    policy: PolicyConfig
    data: DataConfig
    rewards: list[RewardConfig] = Field(min_length=1)
    shaping: ShapingConfig = ShapingConfig()
    sql: SQLConfig = SQLConfig()
    sampling: SamplingConfig = SamplingConfig()
    target: TargetConfig = TargetConfig()
    train: RLTrainLoopConfig
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, betas=(0.9, 0.999))
    schedule: ScheduleConfig | None = None
    deploy: DeployConfig = Field(default_factory=DeployConfig)
