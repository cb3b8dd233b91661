"""``luminary ctc``: scoring JSONL, correlating, the offline encoder; bad input gives one line and exit 2."""

from __future__ import annotations

import json

import pytest

from luminary.core.io import read_jsonl, sha256_file, verify_manifest, write_jsonl

DOC = "The city council approved a new park on Monday. Construction starts in May."
ROWS = [
    {"id": "a", "system": "s1", "doc": DOC, "hypo": "The council approved a park.", "refs": ["A new park was approved."]},
    {"id": "b", "system": "s2", "doc": DOC, "hypo": "Dogs won the election in Paris.", "refs": ["Park approved."]},
    {"id": "c", "system": "s1", "doc": DOC, "hypo": "Construction of the park starts in May.", "refs": ["Work in May."]},
]




def test_score_summaries_matches_the_python_api(cli, tmp_path, minilm_aligner):
    from luminary.ctc import SummarizationScorer

    write_jsonl(tmp_path / "in.jsonl", ROWS)
    res = cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "consistency")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    expected = SummarizationScorer(minilm_aligner).score_batch([DOC] * 3, None, [r["hypo"] for r in ROWS],
                                                               aspect="consistency")
    assert [line["id"] for line in lines] == ["a", "b", "c"] and [line["system"] for line in lines] == ["s1", "s2", "s1"]
    assert [line["score"] for line in lines] == pytest.approx(expected, abs=1e-6)
    assert lines[1]["score"] < lines[0]["score"]  # the hallucinated summary scores lower

    res = cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "relevance",
              "--out", tmp_path / "scores.jsonl")
    assert res.returncode == 0, res.stderr
    write_jsonl(tmp_path / "human.jsonl", [{"id": r["id"], "relevance": v, "system": r["system"]}
                                           for r, v in zip(ROWS, [4.0, 1.0, 3.5])])
    res = cli("ctc", "correlate", tmp_path / "scores.jsonl", tmp_path / "human.jsonl", "--field", "relevance")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["instance"]["n"] == 3 and report["system"]["n"] == 2


@pytest.mark.parametrize("edit, args, needles", [
    (lambda rows: rows[:1] + [{**rows[1], "hypo": "  "}] + rows[2:], ["--aspect", "consistency"],
     ["line 2", "hypothesis ('hypo') is empty"]),
    (lambda rows: rows[:2] + [{**rows[2], "refs": []}], ["--aspect", "relevance"],
     ["line 3", "'refs' must hold at least one"]),
    (lambda rows: [{k: v for k, v in rows[0].items() if k != "refs"}] + rows[1:], ["--aspect", "relevance"],
     ["line 1", "missing field 'refs'"]),
    (lambda rows: rows[:2] + [{k: v for k, v in rows[2].items() if k != "doc"}], ["--aspect", "consistency"],
     ["line 3", "missing field 'doc'"]),
    (lambda rows: rows, ["--aspect", "consistency", "--model", "/nonexistent/encoder"],
     ["/nonexistent/encoder", "model folder not found"]),
    (lambda rows: rows, ["--aspect", "fluency"], ["unknown aspect 'fluency'"]),
    (lambda rows: rows, ["--aspect", "consistency", "--align", "D"], ["needs a trained model folder"]),
    (lambda rows: rows, ["--aspect", "consistency", "--align", "E", "--layer", "9"], ["layer must be between 0 and 6"]),
])
def test_score_bad_input(cli, tmp_path, edit, args, needles):
    write_jsonl(tmp_path / "in.jsonl", edit([dict(r) for r in ROWS]))
    cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", *args).one_line_error(*needles)


