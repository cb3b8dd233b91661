import math

import pytest

from luminary.core.errors import LuminaryError
from luminary.train.schedules import ScheduleConfig, WarmupDecay, build_phased_schedule, build_schedule


def test_warmup_then_linear_by_hand():
    s = build_schedule(ScheduleConfig(kind="linear", peak_lr=1.0, warmup_steps=4, end_lr=0.2), total_steps=12)
    # warm-up: s/W; then linear over the remaining 8 steps from 1.0 to 0.2
    assert [s(i) for i in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert s(4) == 1.0
    assert s(8) == pytest.approx(1.0 + (0.2 - 1.0) * 4 / 8)
    assert s(12) == pytest.approx(0.2) and s(100) == pytest.approx(0.2)


def test_cosine_and_constant_by_hand():
    s = build_schedule(ScheduleConfig(kind="cosine", peak_lr=2.0, end_lr=0.0), total_steps=10)
    assert s(0) == 2.0
    assert s(5) == pytest.approx(1.0)
    assert s(3) == pytest.approx(0.5 * 2.0 * (1 + math.cos(math.pi * 0.3)))
    c = build_schedule(ScheduleConfig(kind="constant", peak_lr=0.3, warmup_steps=2), total_steps=10)
    assert [c(0), c(1), c(2), c(9)] == [0.0, 0.15, 0.3, 0.3]


def test_crystal_phase_two_starts_where_phase_one_stopped():
    """CrystalCoder: phase 1 decays linearly over a plan of 294,337 steps from 0.012
    toward 1.2408e-4 and stops at 79,721; phase 2 re-warms to that value (≈0.00878)."""
    p1 = ScheduleConfig(kind="linear", peak_lr=0.012, warmup_steps=86, end_lr=1.2408e-4, decay_steps=294_337)
    p2 = ScheduleConfig(kind="linear", peak_lr="continue", warmup_steps=86, end_lr=1.3679e-4)
    sched = build_phased_schedule([p1, p2], [79_721, 214_387])
    stop_value = 0.012 + (1.2408e-4 - 0.012) * (79_721 - 86) / 294_337
    assert sched.phases[1].peak == pytest.approx(stop_value)
    assert stop_value == pytest.approx(0.0087825, rel=2e-3)
    assert sched(79_720) == pytest.approx(0.012 + (1.2408e-4 - 0.012) * (79_720 - 86) / 294_337)
    assert sched(79_721) == 0.0  # phase 2's warm-up starts at its step 0
    assert sched(79_721 + 86) == pytest.approx(stop_value)
    assert sched(79_721 + 214_387) == pytest.approx(1.3679e-4)


def test_continue_is_the_same_curve_across_phases():
    base = ScheduleConfig(kind="cosine", peak_lr=1.0, warmup_steps=2, decay_steps=20, end_lr=0.1)
    sched = build_phased_schedule([base, ScheduleConfig(kind="continue")], [8, 14])
    single = WarmupDecay("cosine", 1.0, 2, 0.0, 0.1, 20)
    assert [sched(i) for i in range(22)] == [single(i) for i in range(22)]


def test_continue_needs_a_previous_phase():
    with pytest.raises(LuminaryError, match="previous phase"):
        build_phased_schedule([ScheduleConfig(kind="continue")], [5])


def test_inverse_sqrt_by_hand():
    s = build_schedule(ScheduleConfig(kind="inverse_sqrt", peak_lr=1.0, warmup_steps=4), total_steps=100)
    assert [s(i) for i in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert s(16) == pytest.approx(0.5) and s(64) == pytest.approx(0.25)  # p·√(W/s)


def test_warmup_stable_decay_by_hand():
    # 2 warm-up steps, stable at the peak, the last 20% (4 of 20) cool down linearly to 0.1
    s = build_schedule(ScheduleConfig(kind="wsd", peak_lr=1.0, warmup_steps=2, end_lr=0.1), total_steps=20)
    assert [s(0), s(1), s(2), s(15), s(16)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert s(17) == pytest.approx(1.0 - 0.9 * 1 / 4) and s(20) == pytest.approx(0.1)
    r = build_schedule(ScheduleConfig(kind="wsd", peak_lr=1.0, decay_steps=4, cooldown="1-sqrt"), total_steps=20)
    assert r(16) == 1.0 and r(17) == pytest.approx(1.0 - math.sqrt(0.25)) and r(20) == pytest.approx(0.0)
