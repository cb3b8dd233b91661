"""ARIC's released layout, read with errors that name the file at fault.

ARIC (Xu et al., 2024, arXiv 2410.12337) ships no images, only per-person
features from three backbones, a 10 s audio clip and a caption per sample
(frame), split index files and a supplement of boxes and whole-frame
features::

    ROOT/
      image_features/{resnet,vit,clipvit}/NNNNN.{npy,npz,safetensors}  (instances, dim) per sample
      global_view_features/{resnet,vit,clipvit}/NNNNN.{npy,...}        (dim,) per sample (supplement)
      audio/wav_NNNNN.wav
      text/NNNNN.txt
      annotations/NNNNN.json            {"instances": [{"box": [x1, y1, x2, y2], "label": NAME}, ...]}
      index/train/train_K.txt           one instance a line
      index/test/test_K.txt

The index line format is not public; luminary fixes it as
``SAMPLE INSTANCE LABEL`` separated by white space: ``SAMPLE`` the sample's
five-digit id (the NNNNN of its files), ``INSTANCE`` the row of that
sample's feature file, ``LABEL`` a class name of :data:`CLASSES` or its
0-based index. Blank lines and lines starting with ``#`` are skipped.
``K`` names a split (luminary reads one, default 1); the class-incremental
steps come from the class order (``luminary.activity.protocols``), not
from the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from luminary.core.errors import LuminaryError

# the 32 activities with their instance counts on the project page (head to tail about 7000 : 1)
CLASS_COUNTS: dict[str, int] = {
    "listening": 245731, "reading": 156266, "using_phone": 89867, "using_pad": 72023,
    "using_computers": 51371, "writing": 34495, "scratching_head": 34138, "standing": 11743,
    "talking": 11005, "sleeping": 8060, "teaching": 7901, "yawning": 4502, "walking": 4459,
    "relaxing": 3937, "analyzing": 3344, "student_demonstrating": 3024, "gathering_up_bag": 2848,
    "listening_to_music": 1636, "drinking": 1620, "discussing": 1521, "taking_bottle": 1510,
    "taking_photos": 1026, "taking_bag": 984, "blackboard_writing": 957, "setting_equipment": 760,
    "blackboard_wiping": 321, "reviewing": 306, "eating": 167, "taking_off": 105, "speaking": 85,
    "picking_up_computers": 80, "handsup": 35,
}
CLASSES: tuple[str, ...] = tuple(CLASS_COUNTS)
STEPS: tuple[int, ...] = (8, 4, 4, 4, 4, 4, 4)  # ARIC's continual-learning steps
BACKBONES: tuple[str, ...] = ("resnet", "vit", "clipvit")
FEATURE_SUFFIXES = (".npy", ".npz", ".safetensors")
FEATURE_KEY = "features"  # the array's name inside .npz and .safetensors files
_SAMPLE = re.compile(r"^\d{5,}$")


def read_feature_file(path: str | Path) -> np.ndarray:
    """The array of one feature file, memory-mapped where the format allows.

    ``.npy``: ``np.load(mmap_mode="r")`` (nothing read until indexed);
    ``.npz``: the array named ``features`` (or the only one), read on access;
    ``.safetensors``: the tensor ``features`` (or the only one) through
    ``safe_open``, which maps the file. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LuminaryError(f"{path}: feature file not found")
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return archive[_pick_key(path, list(archive.keys()))]
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                return f.get_tensor(_pick_key(path, list(f.keys())))
    except LuminaryError:
        raise
    except Exception as exc:  # a truncated or foreign file: numpy/safetensors say why
        raise LuminaryError(f"{path}: not a readable feature file ({type(exc).__name__}: {exc})") from None
    raise LuminaryError(f"{path}: unknown feature format (expected one of {', '.join(FEATURE_SUFFIXES)})")


def _pick_key(path: Path, keys: list[str]) -> str:
    if FEATURE_KEY in keys:
        return FEATURE_KEY
    if len(keys) == 1:
        return keys[0]
    raise LuminaryError(f"{path}: holds {len(keys)} arrays and none is named '{FEATURE_KEY}'")


def feature_path(folder: Path, sample: str) -> Path:
    """``folder/NNNNN`` with whichever feature suffix exists (``.npy`` first)."""
    for suffix in FEATURE_SUFFIXES:
        path = folder / f"{sample}{suffix}"
        if path.is_file():
            return path
    raise LuminaryError(f"{folder}: no feature file for sample {sample} ({'/'.join(FEATURE_SUFFIXES)})")


def class_index(label: str, where: str) -> int:
    """A label as a name of :data:`CLASSES` or a 0-based index."""
    if label.isdigit():
        value = int(label)
        if value < len(CLASSES):
            return value
        raise LuminaryError(f"{where}: label {value} is out of range (0..{len(CLASSES) - 1})")
    if label in CLASS_COUNTS:
        return CLASSES.index(label)
    raise LuminaryError(f"{where}: unknown class '{label}' (one of the 32 ARIC classes, or its index)")


@dataclass
class IndexEntries:
    samples: list[str] = field(default_factory=list)
    instances: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


