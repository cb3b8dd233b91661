"""The synthetic ARIC: the released layout, ARIC's imbalance scaled, class-dependent modalities."""

import json

import numpy as np
from scipy.io import wavfile

from luminary.activity.layout import CLASS_COUNTS, CLASSES, read_split
from luminary.activity.synth import SIMILAR, SynthConfig, audio_clip, class_counts, class_means
from luminary.core.io import verify_manifest


def test_layout_and_counts(aric):
    for rel in ("image_features/resnet", "image_features/vit", "image_features/clipvit", "audio", "text",
                "annotations", "global_view_features/clipvit", "index/train", "index/test"):
        assert (aric / rel).is_dir(), rel
    assert verify_manifest(aric) == []
    summary = json.loads((aric / "aric_synthetic.json").read_text())
    train, test = read_split(aric, "train", backbones=("clipvit",)), read_split(aric, "test", backbones=("clipvit",))
    total = np.bincount(np.concatenate([train.labels, test.labels]), minlength=32)
    expected = [max(12, round(0.002 * CLASS_COUNTS[c])) for c in CLASSES]
    assert total.tolist() == expected == list(summary["class_counts"].values())
    assert total[0] == 491 and total[-1] == 12  # the head scaled, the tail at the minimum
    assert np.all(np.bincount(test.labels, minlength=32) >= 3)


def test_similar_activities_overlap():
    config = SynthConfig()
    means = class_means(config, "clipvit")
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    typical = np.median(dist[np.triu_indices(32, 1)])
    for a, b in SIMILAR:
        assert dist[CLASSES.index(a), CLASSES.index(b)] < 0.6 * typical, (a, b)


def test_counts_scale_with_a_minimum():
    counts = class_counts(SynthConfig(scale=0.01, min_per_class=20))
    assert counts["listening"] == 2457 and counts["handsup"] == 20 and counts["taking_bag"] == 20


def test_audio_has_class_dependent_spectra(aric):
    rng = np.random.default_rng(0)
    for c in (0, 17):
        clip = audio_clip([c], 1.0, rng).astype(float)
        spectrum = np.abs(np.fft.rfft(clip))
        assert abs(np.argmax(spectrum) - (150 + 90 * c)) <= 1  # 1 Hz bins over one second
    rate, signal = wavfile.read(sorted((aric / "audio").iterdir())[0])
    assert rate == 8000 and signal.dtype == np.int16
