"""The config keys ``residual_weight``, ``modules``, ``tokenizer.tokens`` and
``tokenizer.pad_to_multiple_of`` against mergekit 0.1.5: tiny models and mergekit's merges of them
are stored in ``mergekit_config_keys.json`` (made by ``make_mergekit_config_keys.py``; the padded
merges of the same models in ``mergekit_pad.json``, made by ``make_mergekit_pad.py``); luminary
merges the same folders and must give the same tensors and output vocabulary."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.merge.merge_helpers import fixture_tensors, rename, state, write_fixture_models

HERE = Path(__file__).parent
FIXTURE = json.loads((HERE / "mergekit_config_keys.json").read_text())
TENSORS = fixture_tensors(FIXTURE)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_fixture_models(FIXTURE, TENSORS, tmp_path_factory.mktemp("mk_models"))


def merge(case: str, folders, tmp_path, cli) -> Path:
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(rename(FIXTURE["cases"][case], folders)))
    res = cli("merge", path, "--out", tmp_path / case)
    assert res.returncode == 0, res.stderr
    return tmp_path / case


def expected(case: str) -> dict[str, torch.Tensor]:
    prefix = f"output/{case}/"
    return {k[len(prefix):]: v for k, v in TENSORS.items() if k.startswith(prefix)}


def assert_matches_mergekit(case: str, out: Path, rows: list[int] | None = None) -> None:
    """``rows``: luminary's row of each of mergekit's token ids, for the vocabulary tensors."""
    want, got = expected(case), state(out)
    assert set(got) == set(want)
    for name, tensor in want.items():
        if rows is not None and name in ("model.embed_tokens.weight", "lm_head.weight"):
            tensor = tensor.new_zeros(tensor.shape).index_copy_(0, torch.tensor(rows), tensor)
        assert got[name].shape == tensor.shape, name
        assert torch.allclose(got[name], tensor, atol=1e-6), name


@pytest.mark.parametrize("case", ["residual_weight", "modules_models", "modules_slices"])
def test_config_keys_match_mergekit(case, folders, tmp_path, cli):
    assert_matches_mergekit(case, merge(case, folders, tmp_path, cli))


def test_residual_weight_has_no_effect_as_in_mergekit():
    # mergekit 0.1.5 declares residual_weight on output slices and reads it nowhere
    with_, without = expected("residual_weight"), expected("residual_weight_absent")
    assert all(torch.equal(with_[k], without[k]) for k in with_)


@pytest.mark.parametrize("case", ["tokens_union", "tokens_base_force"])
def test_tokenizer_tokens_match_mergekit(case, folders, tmp_path, cli):
    from transformers import AutoTokenizer

    out = merge(case, folders, tmp_path, cli)
    vocab = FIXTURE["vocabs"][case]
    mergekit_vocab, ours = {**vocab["vocab"], **vocab["added"]}, AutoTokenizer.from_pretrained(out).get_vocab()
    # the same tokens; the base's keep their ids. mergekit orders the union's added tokens by hash
    # order (it differs from run to run), luminary by model and id, so rows are matched by token
    assert set(ours) == set(mergekit_vocab)
    assert all(ours[t] == i for t, i in vocab["vocab"].items())
    by_id = {i: t for t, i in mergekit_vocab.items()}
    assert_matches_mergekit(case, out, [ours[by_id[i]] for i in range(len(by_id))])


def test_bad_token_rules_and_modules_are_one_line_errors(folders, tmp_path, cli):
    a, b = str(folders["a"]), str(folders["b"])
    base = {"merge_method": "linear", "models": [{"model": a}, {"model": b}]}
    bad = [({"tokenizer": {"source": "union", "tokens": {"beta": {"source": a}}}}, ["beta", "vocabulary"]),
           ({"tokenizer": {"tokens": {"beta": {"force": True}}}}, ["beta", "source"]),
           ({"tokenizer": {"tokens": {"x": {"source": {"kind": "model_token", "model": a, "token": "nope"}}}}},
            ["nope"]),
           ({"models": None, "modules": {"text_decoder": {"models": [{"model": a}]},
                                         "vision_tower": {"models": [{"model": b}]}}}, ["modules", "default"])]
    for i, (extra, words) in enumerate(bad):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump({**base, **extra}))
        cli("merge", path, "--out", tmp_path / f"out{i}").one_line_error(*words)
        assert not (tmp_path / f"out{i}").exists()


PAD = json.loads((HERE / "mergekit_pad.json").read_text())  # made by make_mergekit_pad.py from these inputs
PAD_TENSORS = fixture_tensors(PAD)


@pytest.mark.parametrize("case", ["pad_union", "pad_base", "pad_exact"])
def test_pad_to_multiple_of_matches_mergekit(case, folders, tmp_path, cli):
    from transformers import AutoTokenizer

    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(rename(PAD["cases"][case], folders)))
    res = cli("merge", path, "--out", tmp_path / case)
    assert res.returncode == 0, res.stderr
    out = tmp_path / case
    # the config's vocab_size is the padded row count (16, 12, 12); the tokenizer keeps its tokens
    assert json.loads((out / "config.json").read_text())["vocab_size"] == PAD["vocab_size"][case]
    vocab = PAD["vocabs"][case]
    mergekit_vocab, ours = {**vocab["vocab"], **vocab["added"]}, AutoTokenizer.from_pretrained(out).get_vocab()
    assert set(ours) == set(mergekit_vocab)
    by_id = {i: t for t, i in mergekit_vocab.items()}
    n = PAD["vocab_size"][case]
    rows = [ours[by_id[i]] for i in range(len(by_id))] + list(range(len(by_id), n))  # pad rows stay in place
    want, got = {k.split("/", 2)[2]: v for k, v in PAD_TENSORS.items() if k.startswith(f"output/{case}/")}, state(out)
    assert set(got) == set(want)
    for name, tensor in want.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert tensor.shape[0] == n
            tensor = tensor.new_zeros(tensor.shape).index_copy_(0, torch.tensor(rows), tensor)
        assert got[name].shape == tensor.shape, name
        assert torch.allclose(got[name], tensor, atol=1e-6), name
    if case == "pad_union":  # the padded folder loads in transformers
        from transformers import AutoModelForCausalLM

        assert AutoModelForCausalLM.from_pretrained(out).get_output_embeddings().weight.shape[0] == n


def test_negative_padding_is_a_one_line_error(tmp_path, cli, zoo):
    config = tmp_path / "pad.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "models": [{"model": str(zoo["a"])}],
                                      "tokenizer": {"source": "union", "pad_to_multiple_of": -8}}))
    cli("merge", "run", config, "--out", tmp_path / "out").one_line_error("pad_to_multiple_of")
    assert not (tmp_path / "out").exists()
