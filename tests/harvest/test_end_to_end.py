"""End to end on tiny transformers models (BERT masked LM, Llama causal LM) through the command line."""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from luminary.core.io import verify_manifest

RELATIONS = {"relations": [{"name": "returns", "prompt": "<ENT0> returns <ENT1> .",
                            "seeds": [["self", "value"], ["return", "file"], ["name", "data"], ["type", "string"]],
                            "prompts": ["the <ENT1> of <ENT0> ."]}]}


@pytest.fixture
def harvest_cli(monkeypatch, cli):
    """``luminary harvest ...`` through luminary's own main (its one-line errors), harvest registered alone."""
    import luminary.cli.app as app_module
    from luminary.cli.harvest import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setattr(app_module, "app", app)
    return cli


def save_tiny(kind, tokenizer_dir, folder):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification, LlamaConfig, \
        LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    if kind == "causal":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=64))
    else:
        tok.add_special_tokens({"mask_token": "<mask>"})
        config = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=64)
        model = (BertForMaskedLM if kind == "masked" else BertForSequenceClassification)(config)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("harvest_models")
    return {kind: save_tiny(kind, tokenizer_dir, root / kind) for kind in ("masked", "causal", "classifier")}


@pytest.fixture
def relations(tmp_path):
    path = tmp_path / "relations.yaml"
    path.write_text(yaml.safe_dump(RELATIONS))
    return path


@pytest.mark.parametrize("kind, search", [("masked", "dfs"), ("causal", "beam")])
def test_harvest_writes_every_file_and_a_manifest(tmp_path, harvest_cli, models, relations, kind, search):
    out = tmp_path / "kg"
    result = harvest_cli("harvest", relations, "--model", models[kind], "--out", out, "--n", 4, "--search", search)
    assert result.returncode == 0, result.stderr
    assert "returns" in result.stdout and "top tuple" in result.stdout
    assert verify_manifest(out) == []
    folder = out / "returns"
    prompts = json.loads((folder / "prompts.json").read_text())
    assert {p["prompt"] for p in prompts} == {"<ENT0> returns <ENT1> .", "the <ENT1> of <ENT0> ."}
    assert sum(p["weight"] for p in prompts) == pytest.approx(1.0)
    tuples = json.loads((folder / "ent_tuples.json").read_text())
    assert 1 <= len(tuples) <= 4
    assert [t["score"] for t in tuples] == sorted((t["score"] for t in tuples), reverse=True)
    assert all(len(t["entities"]) == 2 for t in tuples)
    lines = (folder / "triples.jsonl").read_text().splitlines()
    assert [json.loads(line)["entities"] for line in lines] == [t["entities"] for t in tuples]
    assert (folder / "triples.csv").read_text().splitlines()[0] == "relation,ent0,ent1,score"
    assert json.loads((out / "config.json").read_text())["kind"] == kind


def test_bad_inputs_are_one_line_exit_2(tmp_path, harvest_cli, models, relations):
    out = tmp_path / "kg"
    harvest_cli("harvest", relations, "--model", models["classifier"], "--out", out).one_line_error(
        "BertForSequenceClassification", "neither a masked LM nor a causal LM")
    bad_arity = tmp_path / "arity.yaml"
    bad_arity.write_text(yaml.safe_dump({"relations": [{**RELATIONS["relations"][0], "prompt": "<ENT0> returns ."}]}))
    harvest_cli("harvest", bad_arity, "--model", models["masked"], "--out", out).one_line_error(
        "relations[0]", "slots [0]", "2 entities")
    long_seed = tmp_path / "long.yaml"
    rel = json.loads(json.dumps(RELATIONS))
    rel["relations"][0]["seeds"][0] = ["object", "value"]
    long_seed.write_text(yaml.safe_dump(rel))
    harvest_cli("harvest", long_seed, "--model", models["masked"], "--out", out).one_line_error(
        "'object'", "5 tokens", "--max-ent-tokens 2")
    harvest_cli("harvest", relations, "--model", tmp_path / "nowhere", "--out", out).one_line_error("not found")
    assert not out.exists()


def test_a_local_causal_lm_paraphrases(models):
    from luminary.harvest.prompts import hf_paraphraser, paraphrase_prompts

    paraphrase = hf_paraphraser(models["causal"], num=2, max_new_tokens=6)
    texts = paraphrase("self returns value .")
    assert len(texts) <= 2 and all(isinstance(t, str) and "\n" not in t for t in texts)
    prompts = paraphrase_prompts("<ENT0> returns <ENT1> .", RELATIONS["relations"][0]["seeds"], generator=paraphrase)
    assert prompts[0] == "<ENT0> returns <ENT1> ." and len(prompts) <= 10
