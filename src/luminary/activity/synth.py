"""A synthetic ARIC in exactly the released layout (``luminary.activity.layout``).

    luminary activity synth --out data/aric-synth --scale 0.01 --seed 0

What it imitates, and how:

- **Imbalance.** Class c gets ``max(min_per_class, round(scale · n_c))``
  instances, n_c its ARIC count; a test share (``test_fraction``, at least
  ``min_test`` a class) goes to ``index/test/test_1.txt``.
- **Frames.** Instances are shuffled into samples (frames) of 1 to
  ``max_per_frame`` people; audio, caption, boxes and the global view
  belong to the frame, image features to each person.
- **Image features** per backbone: x = μ_c^b + ε, ε ~ N(0, I), the class
  means μ_c^b ~ N(0, s_b² I) drawn per backbone (``separation`` s_b), with
  similar activities close: μ_j = μ_i + ρ·δ for the pairs in
  :data:`SIMILAR` (reading/writing, using_phone/using_pad, ...), so their
  confusion is what a real backbone's would be.
- **Captions** from templates, naming each activity in the frame with its count.
- **Audio**: 8 kHz mono int16 wav; each activity in the frame adds a tone
  at its own frequency f_c = 150 + 90·c Hz (and its octave), weighted by
  the number of people doing it, over white noise: class-dependent spectra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from luminary.activity.layout import BACKBONES, CLASS_COUNTS, CLASSES
from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, write_manifest
from luminary.core.locks import locked
from luminary.core.seed import derive_seed
from pydantic import Field

SIMILAR: tuple[tuple[str, str], ...] = (
    ("reading", "writing"), ("using_phone", "using_pad"), ("listening", "relaxing"),
    ("blackboard_writing", "blackboard_wiping"), ("taking_bag", "gathering_up_bag"),
    ("talking", "discussing"), ("using_computers", "picking_up_computers"),
)
PHRASES = {name: name.replace("_", " ") for name in CLASSES}
CAMERAS = ("front", "middle", "rear")
SAMPLE_RATE = 8000


class SynthConfig(Config):
    scale: float = Field(0.01, gt=0, le=1, description="fraction of ARIC's instance counts")
    seed: int = 0
    min_per_class: int = Field(12, ge=2, description="instances of a class at least (the tail would vanish)")
    test_fraction: float = Field(0.25, gt=0, lt=1)
    min_test: int = Field(3, ge=1)
    max_per_frame: int = Field(24, ge=1, description="people in a frame at most (ARIC: about 21 on average)")
    dims: dict[str, int] = Field(default_factory=lambda: {"resnet": 64, "vit": 48, "clipvit": 32})
    separation: dict[str, float] = Field(default_factory=lambda: {"resnet": 0.30, "vit": 0.34, "clipvit": 0.40})
    similar_distance: float = Field(0.45, ge=0, description="ρ: how far a similar activity's mean lies")
    audio_seconds: float = Field(0.5, gt=0)
    feature_format: str = Field("npy", pattern="^(npy|npz|safetensors)$")


def class_counts(config: SynthConfig) -> dict[str, int]:
    """Instances per class: ARIC's counts scaled, at least ``min_per_class``."""
    return {c: max(config.min_per_class, round(n * config.scale)) for c, n in CLASS_COUNTS.items()}


def class_means(config: SynthConfig, backbone: str) -> np.ndarray:
    """(32, dim) class means of one backbone, similar pairs pulled together."""
    rng = np.random.default_rng(derive_seed("aric-means", config.seed, backbone))
    dim, s = config.dims[backbone], config.separation[backbone]
    means = rng.normal(0.0, s, size=(len(CLASSES), dim))
    for a, b in SIMILAR:
        i, j = CLASSES.index(a), CLASSES.index(b)
        means[j] = means[i] + config.similar_distance * rng.normal(0.0, s, size=dim)
    return means


def _save_features(path: Path, array: np.ndarray, fmt: str) -> None:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if fmt == "npy":
        np.save(path.with_suffix(".npy"), array)
    elif fmt == "npz":
        np.savez(path.with_suffix(".npz"), features=array)
    else:
        from safetensors.numpy import save_file

        save_file({"features": array}, str(path.with_suffix(".safetensors")))


