"""``luminary activity run CONFIG --out DIR``: a protocol, some methods, one comparison.

    luminary activity synth --out data/aric-synth --scale 0.01 --seed 0
    luminary activity run examples/activity-cil.yaml --out runs/activity-cil

The output folder (written whole, under its lock)::

    DIR/results.json            config, per method every metric of luminary.activity.metrics
    DIR/table.txt               the comparison table that was printed
    DIR/accuracy_over_steps.png one line per method
    DIR/confusion_METHOD.png    after the last session
    DIR/runs/METHOD[/MODALITY]/session_T/   run.json, metrics.jsonl of each fitted session
    DIR/MANIFEST.sha256
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from luminary.activity.fusion import early_fusion, late_fusion, modality_inputs
from luminary.activity.layout import CLASSES, check_layout, read_split
from luminary.activity.learner import ActivityDeploy, MethodConfig, MethodRun, run_method
from luminary.activity.metrics import confusion_matrix, summarize
from luminary.activity.plots import plot_accuracy_over_steps, plot_confusion
from luminary.activity.protocols import ProtocolConfig, build_sessions
from luminary.core.config import Config, dump_config
from luminary.core.deploy import MOVED_TO_DEPLOY
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, atomic_write_json, atomic_write_text, write_manifest
from luminary.core.locks import locked


class FusionConfig(Config):
    modalities: list[Literal["image", "audio", "text"]] = Field(default_factory=lambda: ["image"], min_length=1)
    mode: Literal["early", "late"] = "early"
    backbones: list[Literal["resnet", "vit", "clipvit"]] = Field(default_factory=lambda: ["clipvit"], min_length=1)
    text_encoder: str = Field("hashing", description="hashing, minilm (luminary.ctc.encoder) or an encoder folder")
    weights: list[float] | None = Field(None, description="late fusion: one weight per modality (default equal)")
    n_mels: int = Field(32, ge=4)

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None and len(self.weights) != len(self.modalities):
            raise ValueError(f"weights: give {len(self.modalities)} (one per modality), got {len(self.weights)}")
        return self


class ActivityRunConfig(Config):
    moved_keys = MOVED_TO_DEPLOY
    data: str = Field(description="an ARIC folder (released layout, or luminary activity synth)")
    split: int = Field(1, ge=1, description="index/{train,test}/{train,test}_SPLIT.txt")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    methods: list[MethodConfig] = Field(min_length=1)
    deploy: ActivityDeploy = Field(default_factory=ActivityDeploy)

    @model_validator(mode="after")
    def _unique(self):
        names = [m.name for m in self.methods]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two methods are named '{twice[0]}'; give one a label")
        return self


COLUMNS = (("average_incremental_accuracy", "avg inc acc"), ("last_accuracy", "last acc"),
           ("forgetting", "forgetting"), ("macro_accuracy", "macro acc"), ("head_accuracy", "head"),
           ("medium_accuracy", "medium"), ("tail_accuracy", "tail"), ("performance_drop", "PD"))


def format_table(results: dict[str, dict]) -> str:
    """Methods down, metrics across, in percent."""
    width = max([len("method")] + [len(n) for n in results])
    head = f"{'method':<{width}}  " + "  ".join(f"{title:>11}" for _, title in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in results.items():
        cells = ["        nan" if m[key] is None or math.isnan(m[key]) else f"{100 * m[key]:11.2f}"
                 for key, _ in COLUMNS]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def _fit(settings: MethodConfig, config: ActivityRunConfig, sessions, train_in, test_in, y_train, y_test,
         runs: Path) -> MethodRun:
    record = dump_config(config)
    if config.fusion.mode == "early":
        return run_method(settings, sessions, early_fusion(train_in), y_train, early_fusion(test_in), y_test,
                          runs, config.deploy, record)
    parts = [run_method(settings, sessions, train_in[m], y_train, test_in[m], y_test, runs / m, config.deploy, record)
             for m in config.fusion.modalities]
    fused = MethodRun(settings.name, parts[0].groups, parts[0].trues)
    fused.scores = [late_fusion([p.scores[t] for p in parts], config.fusion.weights) for t in range(len(sessions))]
    return fused


def run_experiment(config: ActivityRunConfig, out: str | Path, overwrite: bool = False) -> dict:
    """Run every method of ``config`` on its protocol; returns ``{"methods": {...}, "table": str}``."""
    root = Path(config.data)
    check_layout(root, config.split, tuple(config.fusion.modalities))
    backbones = tuple(config.fusion.backbones)
    train, test = read_split(root, "train", config.split, backbones), read_split(root, "test", config.split, backbones)
    overlap = set(zip(train.samples, train.instances)) & set(zip(test.samples, test.instances))
    if overlap:
        sample, row = sorted(overlap)[0]
        raise LuminaryError(f"{root}: sample {sample} instance {row} is in both the train and the test index")
    sessions = build_sessions(config.protocol, train.labels, test.labels)
    train_in = modality_inputs(root, train, config.fusion.modalities, backbones, config.fusion.text_encoder,
                               config.fusion.n_mels)
    test_in = modality_inputs(root, test, config.fusion.modalities, backbones, config.fusion.text_encoder,
                              config.fusion.n_mels)
    out = Path(out)
    results: dict[str, dict] = {}
    with locked(out, "activity run folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        for settings in config.methods:
            run = _fit(settings, config, sessions, train_in, test_in, train.labels, test.labels,
                       tmp / "runs" / settings.name)
            results[settings.name] = summarize(run.groups, run.preds, run.trues)
            plot_confusion(confusion_matrix(run.preds[-1], run.trues[-1]), tmp / f"confusion_{settings.name}.png",
                           f"{settings.name}: after session {len(sessions) - 1}")
        seen = np.cumsum([len(s.new_classes) for s in sessions])
        plot_accuracy_over_steps({n: r["step_accuracy"] for n, r in results.items()}, seen,
                                 tmp / "accuracy_over_steps.png")
        table = format_table(results)
        atomic_write_text(tmp / "table.txt", table + "\n")
        atomic_write_json(tmp / "results.json", {
            "config": dump_config(config), "classes": list(CLASSES),
            "sessions": [{"new_classes": [CLASSES[c] for c in s.new_classes], "n_train": int(len(s.train)),
                          "n_test": int(len(s.test))} for s in sessions],
            "methods": results})
        write_manifest(tmp)
    return {"methods": results, "table": table, "out": out}

