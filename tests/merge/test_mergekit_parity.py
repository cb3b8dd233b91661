"""Behaviours matched to mergekit 0.1.5 end to end: duplicate inputs, chat templates, an unlisted base
in a linear merge, and the rows of tokens only some models have in a union vocabulary."""

import json

import pytest
import torch
import yaml
from transformers import AutoTokenizer

from luminary.merge.chat_templates import BUILT_IN
from luminary.models import build_model

from tests.merge.merge_helpers import state


def write(path, config: dict):
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_model_listed_twice_is_refused(tmp_path, zoo, cli):
    a, b = str(zoo["a"]), str(zoo["b"])
    cfg = {"merge_method": "linear", "models": [{"model": a}, {"model": b}, {"model": a}]}
    cli("merge", write(tmp_path / "m.yaml", cfg), "--out", tmp_path / "out").one_line_error("listed twice", a)
    assert not (tmp_path / "out").exists()
    cfg = {"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [0, 1]},
                                                                  {"model": a, "layer_range": [1, 2]}]}]}
    cli("merge", write(tmp_path / "s.yaml", cfg), "--out", tmp_path / "out").one_line_error("listed twice", a)


def set_template(folder, template: str) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = template
    path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)


def test_chat_template_names_and_auto(tmp_path, zoo, cli):
    models = [{"model": str(zoo[n])} for n in ("base", "a", "b")]
    cfg = {"merge_method": "linear", "models": models, "chat_template": "chatml"}
    res = cli("merge", write(tmp_path / "m.yaml", cfg), "--out", tmp_path / "chatml")
    assert res.returncode == 0, res.stderr
    assert AutoTokenizer.from_pretrained(tmp_path / "chatml").chat_template == BUILT_IN["chatml"]
    assert "<|im_start|>" in BUILT_IN["chatml"] and set(BUILT_IN) == {"alpaca", "chatml", "exaone", "llama3", "mistral"}

    shared = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    set_template(zoo["base"], "{% for m in messages %}{{ m['content'] }}{% endfor %}")  # the reference's own
    set_template(zoo["a"], shared + "\n")  # stripped before counting, as mergekit does
    set_template(zoo["b"], shared)
    res = cli("merge", write(tmp_path / "auto.yaml", {**cfg, "chat_template": "auto"}), "--out", tmp_path / "auto")
    assert res.returncode == 0, res.stderr
    assert AutoTokenizer.from_pretrained(tmp_path / "auto").chat_template == shared

    res = cli("merge", write(tmp_path / "bad.yaml", {**cfg, "chat_template": "chatmll"}), "--out", tmp_path / "bad")
    res.one_line_error("chat_template", "chatmll", "chatml")
    assert not (tmp_path / "bad").exists()


