"""The loader: the three feature formats, the index, and one line for each kind of bad input."""

import shutil

import numpy as np
import pytest

from luminary.activity.layout import (CLASSES, STEPS, check_layout, read_annotation, read_caption, read_feature_file,
                                      read_global_view, read_index, read_split)
from luminary.core.errors import LuminaryError


def test_facts():
    assert len(CLASSES) == 32 and CLASSES[0] == "listening" and CLASSES[-1] == "handsup"
    assert STEPS == (8, 4, 4, 4, 4, 4, 4) and sum(STEPS) == 32


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_feature_formats(tmp_path, suffix):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / f"00001{suffix}"
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, features=array)
    else:
        from safetensors.numpy import save_file

        save_file({"features": array}, str(path))
    got = read_feature_file(path)
    assert np.array_equal(np.asarray(got), array)
    if suffix == ".npy":
        assert isinstance(got, np.memmap)  # mapped, not read whole


def test_bad_feature_file(tmp_path):
    (tmp_path / "00001.npy").write_bytes(b"not numpy")
    with pytest.raises(LuminaryError, match="00001.npy: not a readable feature file"):
        read_feature_file(tmp_path / "00001.npy")


def test_reads_the_split(aric):
    train = read_split(aric, "train", backbones=("clipvit", "resnet"))
    assert train.features["clipvit"].shape == (len(train.labels), 32)
    assert train.features["resnet"].shape[1] == 64
    sample = train.samples[0]
    assert read_caption(aric, sample).startswith("Seen from the")
    assert len(read_annotation(aric, sample)["instances"]) >= 1
    assert read_global_view(aric, "vit", sample).shape == (48,)


def test_index_lines(tmp_path):
    path = tmp_path / "train_1.txt"
    path.write_text("# comment\n00001 0 reading\n\n00002 1 5\n")
    entries = read_index(path)
    assert entries.samples == ["00001", "00002"] and entries.labels == [1, 5] and entries.instances == [0, 1]
    path.write_text("00001 0 reading\n00002 jumping\n")
    with pytest.raises(LuminaryError, match="line 2: expected 'SAMPLE INSTANCE LABEL'"):
        read_index(path)
    path.write_text("00001 0 juggling\n")
    with pytest.raises(LuminaryError, match="line 1: unknown class 'juggling'"):
        read_index(path)


def _copy(aric, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(aric, root)
    return root


def test_missing_modality_folder(aric, tmp_path):
    root = _copy(aric, tmp_path)
    shutil.rmtree(root / "audio")
    with pytest.raises(LuminaryError, match=r"missing modality folder 'audio/'"):
        check_layout(root, modalities=("image", "audio"))
    shutil.rmtree(root / "image_features" / "vit")
    with pytest.raises(LuminaryError, match=r"missing modality folder 'image_features/vit/'"):
        read_split(root, "train", backbones=("vit",))


def test_index_naming_a_missing_sample(aric, tmp_path):
    root = _copy(aric, tmp_path)
    index = root / "index" / "test" / "test_1.txt"
    index.write_text(index.read_text() + "99999 0 reading\n")
    with pytest.raises(LuminaryError) as err:
        read_split(root, "test", backbones=("clipvit",))
    assert "test_1.txt: names sample 99999" in str(err.value) and "\n" not in str(err.value)
    index.write_text("00001 40 reading\n")
    with pytest.raises(LuminaryError, match="sample 00001 instance 40 is not a row"):
        read_split(root, "test", backbones=("clipvit",))
