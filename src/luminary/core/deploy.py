"""The ``deploy:`` section: where and how any training run executes.

Every config that trains (a pretraining recipe, ``luminary train``, the
scorer, the CTC aligners, SQL, and each capability added later) takes this
section with the same keys and the same meaning; this class is the one place
where their defaults live. ``luminary.train.Deployer.from_config`` reads it.

    deploy:
      device: auto                # auto (CUDA when present), cpu, cuda, cuda:1
      precision: auto             # auto (bf16 where the device has it), bf16, fp32
      compile: false              # torch.compile: each block (and in one process the whole loss)
      activation_checkpointing: false
      float8: false               # true: sm89+ GPUs; emulated: the same numbers on any device, slowly
      fused_cross_entropy: false  # causal LMs: the output head and loss in token chunks
      dp: null                    # data-parallel degree; null: the world size / tp
      tp: 1                       # tensor-parallel degree (an automatic plan)
      tp_overrides: {}            # module-name glob -> style, fixed before the plan is derived
      tp_plan: null               # a declared plan (JSON: glob -> style, or luminary's plan), applied as given
      tp_check: true              # under torchrun, one training step against one process before step 0
      seed: 0
      checkpoints: {every: null, count: null, steps: [], keep_last: null, at_end: true}
      log: []                     # metrics.jsonl always; add tensorboard, wandb
      wandb: {project: luminary, mode: offline}
      loader: {prefetch: true, pin_memory: null}

A capability whose runs want other defaults (pretraining's seed and evenly
spaced checkpoints, the scorer's one kept checkpoint) subclasses these
classes and changes the defaults only, never the keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from luminary.core.config import Config

SINKS = ("jsonl", "tensorboard", "wandb")


class TrackedMetric(Config):
    """A value of the step records to watch: ``metric`` is a key, dotted into nested records
    (``eval_loss``, ``val_loss.code`` for pretraining's per-source validation loss)."""

    metric: str = Field(..., description="a key of the step records (dotted for nested ones), e.g. eval_loss")
    mode: Literal["min", "max"] = Field("min", description="min: lower is better; max: higher is better")


class BestCheckpoint(TrackedMetric):
    """Keep the checkpoint whose latest ``metric`` is best among those saved (never pruned)."""


class EarlyStopping(TrackedMetric):
    """Stop when ``metric`` has not improved on its best by more than ``min_delta`` for ``patience``
    evaluations in a row (the rule of Keras' and Hugging Face's ``EarlyStopping`` callbacks)."""

    patience: int = Field(3, ge=1, description="evaluations without improvement before the run stops")
    min_delta: float = Field(0.0, ge=0, description="an improvement must beat the best by more than this")


class CheckpointPolicy(Config):
    """When to save: every N steps, N times evenly over the run, at listed steps, at the end; keep the last K
    and, by a metric, the best."""

    every: int | None = Field(None, ge=1, description="every N optimizer steps")
    count: int | None = Field(None, ge=1, description="this many checkpoints, evenly spaced over the run (LLM360)")
    steps: list[int] = Field(default_factory=list, description="these steps too (updates done); never pruned")
    keep_last: int | None = Field(None, ge=1, description="delete older checkpoints beyond the last K")
    at_end: bool = Field(True, description="a checkpoint after the last step")
    best: BestCheckpoint | None = Field(None, description="keep the best checkpoint by a metric "
                                        "(checkpoints/best.json names it); kept whatever keep_last says")

    @field_validator("steps")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if s < 1]
        if bad:
            raise ValueError(f"steps count updates done and start at 1, got {bad[0]}")
        return sorted(set(value))

    def due_steps(self, total: int, extra: tuple[int, ...] = ()) -> list[int]:
        """Every step (updates done, 1..total) this policy saves at; ``extra``: the capability's own."""
        steps = set(self.steps) | set(extra)
        if self.count:
            steps |= {max(1, round(total * (i + 1) / self.count)) for i in range(self.count)}
        if self.every:
            steps |= set(range(self.every, total + 1, self.every))
        if self.at_end:
            steps.add(total)
        return sorted(s for s in steps if 0 < s <= total)


class LoaderConfig(Config):
    prefetch: bool = Field(True, description="collate the next micro-batch in a thread while this one runs")
    pin_memory: bool | None = Field(None, description="page-locked host batches; default: when the device is CUDA")


class WandbConfig(Config):
    project: str = "luminary"
    mode: Literal["online", "offline"] = Field("offline", description="offline writes under RUN/wandb; sync later")


class DeployConfig(Config):
    device: str = Field("auto", description="auto (CUDA when present, one per local rank), cpu, cuda, cuda:N")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast where supported")
    compile: bool = Field(False, description="torch.compile each block (and, in one process, the whole loss)")
    activation_checkpointing: bool = Field(False, description="recompute each block in backward")
    float8: bool | Literal["emulated"] = Field(
        False, description="the blocks' linear layers multiply in float8: true needs an sm89+ GPU; "
                           "'emulated' computes the same numbers from dequantized operands on any device")
    fused_cross_entropy: bool = Field(False, description="causal LMs: output projection and loss in token chunks")
    dp: int | None = Field(None, ge=1, description="data-parallel degree; default: world size / tp")
    tp: int = Field(1, ge=1, description="tensor-parallel degree")
    tp_overrides: dict[str, str] = Field(default_factory=dict,
                                         description="module-name glob -> style (luminary parallel plan lists them)")
    tp_plan: str | None = Field(None, description="a declared plan, JSON (glob -> style, or a luminary plan): "
                                                  "applied as given, the automatic plan fills the rest")
    tp_check: bool = Field(True, description="check the plan by one training step (logits, loss, gradients, "
                                             "updated weights) against one process before step 0")
    seed: int = 0
    checkpoints: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    early_stopping: EarlyStopping | None = Field(None, description="stop when a metric stops improving")
    log: list[Literal["jsonl", "tensorboard", "wandb"]] = Field(
        default_factory=list, description="sinks beside metrics.jsonl, which is always written")
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    loader: LoaderConfig = Field(default_factory=LoaderConfig)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        kind = value.split(":")[0]
        if kind not in ("auto", "cpu", "cuda", "mps", "xpu") or (":" in value and kind == "auto"):
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _sinks(self):
        self.__dict__["log"] = list(dict.fromkeys(self.log))  # as given, once each
        return self


MOVED_TO_DEPLOY = {  # keys the run configs had before the deploy section -> where they live now
    "seed": "deploy.seed", "mixed_precision": "deploy.precision", "compile": "deploy.compile",
    "tp_size": "deploy.tp", "device": "deploy.device", "activation_checkpointing": "deploy.activation_checkpointing",
    "float8": "deploy.float8", "fused_cross_entropy": "deploy.fused_cross_entropy",
    "checkpoints": "deploy.checkpoints",
}


class DeploySection(Config):
    """The ``deploy:`` section of any config, the rest ignored (``luminary parallel plan --config``)."""

    model_config = ConfigDict(extra="ignore")
    deploy: DeployConfig = Field(default_factory=DeployConfig)
