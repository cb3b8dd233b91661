"""Regenerate ``mergekit_pad.json``: mergekit 0.1.5 merges under ``tokenizer.pad_to_multiple_of``.

Documentation of where the expected tensors of ``test_mergekit_config_keys.py``'s padding test come
from; not run by the suite (CI has no mergekit). mergekit lives in its own virtual environment (see
``make_mergekit_expected.py``)::

    /tmp/mk/bin/python tests/merge/make_mergekit_pad.py

The input models are those of ``mergekit_config_keys.json`` (three tiny Llamas with word-level
vocabularies of 10 tokens, a and b differing in two), rebuilt from that file; stored here are each
case's config (model names ``a``, ``b``, ``c``), mergekit's output tensors (``output/<case>/``),
its output vocabulary and the ``vocab_size`` of its output config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

HERE = Path(__file__).parent
INPUTS = HERE / "mergekit_config_keys.json"
OUT_JSON = HERE / "mergekit_pad.json"

CASES = {
    # a union of 12 tokens padded to 16 rows
    "pad_union": {"merge_method": "linear", "dtype": "float32",
                  "models": [{"model": "a", "parameters": {"weight": 1.0}}, {"model": "b", "parameters": {"weight": 3.0}}],
                  "tokenizer": {"source": "union", "pad_to_multiple_of": 8}},
    # the same vocabulary everywhere (10 tokens) padded to 12 rows, with a base and a forced token rule
    "pad_base": {"merge_method": "task_arithmetic", "base_model": "a", "dtype": "float32",
                 "models": [{"model": "c", "parameters": {"weight": 0.7}}],
                 "tokenizer": {"source": "base", "pad_to_multiple_of": 4,
                               "tokens": {"row": {"source": "c", "force": True}}}},
    # 12 tokens, already a multiple of 6: nothing is padded
    "pad_exact": {"merge_method": "linear", "dtype": "float32",
                  "models": [{"model": "a", "parameters": {"weight": 2.0}}, {"model": "b", "parameters": {"weight": 1.0}}],
                  "tokenizer": {"source": "union", "pad_to_multiple_of": 6}},
}


def build_inputs(folder: Path) -> None:
    fixture = json.loads(INPUTS.read_text())
    for name, files in fixture["files"].items():
        (folder / name).mkdir()
        for fname, text in files.items():
            (folder / name / fname).write_text(text)
        prefix = f"input/{name}/"
        save_file({k[len(prefix):]: torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
                   for k, v in fixture["tensors"].items() if k.startswith(prefix)},
                  folder / name / "model.safetensors", metadata={"format": "pt"})


def rename(config: dict, folder: Path) -> dict:
    text = json.dumps(config)
    for name in "abc":
        text = text.replace(f'"{name}"', json.dumps(str(folder / name)))
    return json.loads(text)


def main() -> None:
    tensors, vocabs, sizes = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_inputs(folder)
        for case, config in CASES.items():
            path = folder / f"{case}.yaml"
            path.write_text(yaml.safe_dump(rename(config, folder)))
            out = folder / f"out_{case}"
            subprocess.run([str(Path(sys.executable).with_name("mergekit-yaml")), str(path), str(out),
                            "--copy-tokenizer"], check=True)
            for f in sorted(out.glob("*.safetensors")):
                tensors.update({f"output/{case}/{k}": v for k, v in load_file(f).items()})
            tok = json.loads((out / "tokenizer.json").read_text())
            vocabs[case] = {"vocab": tok["model"]["vocab"],
                            "added": {t["content"]: t["id"] for t in tok["added_tokens"]}}
            sizes[case] = json.loads((out / "config.json").read_text())["vocab_size"]
    stored = {k: {"shape": list(v.shape), "data": v.float().flatten().tolist()} for k, v in sorted(tensors.items())}
    OUT_JSON.write_text(json.dumps({"mergekit": "0.1.5", "torch": torch.__version__, "cases": CASES,
                                    "vocabs": vocabs, "vocab_size": sizes, "tensors": stored}) + "\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()
