"""Regenerate ``mergekit_config_keys.json``: mergekit 0.1.5 merges of tiny
models for the config keys ``modules``, ``residual_weight`` and ``tokenizer.tokens``.

Documentation of where the expected tensors of ``test_mergekit_config_keys.py`` come from; not run
by the suite (CI has no mergekit). mergekit lives in its own virtual environment (see
``make_mergekit_expected.py``)::

    /tmp/mk/bin/python tests/merge/make_mergekit_config_keys.py

Three tiny Llama models (hidden 8, two layers) with word-level tokenizers are made here and stored
whole in the JSON (weights under ``input/<model>/``, as shape and flat float32 values; configs and
tokenizer files as text; JSON because ``*.safetensors`` is git-ignored), so the test rebuilds exactly the folders mergekit merged; each case's config (model names
``a``, ``b``, ``c``) and mergekit's output tensors (``output/<case>/``) and output vocabulary are
stored beside them.
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
OUT_JSON = HERE / "mergekit_config_keys.json"

SHARED = ["<unk>", "the", "a", "merge", "model", "token", "row", "layer"]
VOCABS = {"a": SHARED + ["alpha", "apple"], "b": SHARED[:3] + ["beta"] + SHARED[3:] + ["bravo"], "c": SHARED + ["alpha", "apple"]}

CASES = {
    # residual_weight: declared on output slices, read nowhere in mergekit 0.1.5
    "residual_weight": {"merge_method": "linear", "dtype": "float32",
                        "slices": [{"sources": [{"model": "a", "layer_range": [0, 2], "parameters": {"weight": 1.0}},
                                                {"model": "c", "layer_range": [0, 2], "parameters": {"weight": 3.0}}],
                                    "residual_weight": 0.25}]},
    "residual_weight_absent": {"merge_method": "linear", "dtype": "float32",
                               "slices": [{"sources": [{"model": "a", "layer_range": [0, 2], "parameters": {"weight": 1.0}},
                                                       {"model": "c", "layer_range": [0, 2], "parameters": {"weight": 3.0}}]}]},
    # modules: the one module of a Llama ("default"); its parameters come after the slice's, before the top's
    "modules_models": {"merge_method": "task_arithmetic", "base_model": "a", "dtype": "float32",
                       "parameters": {"weight": 0.1, "normalize": False},
                       "modules": {"default": {"parameters": {"weight": [0.3, 0.9]},
                                               "models": [{"model": "c"}]}}},
    "modules_slices": {"merge_method": "linear", "dtype": "float32", "parameters": {"weight": 2.0},
                       "modules": {"default": {"parameters": {"weight": {"filter": "mlp", "value": 5.0}},
                                               "slices": [{"sources": [{"model": "a", "layer_range": [0, 1]},
                                                                       {"model": "c", "layer_range": [1, 2],
                                                                        "parameters": {"weight": 1.0}}]},
                                                          {"sources": [{"model": "c", "layer_range": [0, 2]},
                                                                       {"model": "a", "layer_range": [0, 2]}]}]}}},
    # tokenizer.tokens over a union of different vocabularies
    "tokens_union": {"merge_method": "linear", "dtype": "float32",
                     "models": [{"model": "a", "parameters": {"weight": 1.0}}, {"model": "b", "parameters": {"weight": 3.0}}],
                     "tokenizer": {"source": "union", "tokens": {
                         "merge": {"source": "b", "force": True},  # both have it: every row is b's
                         "beta": {"source": {"kind": "model_token", "model": "a", "token": "apple"}},  # a lacks it
                         "alpha": {"source": {"kind": "model_token", "model": "b", "token_id": 2}},  # b lacks it
                         "apple": {"source": {"kind": "zero"}},  # b lacks it: b's row is zero
                         "row": {"source": {"kind": "zero"}},  # both have it, not forced: no effect
                         "<new>": {"source": {"kind": "zero"}},  # in no vocabulary: added, zero
                         "<newer>": {"source": {"kind": "model_token", "model": "b", "token": "bravo"}},
                     }}},
    # the same vocabulary everywhere (base): a forced row still rewrites every input's row
    "tokens_base_force": {"merge_method": "task_arithmetic", "base_model": "a", "dtype": "float32",
                          "models": [{"model": "c", "parameters": {"weight": 0.7}}],
                          "tokenizer": {"source": "base", "tokens": {
                              "layer": {"source": {"kind": "model_token", "model": "c", "token": "the"}, "force": True},
                              "row": {"source": "c", "force": True},
                          }}},
}


def make_models(folder: Path) -> dict:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    meta = {}
    for i, (name, words) in enumerate(VOCABS.items()):
        torch.manual_seed(10 + i)
        config = LlamaConfig(vocab_size=len(words), hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                             tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
        model.save_pretrained(folder / name)
        tok = Tokenizer(WordLevel({w: j for j, w in enumerate(words)}, unk_token="<unk>"))
        tok.pre_tokenizer = Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(folder / name)
        meta[name] = {f.name: f.read_text() for f in sorted((folder / name).iterdir())
                      if f.suffix in (".json", ".jinja") and f.name != "model.safetensors.index.json"}
    return meta


def rename(config: dict, folder: Path) -> dict:
    text = json.dumps(config)
    for name in VOCABS:
        text = text.replace(f'"{name}"', json.dumps(str(folder / name)))
    return json.loads(text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_models(folder)
        tensors = {f"input/{n}/{k}": v for n in VOCABS for k, v in load_file(folder / n / "model.safetensors").items()}
        vocabs = {}
        for case, config in CASES.items():
            path = folder / f"{case}.yaml"
            path.write_text(yaml.safe_dump(rename(config, folder)))
            out = folder / f"out_{case}"
            subprocess.run([str(Path(sys.executable).with_name("mergekit-yaml")), str(path), str(out),
                            "--copy-tokenizer"], check=True)
            for f in sorted(out.glob("*.safetensors")):
                tensors.update({f"output/{case}/{k}": v for k, v in load_file(f).items()})
            vocabs[case] = json.loads((out / "tokenizer.json").read_text())
            vocabs[case] = {"vocab": vocabs[case]["model"]["vocab"],
                            "added": {t["content"]: t["id"] for t in vocabs[case]["added_tokens"]}}
    stored = {k: {"shape": list(v.shape), "data": v.float().flatten().tolist()} for k, v in sorted(tensors.items())}
    OUT_JSON.write_text(json.dumps({"mergekit": "0.1.5", "torch": torch.__version__, "files": files,
                                    "cases": CASES, "vocabs": vocabs, "tensors": stored}) + "\n")
    print(f"wrote {OUT_JSON}")


if __name__ == "__main__":
    main()
