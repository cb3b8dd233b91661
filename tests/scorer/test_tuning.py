"""A generator instruction-tuned through luminary.train, then boosted by a scorer."""

import json

import numpy as np

from luminary.core.io import read_jsonl
from luminary.scorer import Generator, Scorer, best_of_n_many, cappy_plan
from luminary.scorer.tuning import GeneratorTuning, instruction_examples, train_generator
from luminary.train.labels import IGNORE

ROWS = [{"instruction": f"List the parameters.\n\ndef f{i}({a}):\n    pass", "references": [a]}
        for i, a in enumerate(["x", "a, b", "path, mode", "self_, item", "n", "key, default"] * 4)]


def test_only_the_answer_is_learnt(tokenizer):
    [ex] = instruction_examples(ROWS[:1], tokenizer, "{instruction}\nAnswer: ", 256)
    prompt = tokenizer(ROWS[0]["instruction"] + "\nAnswer: ", add_special_tokens=False)["input_ids"]
    answer = tokenizer("x", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert list(ex["input_ids"]) == prompt + answer
    assert list(ex["labels"]) == [IGNORE] * len(prompt) + answer
    [short] = instruction_examples(ROWS[:1], tokenizer, "{instruction}\nAnswer: ", 8)
    assert len(short["input_ids"]) <= 8 and list(short["labels"][-len(answer):]) == answer  # the prompt is cut, not the answer
    assert np.all(short["labels"][: len(short["labels"]) - len(answer)] == IGNORE)


def test_tuned_generator_is_a_model_folder_best_of_n_can_use(tmp_path, cappy_dir):
    tuning = GeneratorTuning(preset="crystal-debug", vocab_size=300, steps=12, batch_size=8, lr=3e-3, warmup_steps=2,
                             max_new_tokens=6)
    folder = train_generator(ROWS, tmp_path / "gen", tuning)
    metrics = read_jsonl(tmp_path / "gen" / "metrics.jsonl")
    assert len(metrics) == 12 and metrics[-1]["loss"] < metrics[0]["loss"]
    assert json.loads((folder / "config.json").read_text())["model_type"] == "crystal"
    gen = Generator.from_pretrained(folder, prompt_template=tuning.prompt_template, stop=tuning.stop,
                                    max_new_tokens=tuning.max_new_tokens)
    picks = best_of_n_many(Scorer.from_pretrained(cappy_dir), gen, [r["instruction"] for r in ROWS[:2]],
                           plan=cappy_plan(5), seed=0)
    for pick in picks:
        assert len(pick["candidates"]) == 5 and all("\n" not in c["text"] for c in pick["candidates"])
        assert pick["score"] == max(c["score"] for c in pick["candidates"])
