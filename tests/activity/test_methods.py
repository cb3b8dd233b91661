"""The methods on the tiny synthetic ARIC at a fixed seed: the orderings the field expects.

Joint training ≥ replay > fine-tuning in average incremental accuracy, and
fine-tuning forgets the most; a class-balanced loss raises macro accuracy.
Plus the pieces checked alone: herding, class-balanced weights, the losses.
"""

import numpy as np
import pytest
import torch

from luminary.activity.methods import METHODS, get_method
from luminary.activity.methods.herding import herding_order, update_memory
from luminary.activity.methods.losses import class_balanced_weights, icarl_loss, lwf_distillation, supcon_loss
from luminary.activity.run import ActivityRunConfig, run_experiment
from luminary.core.errors import LuminaryError

FAST = {"epochs": 6, "hidden": 64, "memory_size": 96, "min_steps": 40}


@pytest.fixture(scope="module")
def cil(aric, tmp_path_factory):
    config = ActivityRunConfig.model_validate({
        "data": str(aric), "protocol": {"kind": "class_incremental"},
        "methods": [{"method": m, **FAST} for m in ("finetune", "replay", "joint")],
        "deploy": {"device": "cpu"}})
    return run_experiment(config, tmp_path_factory.mktemp("cil") / "out")


def test_joint_replay_finetune_ordering(cil):
    m = cil["methods"]
    aia = {k: v["average_incremental_accuracy"] for k, v in m.items()}
    assert aia["joint"] >= aia["replay"] > aia["finetune"], aia
    forgetting = {k: v["forgetting"] for k, v in m.items()}
    assert max(forgetting, key=forgetting.get) == "finetune", forgetting
    assert len(m["joint"]["step_accuracy"]) == 7


def test_run_folder(cil):
    out = cil["out"]
    for name in ("results.json", "table.txt", "accuracy_over_steps.png", "confusion_replay.png", "MANIFEST.sha256"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_over_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "runs" / "replay" / "session_6" / "metrics.jsonl").is_file()
    assert "avg inc acc" in cil["table"] and "finetune" in cil["table"]


def test_class_balanced_raises_macro_accuracy(aric, tmp_path):
    config = ActivityRunConfig.model_validate({
        "data": str(aric), "protocol": {"kind": "joint"},
        "methods": [{"method": "joint", **FAST}, {"method": "joint", "balance": "loss", **FAST}],
        "deploy": {"device": "cpu"}})
    m = run_experiment(config, tmp_path / "out")["methods"]
    assert m["joint+cb-loss"]["macro_accuracy"] > m["joint"]["macro_accuracy"] + 0.05, m


def test_herding_tracks_the_mean():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(200, 8)) + 3.0
    order = herding_order(e, 10)
    assert len(set(order.tolist())) == 10
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    gap_herd = np.linalg.norm(unit[order].mean(0) - unit.mean(0))
    gap_rand = np.mean([np.linalg.norm(unit[rng.choice(200, 10, replace=False)].mean(0) - unit.mean(0))
                        for _ in range(50)])
    assert gap_herd < 0.5 * gap_rand
    # a fixed memory: ⌊M / n⌋ per class, old classes cut to their first exemplars in herding order
    memory = update_memory({}, {0: np.arange(50), 1: np.arange(50, 100)}, lambda r: e[r], 40)
    assert [len(v) for v in memory.values()] == [20, 20]
    grown = update_memory(memory, {2: np.arange(100, 150)}, lambda r: e[r], 40)
    assert [len(v) for v in grown.values()] == [13, 13, 13] and grown[0].tolist() == memory[0][:13].tolist()


def test_class_balanced_weights_formula():
    w = class_balanced_weights(np.array([100, 10, 0]), beta=0.9)
    raw = np.array([(1 - 0.9) / (1 - 0.9 ** 100), (1 - 0.9) / (1 - 0.9 ** 10)])
    assert w[2] == 0 and w[:2] == pytest.approx(raw * 2 / raw.sum())


def test_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    old = torch.tensor([[1.0, 1.0, 5.0]])
    mask = torch.tensor([True, True, False])
    # identical tempered distributions over the old classes -> no distillation
    assert lwf_distillation(torch.tensor([[1.0, 1.0, 0.0]]), old, mask).item() == pytest.approx(0.0, abs=1e-7)
    seen = torch.tensor([True, True, True])
    y = torch.tensor([2])
    targets = torch.tensor([[torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(1.0)), 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert icarl_loss(logits, y, old, seen, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert supcon_loss(z, torch.tensor([0, 0, 1, 1])) < supcon_loss(z, torch.tensor([0, 1, 0, 1]))


def test_registry():
    assert {"finetune", "joint", "replay", "lwf", "icarl", "prototype", "supcon_cov"} <= set(METHODS)
    with pytest.raises(LuminaryError, match="unknown method 'ewc'"):
        get_method("ewc")
