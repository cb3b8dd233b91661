"""Regenerate ``mergekit_modules.json``: mergekit 0.1.5 merges of tiny multi-module models (a
Qwen2.5-VL: text decoder, vision tower, projector) under the config key ``modules``.

Documentation of where the expected tensors of ``test_mergekit_modules.py`` come from; not run by the
suite (CI has no mergekit). mergekit lives in its own virtual environment (see
``make_mergekit_expected.py``)::

    /tmp/mk/bin/python tests/merge/make_mergekit_modules.py

Three tiny Qwen2.5-VL models (text hidden 16 with two layers, vision hidden 8 with two blocks,
random weights) are stored whole in the JSON (weights under ``input/<model>/`` as shape and flat
values to eight significant digits, ``config.json`` as text), with each case's config (model names ``a``, ``b``, ``c``),
mergekit's output tensors (``output/<case>/``) and the layer counts of its output config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

HERE = Path(__file__).parent
OUT_JSON = HERE / "mergekit_modules.json"
NAMES = ("a", "b", "c")

CASES = {
    # each module its own inputs: models with a gradient, slices, module parameters under the models'
    "per_module": {"merge_method": "linear", "dtype": "float32", "parameters": {"normalize": True},
                   "modules": {
                       "text_decoder": {"models": [{"model": "a", "parameters": {"weight": 0.3}},
                                                   {"model": "b", "parameters": {"weight": [0.7, 0.1]}}]},
                       "vision_tower": {"slices": [{"sources": [
                           {"model": "a", "layer_range": [0, 2], "parameters": {"weight": [0.1, 0.9]}},
                           {"model": "c", "layer_range": [0, 2], "parameters": {"weight": 0.5}}]}]},
                       # a scalar: mergekit's projector is two "layers" of the same four tensors, and
                       # which layer's value of a gradient it writes depends on its task scheduling
                       "multi_modal_projector": {"parameters": {"weight": 0.2},
                                                 "models": [{"model": "b"},
                                                            {"model": "c", "parameters": {"weight": 1.0}}]}}},
    # top-level models: every module gets them
    "models_everywhere": {"merge_method": "ties", "base_model": "a", "dtype": "float32",
                          "parameters": {"density": 0.5},
                          "models": [{"model": "b", "parameters": {"weight": 0.6}},
                                     {"model": "c", "parameters": {"weight": [0.2, 0.8],
                                                                   "density": {"filter": "visual", "value": 0.3}}}]},
    # one module listed: a frankenmerge of the text decoder; the other modules are left out
    "text_only_slices": {"merge_method": "passthrough", "dtype": "float32",
                         "modules": {"text_decoder": {"slices": [
                             {"sources": [{"model": "a", "layer_range": [0, 2]}]},
                             {"sources": [{"model": "b", "layer_range": [1, 2]}]}]}}},
    # two merges whose union luminary gives with a per-module merge_method (its own key)
    "text_linear": {"merge_method": "linear", "dtype": "float32",
                    "modules": {"text_decoder": {"models": [{"model": "b", "parameters": {"weight": 1.0}},
                                                            {"model": "c", "parameters": {"weight": 3.0}}]}}},
    "vision_task_arithmetic": {"merge_method": "task_arithmetic", "dtype": "float32",
                               "modules": {"vision_tower": {"slices": [{
                                   "base_model": "a", "parameters": {"weight": 0.5},
                                   "sources": [{"model": "a", "layer_range": [0, 2]},
                                               {"model": "b", "layer_range": [0, 2]},
                                               {"model": "c", "layer_range": [0, 2]}]}]}}},
}


def make_models(folder: Path) -> dict:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    meta = {}
    for i, name in enumerate(NAMES):
        torch.manual_seed(20 + i)
        config = Qwen2_5_VLConfig(
            text_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, vocab_size=16, max_position_embeddings=64,
                             rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=2, hidden_size=8, intermediate_size=8, out_hidden_size=16, num_heads=2,
                               in_channels=3, patch_size=1, spatial_merge_size=2, temporal_patch_size=1,
                               fullatt_block_indexes=[1], window_size=2))
        model = Qwen2_5_VLForConditionalGeneration(config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
        model.save_pretrained(folder / name)
        meta[name] = {"config.json": (folder / name / "config.json").read_text()}
    return meta


def rename(config: dict, folder: Path) -> dict:
    text = json.dumps(config)
    for name in NAMES:
        text = text.replace(f'"{name}"', json.dumps(str(folder / name)))
    return json.loads(text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_models(folder)
        tensors = {f"input/{n}/{k}": v for n in NAMES for k, v in load_file(folder / n / "model.safetensors").items()}
        layers = {}
        for case, config in CASES.items():
            path = folder / f"{case}.yaml"
            path.write_text(yaml.safe_dump(rename(config, folder)))
            out = folder / f"out_{case}"
            subprocess.run([str(Path(sys.executable).with_name("mergekit-yaml")), str(path), str(out),
                            "--no-copy-tokenizer"], check=True)
            for f in sorted(out.glob("*.safetensors")):
                tensors.update({f"output/{case}/{k}": v for k, v in load_file(f).items()})
            written = json.loads((out / "config.json").read_text())
            layers[case] = {"text_config.num_hidden_layers": written["text_config"]["num_hidden_layers"],
                            "vision_config.depth": written["vision_config"]["depth"]}
    # eight significant digits (an error of 1e-8 at most on these values, far under the 1e-6 tested)
    stored = {k: {"shape": list(v.shape), "data": [float(f"{x:.8g}") for x in v.float().flatten().tolist()]}
              for k, v in sorted(tensors.items())}
    OUT_JSON.write_text(json.dumps({"mergekit": "0.1.5", "torch": torch.__version__, "files": files,
                                    "cases": CASES, "layers": layers, "tensors": stored}) + "\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()
