"""``luminary score|rerank`` and ``luminary scorer ...``: JSONL in, JSONL out; bad input is one line, exit 2."""

import json

import pytest

from luminary.core.io import read_jsonl, write_jsonl
from luminary.scorer import Scorer, score_pairs




def test_score_writes_scores(cli, cappy_dir, tmp_path):
    rows = [{"instruction": "Name a color.", "response": "blue", "id": 7},
            {"instruction": "Name a color.", "response": "a long answer about rivers", "id": 8}]
    write_jsonl(tmp_path / "in.jsonl", rows)
    res = cli("score", cappy_dir, "--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.jsonl")
    assert res.returncode == 0, res.stderr
    out = read_jsonl(tmp_path / "out.jsonl")
    expected = score_pairs(Scorer.from_pretrained(cappy_dir), [r["instruction"] for r in rows], [r["response"] for r in rows])
    assert [r["id"] for r in out] == [7, 8]
    assert [r["score"] for r in out] == pytest.approx(expected, abs=1e-6)
    res = cli("score", cappy_dir, "--input", tmp_path / "in.jsonl")  # to stdout
    assert [json.loads(line)["score"] for line in res.stdout.splitlines()] == pytest.approx(expected, abs=1e-6)


def test_rerank_orders_candidates_and_names_the_best(cli, cappy_dir, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Does it return?", "candidates": ["yes", "no", "perhaps"]}])
    res = cli("rerank", cappy_dir, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl")
    assert res.returncode == 0, res.stderr
    [row] = read_jsonl(tmp_path / "out.jsonl")
    scores = [r["score"] for r in row["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert row["best"] == row["ranking"][0]["text"] == row["candidates"][row["best_index"]]


def test_a_missing_field_names_its_line(cli, cappy_dir, tmp_path):
    (tmp_path / "in.jsonl").write_text(
        '{"instruction": "a", "response": "b"}\n\n{"instruction": "c"}\n')
    cli("score", cappy_dir, "-i", tmp_path / "in.jsonl").one_line_error("line 3", "'response'")


def test_an_empty_candidate_list_names_its_line(cli, cappy_dir, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "a", "candidates": ["x"]}, {"instruction": "b", "candidates": []}])
    cli("rerank", cappy_dir, "-i", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl").one_line_error(
        "line 2", "'candidates' is empty")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_head_with_several_outputs_is_refused(cli, make_roberta_scorer, tmp_path):
    folder = make_roberta_scorer(tmp_path / "three", num_labels=3)
    write_jsonl(tmp_path / "in.jsonl", [{"instruction": "a", "response": "b"}])
    cli("score", folder, "-i", tmp_path / "in.jsonl").one_line_error("3 outputs", "one regression output")


def test_init_build_data_train_best_of_n(cli, bert_backbone_dir, llama_dir, tmp_path):
    res = cli("scorer", "init", bert_backbone_dir, "--out", tmp_path / "scorer0", "--num-layers", "2")
    assert res.returncode == 0, res.stderr
    assert Scorer.from_pretrained(tmp_path / "scorer0").model.config.num_hidden_layers == 2
    tasks = [{"task": "t", "instruction": f"say {w}", "references": [w]} for w in ("one", "two", "three", "four")]
    write_jsonl(tmp_path / "tasks.jsonl", tasks)
    res = cli("scorer", "build-data", "-i", tmp_path / "tasks.jsonl", "-o", tmp_path / "data.jsonl",
              "--generator", llama_dir, "--n", "3", "--max-new-tokens", "4", "--size", "40")
    assert res.returncode == 0, res.stderr
    data = read_jsonl(tmp_path / "data.jsonl")
    assert len(data) == 40 and {"gold", "negative", "beam4"} <= {d["source"] for d in data}
    (tmp_path / "train.yaml").write_text(
        f"model: {tmp_path / 'scorer0'}\ndata: {tmp_path / 'data.jsonl'}\nmax_steps: 2\n"
        "per_device_batch_size: 4\naccumulate_grad_batches: 1\nmax_length: 32\n")
    res = cli("scorer", "train", tmp_path / "train.yaml", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "scorer" / "model.safetensors").is_file()
    write_jsonl(tmp_path / "q.jsonl", [{"instruction": "say five"}])
    res = cli("scorer", "best-of-n", tmp_path / "run" / "scorer", llama_dir, "-i", tmp_path / "q.jsonl",
              "--n", "4", "--max-new-tokens", "4")
    assert res.returncode == 0, res.stderr
    [row] = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(row["candidates"]) == 4 and row["best"] in [c["text"] for c in row["candidates"]]


def test_train_config_typo_is_one_line(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("model: m\ndata: d\nlearning_rate: 1\n")
    cli("scorer", "train", tmp_path / "bad.yaml").one_line_error("learning_rate", "unknown key")
