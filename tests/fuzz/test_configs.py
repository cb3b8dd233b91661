"""Fuzzing the command line: damaged configs for every command that trains or merges, damaged safetensors.

Property: exit 2 with one line (or success), never a traceback, never a file written outside ``--out``
(but for its lock file beside it). Bounded: a fixed seed and a few examples per command, so CI stays
well under two minutes; ``LUMINARY_FUZZ_EXAMPLES`` runs more.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.train.test_every_capability import spec  # noqa: F401  (the capabilities' tiny inputs)

EXAMPLES = int(os.environ.get("LUMINARY_FUZZ_EXAMPLES", "12"))
# what a run's length or size hangs on: fuzzed with wrong types and small numbers, never huge ones,
# so that a valid example stays a short run
BUDGET = {"max_steps", "steps", "n_epochs", "max_new_tokens", "per_device_batch_size", "global_batch",
          "micro_batch", "samples_per_source", "batch_size", "accumulate_grad_batches", "eval_every", "every",
          "count", "seq_len", "max_length", "num_samples", "prefetch"}


def configs(spec: dict, model: Path) -> dict[str, tuple[list[str], dict]]:
    """One valid, tiny config per command (what the mutations start from)."""
    return {
        "train": (["train"], {
            "model": "llama-debug", "tokenizer": spec["tokenizer"], "data": {"path": spec["code"], "seq_len": 32},
            "train": {"per_device_batch_size": 2, "max_steps": 2}, "optimizer": {"lr": 0.003},
            "deploy": {"seed": 1, "precision": "fp32"}}),
        "pretrain": (["pretrain"], {
            "name": "fuzz", "sources": {"code": {"type": "files", "path": spec["code"]}},
            "tokenizer": {"path": spec["tokenizer"]}, "model": {"preset": "crystal-debug"},
            "train": {"global_batch": 2, "micro_batch": 2, "seq_len": 32},
            "phases": [{"name": "p1", "steps": 2, "weights": {"code": 1.0},
                        "schedule": {"kind": "linear", "peak_lr": 0.003, "warmup_steps": 1}}],
            "validation": {"samples_per_source": 2, "batch_size": 2}, "deploy": {"seed": 3}}),
        "scorer": (["scorer", "train"], {
            "model": spec["encoder"], "data": spec["pairs"], "max_length": 32, "lr": 1e-3,
            "per_device_batch_size": 2, "max_steps": 2, "deploy": {"seed": 5}}),
        "ctc": (["ctc", "train"], {
            "kind": "D", "base_model": spec["aligner_encoder"], "data": spec["aligner_rows"], "lr": 1e-3,
            "per_device_batch_size": 2, "max_steps": 2, "eval_every": 2, "deploy": {"seed": 6}}),
        "rl": (["rl", "train"], {
            "policy": {"model": "llama-debug", "tokenizer": spec["tokenizer"]},
            "data": {"examples": [{"source": s, "target": t} for s, t in spec["sql_examples"][:2]]},
            "rewards": [{"kind": "bleu", "reference": "target"}], "sampling": {"max_new_tokens": 3},
            "sql": {"mode": "mixed"}, "train": {"per_device_batch_size": 2, "max_steps": 1},
            "deploy": {"seed": 7}}),
        "merge": (["merge"], {
            "merge_method": "slerp", "base_model": str(model), "dtype": "float32",
            "models": [{"model": str(model)}, {"model": str(model) + "-b"}],
            "parameters": {"t": [{"filter": "self_attn", "value": 0.3}, {"value": 0.5}]}}),
    }


def paths(tree, prefix=()):
    """Every key path in a nested dict / list."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


def junk(key) -> st.SearchStrategy:
    small = key in BUDGET
    numbers = st.one_of(st.integers(-3, 3), st.floats(-3, 3)) if small else st.one_of(
        st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
    return st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=6),
                     st.lists(st.integers(-2, 2), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(0, 2),
                                                                               max_size=2))


@st.composite
def mutated(draw, base: dict):
    """``base`` with one to three changes: a value replaced by junk, a key removed, an unknown key added."""
    config = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(config)) or [()]))
        parent = config
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if not where:
            action = "add"
        key = where[-1] if where else None
        if action == "replace":
            parent[key] = draw(junk(key))
        elif action == "remove":
            del parent[key]
        else:
            target = parent[key] if where and isinstance(parent[key], dict) else config
            target[draw(st.sampled_from(["typo", "phasess", "depoly", "lr ", "x"]))] = draw(junk(None))
        if not isinstance(config, dict):
            break
    return config


def outside(root: Path, out: Path) -> set[str]:
    """Everything under ``root`` but ``out``, its lock and the inputs."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if out not in p.parents and p != out and p.name != f".{out.name}.lock"}


@pytest.fixture(scope="module")
def bases(spec, tmp_path_factory, tokenizer):  # noqa: F811
    from luminary.models import build_model

    folder = tmp_path_factory.mktemp("fuzz_models")
    for name, s in (("m", 0), ("m-b", 1)):
        build_model("llama-debug", len(tokenizer), seed=s).save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    return configs(json.loads(Path(spec).read_text()), folder / "m")


@pytest.mark.parametrize("command", ["train", "pretrain", "scorer", "ctc", "rl", "merge"])
def test_a_damaged_config_is_one_line_or_a_run(command, bases, cli, tmp_path_factory):
    args, base = bases[command]

    @seed(20261203)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(config=mutated(base), raw=st.sampled_from([None, b"\xff", b"\xc3\x28", b"\x00", b"{"]))
    def run(config, raw):
        root = tmp_path_factory.mktemp(f"fuzz_{command}")
        path = root / "config.yaml"
        text = yaml.safe_dump(config).encode()
        path.write_bytes(text if raw is None else text[: len(text) // 2] + raw + text[len(text) // 2:])
        out = root / "out"
        before = outside(root, out)
        result = cli(*args, path, "--out", out)
        if result.returncode != 0:
            result.one_line_error()
        assert outside(root, out) == before

    run()


def damaged_headers() -> st.SearchStrategy:
    return st.one_of(
        st.binary(max_size=40),  # not even a length
        st.builds(lambda n, body: struct.pack("<Q", n) + body, st.integers(0, 2**64 - 1), st.binary(max_size=64)),
        st.builds(lambda body: struct.pack("<Q", len(body)) + body,
                  st.sampled_from([b"{}", b"[]", b'{"w": 1}', b'{"w": {"dtype": "F32", "shape": [4], '
                                   b'"data_offsets": [0, 99]}}', b'{"w": {"dtype": "Q9", "shape": [1], '
                                   b'"data_offsets": [0, 4]}}', '{"\u00e9": 1'.encode()])))


@seed(20261203)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=damaged_headers())
def test_a_damaged_safetensors_file_is_one_line(header, bases, cli, tmp_path_factory):
    """A model folder whose weights file is damaged: generate and merge name it, exit 2."""
    root = tmp_path_factory.mktemp("damaged")
    model = Path(bases["merge"][1]["base_model"])
    folder = root / "model"
    folder.mkdir()
    for file in model.iterdir():
        if file.suffix != ".safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    (folder / "model.safetensors").write_bytes(header)
    cli("generate", folder, "--prompt", "x", "--max-new-tokens", "1").one_line_error()
    config = root / "merge.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "dtype": "float32",
                                      "models": [{"model": str(folder), "parameters": {"weight": 1.0}}]}))
    cli("merge", config, "--out", root / "out").one_line_error()
    assert not (root / "out").exists()
