"""Protocol splits: classes per step, no test sample in training, exactly K shots, class orders."""

import numpy as np
import pytest

from luminary.activity.layout import CLASSES, read_split
from luminary.activity.protocols import ProtocolConfig, build_sessions, class_order
from luminary.core.errors import LuminaryError


@pytest.fixture(scope="module")
def splits(aric):
    return read_split(aric, "train", backbones=("clipvit",)), read_split(aric, "test", backbones=("clipvit",))


def test_class_incremental_steps(splits):
    train, test = splits
    sessions = build_sessions(ProtocolConfig(kind="class_incremental"), train.labels, test.labels)
    assert [len(s.new_classes) for s in sessions] == [8, 4, 4, 4, 4, 4, 4]
    assert sorted(c for s in sessions for c in s.new_classes) == list(range(32))
    for s in sessions:
        assert set(train.labels[s.train]) == set(s.new_classes)  # only the new classes are trained on
        assert set(test.labels[s.test]) == set(s.seen_classes)  # tested on everything seen so far
        assert len(s.test) == int(np.isin(test.labels, s.seen_classes).sum())
    # no test instance is a training instance
    trained = {(train.samples[r], train.instances[r]) for s in sessions for r in s.train}
    tested = {(test.samples[r], test.instances[r]) for r in sessions[-1].test}
    assert trained and tested and not trained & tested


def test_seeded_order_is_a_fixed_permutation():
    a, b = class_order("seeded", 3), class_order("seeded", 3)
    assert a == b and sorted(a) == list(range(32)) and a != list(range(32)) and a != class_order("seeded", 4)


def test_few_shot_sessions_have_exactly_k_shots(splits):
    train, test = splits
    config = ProtocolConfig(kind="few_shot", base_classes=16, ways=4, shots=5, class_order="seeded")
    sessions = build_sessions(config, train.labels, test.labels)
    assert [len(s.new_classes) for s in sessions] == [16, 4, 4, 4, 4]
    assert len(sessions[0].train) == int(np.isin(train.labels, sessions[0].new_classes).sum())
    for s in sessions[1:]:
        counts = np.bincount(train.labels[s.train], minlength=32)
        assert sorted(set(counts[list(s.new_classes)])) == [5]
        assert counts.sum() == 5 * 4
    with pytest.raises(LuminaryError, match="protocol.shots: class .* fewer than 50"):
        build_sessions(config.model_copy(update={"shots": 50}), train.labels, test.labels)
    with pytest.raises(LuminaryError, match="multiple of ways 5"):
        build_sessions(config.model_copy(update={"ways": 5}), train.labels, test.labels)


def test_class_order_must_name_each_class_once():
    order = list(CLASSES)
    with pytest.raises(LuminaryError, match="omits 1 class\\(es\\), first 'handsup'"):
        class_order(order[:-1])
    with pytest.raises(LuminaryError, match="class 'reading' appears more than once"):
        class_order(order[:-1] + ["reading"])
    with pytest.raises(LuminaryError, match="unknown class 'juggling'"):
        class_order(order[:-1] + ["juggling"])
    assert class_order(order[::-1])[0] == 31


def test_steps_must_cover_the_classes(splits):
    train, test = splits
    with pytest.raises(LuminaryError, match="add up to 32"):
        build_sessions(ProtocolConfig(steps=[8, 4]), train.labels, test.labels)


def test_the_cec_cifar_preset_scales_cifars_sessions_to_arics_classes():
    from luminary.activity.protocols import ProtocolConfig

    config = ProtocolConfig(kind="few_shot", preset="cec_cifar")
    # CIFAR-100: 60 base, 8 x 5-way 5-shot (40%); ARIC's 32 classes: 22 base, 2 x 5-way 5-shot
    assert (config.base_classes, config.ways, config.shots) == (22, 5, 5)