def test_unknown_task_and_missing_file(cli, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    cli("ctc", "score", tmp_path / "in.jsonl", "--task", "poetry", "--aspect", "x").one_line_error("unknown task")
    cli("ctc", "score", tmp_path / "no.jsonl", "--task", "dialog", "--aspect", "groundedness").one_line_error(
        "file not found")


def test_make_encoder_writes_a_loadable_folder(cli, tmp_path, minilm):
    from luminary.ctc.aligners import EmbeddingAligner

    out = tmp_path / "minilm"
    res = cli("ctc", "make-encoder", out)
    assert res.returncode == 0, res.stderr
    assert sha256_file(out / "model.safetensors") == sha256_file(minilm / "model.safetensors")
    assert verify_manifest(out) == []
    assert EmbeddingAligner(out).layer == 6
    cli("ctc", "make-encoder", out).one_line_error("already exists")


def test_dialog_and_style_transfer_from_the_command_line(cli, tmp_path):
    write_jsonl(tmp_path / "dialog.jsonl", [{"fact": "Paris is the capital of France.", "dialog_history": "Hi!",
                                             "hypo": "Paris is the French capital."}])
    res = cli("ctc", "score", tmp_path / "dialog.jsonl", "--task", "dialog", "--aspect", "engagingness")
    assert res.returncode == 0 and json.loads(res.stdout)["score"] > 1.0  # a sum over tokens
    write_jsonl(tmp_path / "style.jsonl", [{"input_sent": "the food was great", "hypo": "the food was awful"}])
    res = cli("ctc", "score", tmp_path / "style.jsonl", "--task", "style_transfer", "--aspect", "preservation")
    assert res.returncode == 0 and 0 < json.loads(res.stdout)["score"] <= 1


def test_an_option_the_aligner_does_not_take(cli, tmp_path, tiny_d):
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    cli("ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "consistency",
                       "--align", "D", "--model", tiny_d, "--layer", "2").one_line_error("aligner D takes no option 'layer'")


def test_train_and_make_data_refuse_bad_input(cli, tmp_path):
    (tmp_path / "cfg.yaml").write_text("kind: D\nbase_model: x\ndata: y\nlearning_rate: 1\n")
    cli("ctc", "train", tmp_path / "cfg.yaml", "--out", tmp_path / "run").one_line_error("learning_rate", "unknown key")
    write_jsonl(tmp_path / "in.jsonl", [{"context": "Some text."}])
    cli("ctc", "make-data", tmp_path / "in.jsonl", tmp_path / "out.jsonl", "--infiller",
                       tmp_path / "nope").one_line_error("model folder not found")
    assert not (tmp_path / "out.jsonl").exists()
    assert read_jsonl(tmp_path / "in.jsonl") == [{"context": "Some text."}]


def test_baseline_command_measures_unrelated_pairs(cli, tmp_path, tiny_bert):
    write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in ("same words", "same words", "same words")])
    res = cli("ctc", "baseline", tmp_path / "texts.jsonl", "--model", tiny_bert, "--pairs", "5")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["baseline"] == pytest.approx(1.0, abs=1e-5)  # identical texts align fully
    cli("ctc", "baseline", tmp_path / "texts.jsonl", "--field", "body").one_line_error("line 1: missing field 'body'")


def test_the_faithful_options_from_the_command_line(cli, tmp_path, minilm_aligner):
    """--preset refuses an encoder of another shape; --stopwords picks the list; an option an aligner
    does not take is one line."""
    write_jsonl(tmp_path / "in.jsonl", ROWS)
    base = ["ctc", "score", tmp_path / "in.jsonl", "--task", "summarization", "--aspect", "consistency"]
    cli(*base, "--preset", "roberta-large").one_line_error("roberta-large")
    cli(*base, "--word-features", "sum").one_line_error("word_features")
    scores = {}
    for name in ("nltk", "sklearn"):
        res = cli(*base, "--stopwords", name, "--remove-stopwords")
        assert res.returncode == 0, res.stderr
        scores[name] = [json.loads(line)["score"] for line in res.stdout.splitlines()]
    assert scores["nltk"] != scores["sklearn"]  # 179 words against 318
    cli(*base, "--stopwords", "spacy").one_line_error("spacy")