def caption(labels: list[int], camera: str) -> str:
    """A template caption naming each activity in the frame with its count."""
    numbers = ("no", "one", "two", "three", "four", "five", "six")
    parts = []
    for c in sorted(set(labels), key=lambda c: (-labels.count(c), c)):
        n = labels.count(c)
        who = "person is" if n == 1 else "people are"
        parts.append(f"{numbers[min(n, 6)]} {who} {PHRASES[CLASSES[c]]}")
    return f"Seen from the {camera} camera, " + "; ".join(parts) + "."


def audio_clip(labels: list[int], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """int16 samples: a tone per activity in the frame (f_c = 150 + 90·c Hz and 2·f_c) over noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = 0.3 * rng.normal(size=t.shape)
    for c in set(labels):
        f = 150.0 + 90.0 * c
        phase = rng.uniform(0, 2 * np.pi)
        weight = labels.count(c) / len(labels)
        signal += weight * (np.sin(2 * np.pi * f * t + phase) + 0.5 * np.sin(4 * np.pi * f * t + phase))
    return (np.clip(signal / 3.0, -1, 1) * 32767).astype(np.int16)


def make_synthetic(out: str | Path, config: SynthConfig | None = None, overwrite: bool = False) -> dict:
    """Write a synthetic ARIC to ``out`` (atomically, under its lock); returns the summary it stores."""
    from scipy.io import wavfile

    config = config or SynthConfig()
    missing = [b for b in BACKBONES if b not in config.dims or b not in config.separation]
    if missing:
        raise LuminaryError(f"dims/separation: give a value for backbone '{missing[0]}'")
    rng = np.random.default_rng(derive_seed("aric-synth", config.seed))
    counts = class_counts(config)
    labels = np.concatenate([np.full(n, CLASSES.index(c)) for c, n in counts.items()])
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(len(CLASSES)):
        members = np.flatnonzero(labels == c)
        n_test = max(config.min_test, round(config.test_fraction * len(members)))
        is_test[rng.choice(members, size=min(n_test, len(members) - 1), replace=False)] = True
    order = rng.permutation(len(labels))
    frames, start = [], 0
    while start < len(order):
        size = int(rng.integers(1, config.max_per_frame + 1))
        frames.append(order[start:start + size])
        start += size
    means = {b: class_means(config, b) for b in BACKBONES}
    out = Path(out)
    with locked(out, "ARIC folder"), atomic_dir(out, overwrite=overwrite) as tmp:
        for rel in ["index/train", "index/test", "audio", "text", "annotations",
                    *[f"image_features/{b}" for b in BACKBONES], *[f"global_view_features/{b}" for b in BACKBONES]]:
            (tmp / rel).mkdir(parents=True)
        index = {"train": [], "test": []}
        for number, members in enumerate(frames, 1):
            sample = f"{number:05d}"
            frame_labels = [int(labels[i]) for i in members]
            for b in BACKBONES:
                x = means[b][frame_labels] + rng.normal(size=(len(members), config.dims[b]))
                _save_features(tmp / "image_features" / b / sample, x, config.feature_format)
                view = x.mean(axis=0) + 0.5 * rng.normal(size=config.dims[b])
                _save_features(tmp / "global_view_features" / b / sample, view, config.feature_format)
            camera = CAMERAS[int(rng.integers(len(CAMERAS)))]
            (tmp / "text" / f"{sample}.txt").write_text(caption(frame_labels, camera) + "\n", encoding="utf-8")
            wavfile.write(tmp / "audio" / f"wav_{sample}.wav", SAMPLE_RATE,
                          audio_clip(frame_labels, config.audio_seconds, rng))
            boxes = []
            for c in frame_labels:
                x1, y1 = float(rng.uniform(0, 3500)), float(rng.uniform(0, 1900))
                boxes.append({"box": [x1, y1, x1 + float(rng.uniform(80, 340)), y1 + float(rng.uniform(120, 260))],
                              "label": CLASSES[c]})
            (tmp / "annotations" / f"{sample}.json").write_text(
                json.dumps({"camera": camera, "instances": boxes}) + "\n")
            for row, i in enumerate(members):
                index["test" if is_test[i] else "train"].append(f"{sample} {row} {CLASSES[labels[i]]}")
        for side, lines in index.items():
            (tmp / "index" / side / f"{side}_1.txt").write_text("\n".join(lines) + "\n")
        summary = {"synthetic": True, "config": config.model_dump(), "class_counts": counts,
                   "n_instances": int(len(labels)), "n_samples": len(frames),
                   "n_train": len(index["train"]), "n_test": len(index["test"])}
        (tmp / "aric_synthetic.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_manifest(tmp)
    return summary
