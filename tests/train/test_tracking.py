"""The best checkpoint and early stopping (deploy.checkpoints.best, deploy.early_stopping)."""

import json

import pytest

from luminary.core.deploy import EarlyStopping, TrackedMetric
from luminary.core.errors import LuminaryError
from luminary.core.runs import list_checkpoints
from luminary.train import Callback, CheckpointPolicy
from luminary.train.tracking import MetricWatch
from luminary.models import build_model
from luminary.train import Deployer, OptimizerConfig, Trainer
from luminary.train.losses import causal_lm_collate, causal_lm_loss
from tests.train.test_trainer import sequences


def make_trainer(workdir, early_stopping=None, callbacks=()):
    deployer = Deployer(workdir=workdir, seed=0, precision="fp32", early_stopping=early_stopping)
    return Trainer(deployer, causal_lm_collate, causal_lm_loss, build_model("llama-debug", 64, seed=0),
                   OptimizerConfig(lr=1e-2), callbacks=callbacks)


class Scores(Callback):
    """Adds ``val_score`` from a list, one per step, as a capability's evaluation callback would."""

    def __init__(self, values):
        self.values = values

    def on_step_end(self, trainer, record):
        record["val_score"] = {"code": self.values[record["step"]]}


def test_a_watch_follows_the_early_stopping_rule_by_hand():
    watch = MetricWatch(EarlyStopping(metric="m", patience=2, min_delta=0.1), "f", min_delta=0.1)
    # best 1.0; 0.95 is not better by more than 0.1; 0.85 is; then 0.9, 0.8 are not
    assert [watch.update(v, s) for s, v in enumerate([1.0, 0.95, 0.85, 0.9, 0.8])] == [True, False, True, False, False]
    assert (watch.best, watch.best_step, watch.stale) == (0.85, 2, 2)
    high = MetricWatch(TrackedMetric(metric="acc", mode="max"), "f")
    assert [high.update(v, s) for s, v in enumerate([0.5, 0.7, 0.7, float("nan"), 0.71])] == \
        [True, True, False, False, True]


VALUES = [5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 2.0, 1.0, 0.5, 0.1]


def test_early_stopping_stops_saves_and_stays_stopped_across_a_resume(tmp_path):
    stop = {"metric": "val_score.code", "patience": 3}
    data = sequences(60)
    records = make_trainer(tmp_path / "whole", early_stopping=stop, callbacks=[Scores(VALUES)]).fit(
        data, 4, max_steps=10, checkpoint=CheckpointPolicy(every=4))
    assert len(records) == 5  # best 4.0 at step 2; 4.5, 4.2, 4.1 do not beat it
    assert [s for s, _ in list_checkpoints(tmp_path / "whole" / "checkpoints")] == [4, 5]
    again = make_trainer(tmp_path / "whole", early_stopping=stop, callbacks=[Scores(VALUES)]).fit(
        data, 4, max_steps=10, checkpoint=CheckpointPolicy(every=4))
    assert again == []  # a stopped run resumed does nothing more
    # cut after step 3 and resumed: the count of stale evaluations came back from the checkpoint
    make_trainer(tmp_path / "cut", early_stopping=stop, callbacks=[Scores(VALUES)]).fit(
        data, 4, max_steps=3, checkpoint=CheckpointPolicy(every=1))
    rest = make_trainer(tmp_path / "cut", early_stopping=stop, callbacks=[Scores(VALUES)]).fit(
        data, 4, max_steps=10, checkpoint=CheckpointPolicy(every=4))
    assert [r["step"] for r in rest] == [3, 4]


def test_the_best_checkpoint_survives_keep_last_and_is_named(tmp_path):
    scores = [5.0, 3.0, 4.0, 6.0]
    make_trainer(tmp_path, callbacks=[Scores(scores)]).fit(
        sequences(40), 4, max_steps=4,
        checkpoint=CheckpointPolicy(every=1, keep_last=1, best={"metric": "val_score.code"}))
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 4]
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best == {"metric": "val_score.code", "mode": "min", "value": 3.0, "step": 2,
                    "checkpoint": "step_000002"}


def test_a_metric_the_records_lack_is_named(tmp_path):
    trainer = make_trainer(tmp_path, early_stopping={"metric": "val_scor.code"}, callbacks=[Scores(VALUES)])
    with pytest.raises(LuminaryError, match=r"deploy.early_stopping.metric: 'val_scor.code' is not in the step "
                                            r"records \(evaluation logs: val_score.code\)"):
        trainer.fit(sequences(20), 4, max_steps=3)
