"""The release card carries the lm-eval scores ``luminary evaluate`` measured on the final checkpoint."""

import json
import shutil

import pytest
import yaml
from huggingface_hub import ModelCard

from luminary.core.errors import LuminaryError
from luminary.release import make_release
from luminary.release.card import model_card

from tests.release.card_inputs import card_inputs

# the shape evaluate_checkpoints writes to analysis/lm_eval/step_STEP.json (harness.evaluate_model's summary)
SUMMARY = {
    "lm_eval_version": "0.4.8", "limit": None, "seed": 0, "num_fewshot": None,
    "tasks": {
        "python_mc": {"metrics": {"acc": 0.75, "acc_norm": 0.708333333},
                      "stderr": {"acc": 0.0903, "acc_norm": 0.0948},
                      "higher_is_better": {"acc": True, "acc_norm": True}, "samples": 24,
                      "data_sha256": {"mc.jsonl": "0" * 64}, "config": {"task": "python_mc"}},
        "python_ppl": {"metrics": {"byte_perplexity": 3.58123456, "bits_per_byte": 1.8405,
                                   "word_perplexity_stderr": 0.5, "note": "n/a", "flag": True,
                                   "exact_match,strict-match": 0.125, "exact_match_stderr,strict-match": 0.05},
                       "stderr": {"byte_perplexity": None}, "higher_is_better": {}, "samples": 8,
                       "data_sha256": {}, "config": {"task": "python_ppl"}},
    },
}
SCORES = {("python_mc", "acc"): 0.75, ("python_mc", "acc_norm"): 0.7083,
          ("python_ppl", "byte_perplexity"): 3.5812, ("python_ppl", "bits_per_byte"): 1.8405,
          ("python_ppl", "exact_match,strict-match"): 0.125}
VAL_LOSS = {("web (held out)", "loss"): 3.25, ("code (held out)", "loss"): 2.5}


def _results(card: ModelCard) -> dict:
    return {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}


def test_card_holds_each_lm_eval_task_and_metric():
    text = model_card(*card_inputs(), lm_eval={**SUMMARY, "step": 2})
    card = ModelCard(text)
    assert _results(card) == {**VAL_LOSS, **SCORES}  # stderr and non-numbers left out, values to 4 places
    lm = [r for r in card.data.eval_results if r.dataset_name.startswith("python_")]
    assert all(r.task_type == "text-generation" and r.dataset_type == r.dataset_name and r.verified is False
               and r.metric_args is None for r in lm)
    body = text.split("---", 2)[2]
    assert "## Evaluation" in body and "| python_mc | acc_norm | 0.7083 | 0.4.8 |" in body
    assert body.index("## Checkpoints") < body.index("## Evaluation") < body.index("## Use")


def test_lm_eval_settings_become_metric_args():
    text = model_card(*card_inputs(), lm_eval={**SUMMARY, "limit": 10, "num_fewshot": 0})
    lm = [r for r in ModelCard(text).data.eval_results if r.dataset_name.startswith("python_")]
    assert lm and all(r.metric_args == {"num_fewshot": 0, "limit": 10} for r in lm)
    assert "&id" not in text and "*id" not in text  # each written out, no YAML anchors for the Hub to resolve
    assert "(--num-fewshot 0, --limit 10)" in text


def test_without_lm_eval_the_card_is_as_before():
    text = model_card(*card_inputs())
    assert text == model_card(*card_inputs(), lm_eval=None)
    assert _results(ModelCard(text)) == VAL_LOSS and "## Evaluation" not in text


def _front(release) -> dict:
    return yaml.safe_load((release / "README.md").read_text().split("---")[1])


def test_release_reads_the_final_checkpoints_results(tmp_path, run_dir, release_dir):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    index = json.loads((release_dir / "index.json").read_text())
    last = index["checkpoints"][-1]["step"]
    folder = run / "analysis" / "lm_eval"
    folder.mkdir(parents=True)
    earlier = {**SUMMARY, "tasks": {"python_mc": {"metrics": {"acc": 0.25}}}}
    (folder / f"step_{index['checkpoints'][0]['step']:06d}.json").write_text(json.dumps(earlier))
    (folder / f"step_{last:06d}.json").write_text(json.dumps({**SUMMARY, "checkpoint": f"step_{last}", "step": last}))
    rel = make_release(run, tmp_path / "rel")
    card = ModelCard((rel / "README.md").read_text())
    scores = {k: v for k, v in _results(card).items() if k[0].startswith("python_")}
    assert scores == SCORES  # the final checkpoint's, not an earlier one's
    # the run that was never evaluated: model-index only the validation losses, as before
    before = _front(release_dir)["model-index"]
    assert [r["metrics"][0]["type"] for r in before[0]["results"]] == ["loss"] * len(before[0]["results"])
    assert _front(rel)["model-index"][0]["results"][: len(before[0]["results"])] == before[0]["results"]


def test_malformed_results_name_the_file(tmp_path, run_dir, release_dir, cli):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    last = json.loads((release_dir / "index.json").read_text())["checkpoints"][-1]["step"]
    path = run / "analysis" / "lm_eval" / f"step_{last:06d}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"tasks": {"python_mc": ')
    cli("release", run, "--out", tmp_path / "rel").one_line_error(f"step_{last:06d}.json", "not valid JSON")
    assert not (tmp_path / "rel").exists()
    path.write_text(json.dumps({"tasks": ["python_mc"]}))
    with pytest.raises(LuminaryError, match=f"step_{last:06d}.json: not lm-eval results"):
        make_release(run, tmp_path / "rel")
