"""Every layout transformers' from_pretrained reads for a Cappy folder: a legacy .bin (with
roberta.embeddings.position_ids), sharded .bin, and Flax's flax_model.msgpack; each built here."""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.scorer import Scorer, score_pairs

from .test_model import PAIRS, direct_scores

INSTRUCTIONS, RESPONSES = [p[0] for p in PAIRS], [p[1] for p in PAIRS]


def as_legacy_bin(folder) -> None:
    """The folder's weights as one pytorch_model.bin holding the position_ids buffer, as before transformers 4.31."""
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    state = dict(model.state_dict())
    state["roberta.embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings)[None]
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


def as_sharded_bin(folder) -> None:
    """Two .bin shards and pytorch_model.bin.index.json, as save_pretrained(max_shard_size=...) wrote them."""
    state = AutoModelForSequenceClassification.from_pretrained(folder).state_dict()
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :]}
    for name, names in shards.items():
        torch.save({k: state[k].clone() for k in names}, folder / name)
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors").unlink()


def test_scorer_train_starts_from_a_legacy_bin_folder(tmp_path, make_roberta_scorer, cli):
    folder = make_roberta_scorer(tmp_path / "legacy", seed=5)
    expected = direct_scores(folder, PAIRS)
    as_legacy_bin(folder)
    assert direct_scores(folder, PAIRS) == pytest.approx(expected, abs=1e-5)  # transformers reads it so
    write_jsonl(tmp_path / "data.jsonl", [{"instruction": i, "response": r, "label": 1.0} for i, r in PAIRS])
    (tmp_path / "train.yaml").write_text(
        f"model: {folder}\ndata: {tmp_path / 'data.jsonl'}\nmax_steps: 1\nlr: 0.0\nallow_pickle: true\n"
        "per_device_batch_size: 2\naccumulate_grad_batches: 1\nmax_length: 128\n")
    res = cli("scorer", "train", tmp_path / "train.yaml", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    # with lr 0 the trained scorer is the legacy file's weights: training started from them, not at random
    trained = Scorer.from_pretrained(tmp_path / "run" / "scorer", max_length=128)
    assert score_pairs(trained, INSTRUCTIONS, RESPONSES) == pytest.approx(expected, abs=1e-5)


def test_sharded_bin_loads_and_trains_as_transformers_reads_it(tmp_path, make_roberta_scorer):
    from luminary.scorer.train import ScorerTrainConfig, train_scorer

    folder = make_roberta_scorer(tmp_path / "sharded", seed=6)
    expected = direct_scores(folder, PAIRS)
    as_sharded_bin(folder)
    torch.save(defaultdict(int), folder / "training_args.bin")  # a Trainer's pickle beside them: never read
    assert direct_scores(folder, PAIRS) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(LuminaryError, match="pickle weights are refused"):
        Scorer.from_pretrained(folder)
    scorer = Scorer.from_pretrained(folder, allow_pickle=True, max_length=128)
    assert score_pairs(scorer, INSTRUCTIONS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    (folder / "training_args.bin").unlink()  # ModelSource (luminary.models) still reads every .bin
    write_jsonl(tmp_path / "data.jsonl", [{"instruction": i, "response": r, "label": 0.5} for i, r in PAIRS])
    train_scorer(ScorerTrainConfig(model=str(folder), data=str(tmp_path / "data.jsonl"), max_steps=1, lr=0.0,
                                   allow_pickle=True, per_device_batch_size=2, accumulate_grad_batches=1,
                                   max_length=128), tmp_path / "run")
    trained = Scorer.from_pretrained(tmp_path / "run" / "scorer", max_length=128)
    assert score_pairs(trained, INSTRUCTIONS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    (folder / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(LuminaryError, match="shard 'pytorch_model-00002-of-00002.bin' is missing"):
        Scorer.from_pretrained(folder, allow_pickle=True)


def flax_tree(model: torch.nn.Module) -> dict:
    """A PyTorch model's weights as Flax's parameter tree (the inverse of transformers' renaming)."""
    tree: dict = {}
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            value = param.detach().numpy()
            if isinstance(module, torch.nn.Linear) and leaf == "weight":
                leaf, value = "kernel", value.T
            elif isinstance(module, torch.nn.Embedding):
                leaf = "embedding"
            elif isinstance(module, torch.nn.LayerNorm) and leaf == "weight":
                leaf = "scale"
            node = tree
            for part in module_name.split("."):
                node = node.setdefault(part, {})
            node[leaf] = np.ascontiguousarray(value)
    return tree


def flax_bytes(tree: dict) -> bytes:
    """flax.serialization.to_bytes: msgpack, each array an extension of type 1 holding (shape, dtype, bytes)."""
    import msgpack

    def pack(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C")), use_bin_type=True))
        raise TypeError(type(x))

    return msgpack.packb(tree, default=pack, strict_types=True)


@pytest.mark.skipif(importlib.util.find_spec("msgpack") is None,
                    reason="msgpack (installed with flax) is not installed: Flax weights cannot be read")
def test_a_flax_msgpack_folder_scores_as_its_pytorch_weights(tmp_path, make_roberta_scorer, cli):
    folder = make_roberta_scorer(tmp_path / "flax", seed=7)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    expected = direct_scores(folder, PAIRS)
    if importlib.util.find_spec("flax") is not None:  # flax's own writer where it is installed
        from flax.serialization import to_bytes

        data = to_bytes(flax_tree(model))
    else:
        data = flax_bytes(flax_tree(model))
    (folder / "flax_model.msgpack").write_bytes(data)
    (folder / "model.safetensors").unlink()
    scorer = Scorer.from_pretrained(folder, max_length=128)
    assert score_pairs(scorer, INSTRUCTIONS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    # `scorer init` writes it as a safetensors folder, which every command (train included) reads
    res = cli("scorer", "init", folder, "--out", tmp_path / "st")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "st" / "model.safetensors").is_file()
    assert direct_scores(tmp_path / "st", PAIRS) == pytest.approx(expected, abs=1e-5)
    write_jsonl(tmp_path / "data.jsonl", [{"instruction": i, "response": r, "label": 1.0} for i, r in PAIRS])
    (tmp_path / "train.yaml").write_text(f"model: {folder}\ndata: {tmp_path / 'data.jsonl'}\nmax_steps: 1\n")
    cli("scorer", "train", tmp_path / "train.yaml", "--out", tmp_path / "run").one_line_error(
        "Flax only", "luminary scorer init")
    # a tree that misses a tensor names it
    tree = flax_tree(model)
    del tree["classifier"]["out_proj"]["bias"]
    (folder / "flax_model.msgpack").write_bytes(flax_bytes(tree))
    with pytest.raises(LuminaryError, match="missing \\['classifier.out_proj.bias'\\]"):
        Scorer.from_pretrained(folder)
    (folder / "flax_model.msgpack").write_bytes(b"\xc1 not msgpack")
    with pytest.raises(LuminaryError, match="not a readable Flax msgpack file"):
        Scorer.from_pretrained(folder)


@pytest.mark.skipif(importlib.util.find_spec("flax") is None,
                    reason="flax is not installed (luminary does not install flax or jax); the msgpack test above "
                           "writes flax's format by hand")
def test_flax_bytes_equal_flax_serialization(make_roberta_scorer, tmp_path):
    from flax.serialization import to_bytes

    model = AutoModelForSequenceClassification.from_pretrained(make_roberta_scorer(tmp_path / "f", seed=8))
    assert flax_bytes(flax_tree(model)) == to_bytes(flax_tree(model))