def read_index(path: str | Path) -> IndexEntries:
    """Parse an index file (``SAMPLE INSTANCE LABEL`` a line); a bad line names its number."""
    path = Path(path)
    if not path.is_file():
        raise LuminaryError(f"{path}: index file not found")
    entries = IndexEntries()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}: line {number}"
        if len(parts) != 3:
            raise LuminaryError(f"{where}: expected 'SAMPLE INSTANCE LABEL', got {line!r}")
        sample, instance, label = parts
        if not _SAMPLE.match(sample) or not instance.isdigit():
            raise LuminaryError(f"{where}: expected a 5-digit sample id and an instance number, got {line!r}")
        entries.samples.append(sample)
        entries.instances.append(int(instance))
        entries.labels.append(class_index(label, where))
    if not entries.samples:
        raise LuminaryError(f"{path}: no entries")
    return entries


@dataclass
class Split:
    """One side (train or test) of a split: instances, labels and their features per backbone."""

    samples: np.ndarray  # (N,) str sample ids
    instances: np.ndarray  # (N,) int rows in the samples' feature files
    labels: np.ndarray  # (N,) int class indices into CLASSES
    features: dict[str, np.ndarray]  # backbone -> (N, dim) float32


def require_folder(root: Path, rel: str, what: str) -> Path:
    path = root / rel
    if not path.is_dir():
        raise LuminaryError(f"{root}: missing {what} folder '{rel}/'")
    return path


def read_split(root: str | Path, side: str, split: int = 1, backbones: tuple[str, ...] = BACKBONES) -> Split:
    """The instances of ``index/SIDE/SIDE_SPLIT.txt`` with the rows of their feature files.

    Each sample's feature file is opened once (memory-mapped) and only the rows
    the index names are copied out. An index line naming a sample without a
    feature file, or a row past the file's end, is an error naming both.
    """
    root = Path(root)
    if not root.is_dir():
        raise LuminaryError(f"{root}: ARIC folder not found")
    index_path = require_folder(root, f"index/{side}", "index") / f"{side}_{split}.txt"
    entries = read_index(index_path)
    folders = {b: require_folder(root, f"image_features/{b}", "modality") for b in backbones}
    order = np.argsort(np.asarray(entries.samples), kind="stable")
    features = {b: [None] * len(order) for b in backbones}
    current, arrays = None, {}
    for i in order:
        sample, row = entries.samples[i], entries.instances[i]
        if sample != current:
            current = sample
            try:
                arrays = {b: read_feature_file(feature_path(folders[b], sample)) for b in backbones}
            except LuminaryError as exc:
                raise LuminaryError(f"{index_path}: names sample {sample}, but {exc}") from None
        for b, array in arrays.items():
            if array.ndim != 2 or row >= array.shape[0]:
                raise LuminaryError(f"{index_path}: sample {sample} instance {row} is not a row of "
                                    f"{feature_path(folders[b], sample)} (shape {tuple(array.shape)})")
            features[b][i] = np.asarray(array[row], dtype=np.float32)
    return Split(np.asarray(entries.samples), np.asarray(entries.instances, dtype=np.int64),
                 np.asarray(entries.labels, dtype=np.int64), {b: np.stack(v) for b, v in features.items()})


def check_layout(root: str | Path, split: int = 1, modalities: tuple[str, ...] = ("image",)) -> None:
    """Refuse a folder that lacks what ``modalities`` need (``image``, ``audio``, ``text``), before reading."""
    root = Path(root)
    if not root.is_dir():
        raise LuminaryError(f"{root}: ARIC folder not found")
    for side in ("train", "test"):
        if not (root / "index" / side / f"{side}_{split}.txt").is_file():
            raise LuminaryError(f"{root}: missing index file 'index/{side}/{side}_{split}.txt'")
    for modality in modalities:
        rel = {"image": "image_features", "audio": "audio", "text": "text"}.get(modality)
        if rel is None:
            raise LuminaryError(f"unknown modality '{modality}' (image, audio or text)")
        require_folder(root, rel, "modality")


def audio_path(root: str | Path, sample: str) -> Path:
    path = Path(root) / "audio" / f"wav_{sample}.wav"
    if not path.is_file():
        raise LuminaryError(f"{path}: audio file not found (sample {sample})")
    return path


def read_caption(root: str | Path, sample: str) -> str:
    path = Path(root) / "text" / f"{sample}.txt"
    if not path.is_file():
        raise LuminaryError(f"{path}: caption not found (sample {sample})")
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise LuminaryError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_annotation(root: str | Path, sample: str) -> dict:
    """A sample's boxes (supplement): ``{"instances": [{"box": [x1, y1, x2, y2], "label": ...}]}``."""
    from luminary.core.io import read_json

    data = read_json(Path(root) / "annotations" / f"{sample}.json", "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise LuminaryError(f"{Path(root) / 'annotations' / f'{sample}.json'}: expected an object with 'instances'")
    for item in data["instances"]:
        box = item.get("box") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and box[0] <= box[2] and box[1] <= box[3]):
            raise LuminaryError(f"{Path(root) / 'annotations' / f'{sample}.json'}: a box is not [x1, y1, x2, y2]")
    return data


def read_global_view(root: str | Path, backbone: str, sample: str) -> np.ndarray:
    """A sample's whole-frame feature vector (supplement)."""
    folder = require_folder(Path(root), f"global_view_features/{backbone}", "global view")
    return np.asarray(read_feature_file(feature_path(folder, sample)), dtype=np.float32)