def test_linear_adds_an_unlisted_base_as_an_input(tmp_path, zoo, cli):
    cfg = {"merge_method": "linear", "base_model": str(zoo["base"]), "parameters": {"weight": 0.5},
           "models": [{"model": str(zoo["a"]), "parameters": {"weight": 1.0}},
                      {"model": str(zoo["b"]), "parameters": {"weight": 2.0}}]}
    res = cli("merge", write(tmp_path / "m.yaml", cfg), "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out, g, a, b = (state(f) for f in (tmp_path / "out", zoo["base"], zoo["a"], zoo["b"]))
    for name in ("model.embed_tokens.weight", "model.layers.1.mlp.up_proj.weight", "model.norm.weight"):
        # the base takes the top-level weight and enters the normalisation: (a + 2b + 0.5 base) / 3.5
        assert torch.allclose(out[name], (a[name] + 2 * b[name] + 0.5 * g[name]) / 3.5, atol=1e-6)
    # listed under models, it is one input, not two
    cfg["models"].append({"model": str(zoo["base"]), "parameters": {"weight": 1.0}})
    res = cli("merge", write(tmp_path / "m2.yaml", cfg), "--out", tmp_path / "out2")
    assert res.returncode == 0, res.stderr
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(state(tmp_path / "out2")[name], (a[name] + 2 * b[name] + g[name]) / 4, atol=1e-6)


@pytest.fixture
def big_vocab_models(tmp_path, stdlib_texts):
    from luminary.data.tokenizer import train_bpe

    big = train_bpe(stdlib_texts, vocab_size=600)
    folders = []
    for seed in (3, 4):
        folder = tmp_path / f"big{seed}"
        build_model("llama-debug", len(big), seed=seed).save_pretrained(folder)
        big.save_pretrained(folder)
        folders.append(folder)
    return big.get_vocab(), folders


def test_union_rows_a_model_lacks_are_the_mean_of_the_holders(tmp_path, zoo, tokenizer, big_vocab_models, cli):
    big_vocab, (p, q) = big_vocab_models
    small_vocab = tokenizer.get_vocab()
    extra = [t for t in big_vocab if t not in small_vocab][:20]
    e = "model.embed_tokens.weight"
    sa, sp, sq = state(zoo["a"])[e], state(p)[e], state(q)[e]
    # no base: a lacks the extra tokens, p and q hold them, so a's row is their mean (mergekit), and
    # the linear merge of the row is that mean; copying p's row would give (2p + q) / 3
    cfg = {"merge_method": "linear", "tokenizer_source": "union",
           "models": [{"model": str(zoo["a"])}, {"model": str(p)}, {"model": str(q)}]}
    res = cli("merge", write(tmp_path / "m.yaml", cfg), "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    merged, out_tok = state(tmp_path / "out")[e], AutoTokenizer.from_pretrained(tmp_path / "out")
    for token in extra:
        row, j = out_tok.convert_tokens_to_ids(token), big_vocab[token]
        assert torch.allclose(merged[row], (sp[j] + sq[j]) / 2, atol=1e-6)
    # a token only a has keeps a's row (one holder)
    only_a = [t for t in small_vocab if t not in big_vocab][:5]
    for token in only_a:
        assert torch.allclose(merged[small_vocab[token]], sa[small_vocab[token]], atol=1e-6)

    # with p as the base (a task-vector merge), a lacking row takes the base's row: Δ = 0 for a there
    cfg = {"merge_method": "task_arithmetic", "tokenizer_source": "union", "base_model": str(p),
           "models": [{"model": str(zoo["a"])}, {"model": str(q)}]}
    res = cli("merge", write(tmp_path / "t.yaml", cfg), "--out", tmp_path / "ta")
    assert res.returncode == 0, res.stderr
    merged, out_tok = state(tmp_path / "ta")[e], AutoTokenizer.from_pretrained(tmp_path / "ta")
    for token in extra:
        row, j = out_tok.convert_tokens_to_ids(token), big_vocab[token]
        assert torch.allclose(merged[row], sq[j], atol=1e-6)  # p + (p − p) + (q − p)


def test_new_methods_end_to_end_with_an_optional_and_an_ignored_base(tmp_path, zoo, cli):
    from luminary.merge.methods.spherical import karcher_mean, nuslerp

    g, a, b = (state(zoo[n]) for n in ("base", "a", "b"))
    name = "model.layers.1.mlp.down_proj.weight"
    models = [{"model": str(zoo["a"]), "parameters": {"weight": 1.0}},
              {"model": str(zoo["b"]), "parameters": {"weight": 3.0}}]
    cfg = {"merge_method": "nuslerp", "base_model": str(zoo["base"]), "models": models}
    res = cli("merge", write(tmp_path / "n.yaml", cfg), "--out", tmp_path / "nu")
    assert res.returncode == 0, res.stderr
    want = g[name] + nuslerp(0.75, a[name] - g[name], b[name] - g[name], flatten=True)
    assert torch.allclose(state(tmp_path / "nu")[name], want, atol=1e-6)
    res = cli("merge", write(tmp_path / "n2.yaml", {**cfg, "base_model": None}), "--out", tmp_path / "nu2")
    assert res.returncode == 0, res.stderr
    assert torch.allclose(state(tmp_path / "nu2")[name], nuslerp(0.75, a[name], b[name], flatten=True), atol=1e-6)
    # karcher: an unlisted base is a third input, as in mergekit
    cfg = {"merge_method": "karcher", "base_model": str(zoo["base"]), "models": [{"model": str(zoo["a"])},
                                                                                 {"model": str(zoo["b"])}]}
    res = cli("merge", write(tmp_path / "k.yaml", cfg), "--out", tmp_path / "k")
    assert res.returncode == 0, res.stderr
    want = karcher_mean([a[name], b[name], g[name]], [1 / 3] * 3)
    assert torch.allclose(state(tmp_path / "k")[name], want, atol=1e-6)
