"""luminary evaluate: lm-evaluation-harness on local task YAMLs, a model, or every checkpoint of a run."""

import json
import math
import shutil
from pathlib import Path

import pytest

from luminary.core.errors import LuminaryError

pytest.importorskip("lm_eval")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "lm-eval"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tokenizer, tokenizer_dir):
    """A llama-debug folder with weights that score choices differently (a few steps on the MC contexts)."""
    import torch

    from luminary.models import build_model

    model = build_model("llama-debug", len(tokenizer), seed=0)
    rows = [json.loads(line) for line in (EXAMPLES / "python_mc.jsonl").read_text().splitlines()]
    text = "".join(r["context"] + r["choices"][r["answer"]] + "\n" for r in rows)
    ids = torch.tensor([tokenizer(text)["input_ids"][:256]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    folder = tmp_path_factory.mktemp("eval") / "model"
    model.save_pretrained(folder)
    shutil.copytree(tokenizer_dir, folder, dirs_exist_ok=True)
    return folder


def test_cli_evaluates_a_model_on_the_shipped_local_tasks(model_folder, tmp_path, cli):
    out = tmp_path / "results.json"
    res = cli("evaluate", model_folder, "--tasks", "python_mc,python_ppl", "--include", EXAMPLES, "--out", out)
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    mc, ppl = result["tasks"]["python_mc"], result["tasks"]["python_ppl"]
    assert mc["samples"] == 24 and 0.0 <= mc["metrics"]["acc"] <= 1.0 and mc["stderr"]["acc"] > 0
    assert mc["data_sha256"]["python_mc.jsonl"] == __import__("hashlib").sha256(
        (EXAMPLES / "python_mc.jsonl").read_bytes()).hexdigest()
    assert ppl["samples"] == 6 and ppl["metrics"]["byte_perplexity"] > 1.0
    assert ppl["metrics"]["bits_per_byte"] == pytest.approx(math.log2(ppl["metrics"]["byte_perplexity"]))
    assert ppl["higher_is_better"]["byte_perplexity"] is False
    assert f"python_mc\tacc\t{mc['metrics']['acc']:.4f}" in res.stdout and f"wrote {out}" in res.stdout


def test_in_house_multiple_choice_scores_equal_lm_eval_per_choice(model_folder):
    """merge's `multiple_choice` evaluator tokenizes and scores each choice as lm-eval does."""
    import torch

    from luminary.analysis.harness import evaluate_model, resolve_tasks
    from luminary.data.tokenizer import encode_pair
    from luminary.merge import evaluators
    from luminary.models import load_model, load_tokenizer

    model, tok = load_model(model_folder), load_tokenizer(model_folder)
    result = evaluate_model(model, tok, resolve_tasks(["python_mc"], [EXAMPLES]), log_samples=True)
    theirs = {s["doc_id"]: [r[0][0] for r in s["resps"]] for s in result["tasks"]["python_mc"]["per_sample"]}
    rows = [json.loads(line) for line in (EXAMPLES / "python_mc.jsonl").read_text().splitlines()]
    mine = []
    with torch.no_grad():
        for row in rows:
            scores = []
            for choice in row["choices"]:
                context, tokens = encode_pair(tok, row["context"], choice)
                ids = torch.tensor([context + tokens])
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                scores.append(float(logp[torch.arange(len(context) - 1, ids.shape[1] - 1), ids[0, len(context):]].sum()))
            mine.append(scores)
    for i, scores in enumerate(mine):
        assert scores == pytest.approx(theirs[i], abs=1e-4), i
    acc = sum(max(range(len(s)), key=s.__getitem__) == r["answer"] for s, r in zip(mine, rows)) / len(rows)
    assert acc == result["tasks"]["python_mc"]["metrics"]["acc"]
    # and the batched evaluator merge uses gives the same accuracy
    assert evaluators.multiple_choice(model_folder, str(EXAMPLES / "python_mc.jsonl"), 100, 8) == acc
    lm = evaluators.build_evaluator(evaluators.EvaluatorConfig(kind="lm_eval", task="python_ppl",
                                                               include=[str(EXAMPLES)], metric="byte_perplexity"))
    assert lm(model_folder) < -1.0  # perplexity: lower is better, so the score is its negative


def test_encode_pair_moves_trailing_space_and_handles_an_empty_context(tokenizer):
    from luminary.data.tokenizer import encode_pair

    context, choice = encode_pair(tokenizer, "return ", "value")
    assert tokenizer.decode(context) == "return" and tokenizer.decode(choice) == " value"
    context, choice = encode_pair(tokenizer, "", "x = 1")
    assert context == [tokenizer.eos_token_id] and tokenizer.decode(choice) == "x = 1"


def test_evaluate_every_checkpoint_of_a_run_draws_a_curve(run_dir, tmp_path, cli):
    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    res = cli("evaluate", folder, "--tasks", "python_mc", "--include", EXAMPLES, "--limit", "6")
    assert res.returncode == 0, res.stderr
    curve = json.loads((folder / "analysis" / "benchmark_python_mc.json").read_text())
    from luminary.core.runs import list_checkpoints

    steps = [s for s, _ in list_checkpoints(folder / "checkpoints")]
    assert curve["steps"] == steps and len(curve["metrics"]["acc"]) == len(steps) and curve["source"].startswith("lm-eval")
    assert len(list((folder / "analysis" / "lm_eval").glob("step_*.json"))) == len(steps)
    assert f"next: luminary report {folder}" in res.stdout
    assert cli("report", folder).returncode == 0
    assert 'src="benchmark_python_mc.png"' in (folder / "report" / "index.html").read_text()


def write_task(folder: Path, extra: str, rows: str = '{"context": "a", "choices": ["b", "c"], "answer": 0}\n'):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.jsonl").write_text(rows)
    (folder / "t.yaml").write_text("task: t\ndataset_path: json\noutput_type: multiple_choice\ntest_split: test\n"
                                   'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
                                   + extra)
    return folder


@pytest.mark.parametrize("extra, needle", [
    ("dataset_kwargs: {data_files: {test: ../outside.jsonl}}\n", "lies outside the folder; refused"),
    ("dataset_kwargs: {data_files: {test: /etc/passwd}}\n", "is not a relative path inside the folder"),
    ("dataset_kwargs: {data_files: {test: missing.jsonl}}\n", "dataset_kwargs.data_files.test 'missing.jsonl' not found"),
    ("dataset_kwargs: {data_files: {test: rows.jsonl}}\nprocess_docs: !function utils.process\n",
     "'!function utils.process' runs Python from the task folder"),
    ("dataset_kwargs: {data_files: {test: rows.jsonl}}\nmetric_list: [\n", "not valid YAML"),
])
def test_bad_task_folders_are_refused_in_one_line(tmp_path, cli, model_folder, extra, needle):
    (tmp_path / "outside.jsonl").write_text("{}\n")
    folder = write_task(tmp_path / "tasks", extra)
    res = cli("evaluate", model_folder, "--tasks", "t", "--include", folder)
    res.one_line_error(needle)


def test_include_and_unknown_names(tmp_path, cli, model_folder):
    from luminary.analysis.harness import read_task

    folder = write_task(tmp_path / "tasks", "dataset_kwargs: {data_files: {test: rows.jsonl}}\n")
    (folder / "t.yaml").rename(folder / "base.yaml")
    (folder / "base.yaml").write_text((folder / "base.yaml").read_text().replace("task: t\n", ""))
    (folder / "t2.yaml").write_text("include: base.yaml\ntask: t2\n")
    config = read_task(folder / "t2.yaml")
    assert config["task"] == "t2" and config["dataset_kwargs"]["data_files"]["test"] == str((folder / "rows.jsonl").resolve())
    res = cli("evaluate", model_folder, "--tasks", "no_such_task_anywhere", "--include", folder)
    res.one_line_error("--tasks: 'no_such_task_anywhere' is neither a task in")
    res = cli("evaluate", model_folder, "--tasks", "t2", "--include", tmp_path / "absent")
    res.one_line_error("--include: folder")
    with pytest.raises(LuminaryError, match="loops back"):
        (folder / "t3.yaml").write_text("include: t3.yaml\ntask: t3\n")
        read_task(folder / "t3.yaml")
