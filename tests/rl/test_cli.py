"""``luminary rl``: a SIGKILLed run resumes bit-exactly; bad input is one line and exit 2; generation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# everything but the timing field
DETERMINISTIC = ("step", "lr", "grad_norm", "tokens", "loss", "loss_on", "loss_off", "reward_mean", "reward_std",
                 "entropy", "length", "off_reward_mean", "off_reward_std", "off_entropy", "off_length",
                 "batch_sha256")

EXAMPLES = """
    - {source: "def add(a, b):", target: "return a + b"}
    - {source: "import os", target: "import sys"}
    - {source: "class Point:", target: "def __init__(self, x, y):"}
    - {source: "for i in range(10):", target: "print(i)"}
    - {source: "while True:", target: "break"}
    - {source: "with open(path) as f:", target: "return f.read()"}"""

CONFIG = """\
policy: {{model: llama-debug, tokenizer: {tokenizer}}}
data:
  examples:{examples}
rewards:
  - {{kind: bleu, reference: target}}
  - {{kind: repetition, weight: -5}}
shaping: {{min: {low}, max: 50}}
sampling: {{max_new_tokens: 10}}
sql: {{mode: mixed, off_policy: replay, replay_capacity: 40}}
target: {{tau: 0.05}}
train: {{per_device_batch_size: 2, max_steps: {steps}}}
deploy: {{seed: 3, precision: fp32, checkpoints: {{every: 3, keep_last: 2}}}}
"""


def write_config(path, tokenizer_dir, steps=18, low=-50, examples=EXAMPLES, **replace):
    text = CONFIG.format(tokenizer=tokenizer_dir, examples=examples, steps=steps, low=low)
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def env():
    return dict(os.environ, LUMINARY_QUIET="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def train_cmd(config, out, resume=False):
    return [sys.executable, "-m", "luminary", "rl", "train", str(config), "--out", str(out)] + \
        (["--resume"] if resume else [])


def rows(path):
    return [[r.get(k) for k in DETERMINISTIC] for r in map(json.loads, Path(path).read_text().splitlines())]




def test_sigkill_mid_run_then_resume_is_bit_exact(tmp_path, tokenizer_dir):
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir)
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(config, ref), check=True, env=env(), capture_output=True)
    expected = rows(ref / "metrics.jsonl")
    assert len(expected) == 18

    out = tmp_path / "killed"
    kills = 0
    for wait_lines in (4, 10):  # kill once past the first checkpoint, again after resuming past the second
        proc = subprocess.Popen(train_cmd(config, out, resume=kills > 0), env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= wait_lines:
                break
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills >= 1
    subprocess.run(train_cmd(config, out, resume=True), check=True, env=env(), capture_output=True)
    assert rows(out / "metrics.jsonl") == expected
    final = "checkpoints/step_000018"
    assert (ref / final / "model.safetensors").read_bytes() == (out / final / "model.safetensors").read_bytes()
    for name in ("extra_target", "extra_replay"):
        for suffix in (".safetensors", ".json"):
            part = f"{final}/trainer_state/{name}{suffix}"
            assert (ref / part).read_bytes() == (out / part).read_bytes(), part


def test_generate_from_a_trained_policy(tmp_path, tokenizer_dir, cli):
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir, steps=2,
                          **{"tokenizer: " + str(tokenizer_dir): f"tokenizer: {tokenizer_dir}, prompt_format: '# {{source}}'"})
    res = cli("rl", "train", config, "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "reward" in res.stdout
    folder = tmp_path / "run" / "checkpoints" / "step_000002"
    # the policy keeps its prompt format, so generation prompts as training did
    assert json.loads((folder / "config.json").read_text())["luminary_prompt_format"] == "# {source}"
    res = cli("rl", "generate", folder, "-s", "def add(a, b):", "-s", "import os", "--beams", "2",
              "--max-new-tokens", "5")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 2


@pytest.mark.parametrize("body, message", [
    ("    return [1.0] * (len(texts) - 1)", "reward 'mine': returned 1 values for a batch of 2 texts"),
    ("    return [1.0, float('nan')]", "reward 'mine': nan at batch index 1"),
])
def test_a_bad_reward_stops_the_run_with_one_line(tmp_path, tokenizer_dir, cli, body, message):
    (tmp_path / "bad_reward.py").write_text(f"def score(sources, texts, targets):\n{body}\n")
    reward = f"  - {{kind: python, name: mine, function: '{tmp_path / 'bad_reward.py'}:score'}}\n"
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir, steps=2,
                          **{"  - {kind: repetition, weight: -5}\n": reward})
    cli("rl", "train", config, "--out", tmp_path / "run").one_line_error(message)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_shaping_min_not_below_max_is_refused(tmp_path, tokenizer_dir, cli):
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir, low=50)
    cli("rl", "train", config, "--out", tmp_path / "run").one_line_error("shaping", "min (50.0) must be smaller")
    assert not (tmp_path / "run").exists()


def test_a_policy_that_is_not_a_generator_is_refused(tmp_path, tokenizer, tokenizer_dir, cli):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir,
                          **{f"model: llama-debug, tokenizer: {tokenizer_dir}": f"model: {tmp_path / 'bert'}"})
    cli("rl", "train", config, "--out", tmp_path / "run").one_line_error("not a text generator", "BertModel")


def test_unknown_keys_and_missing_inputs_are_named(tmp_path, tokenizer_dir, cli):
    config = write_config(tmp_path / "rl.yaml", tokenizer_dir, **{"mode: mixed": "mode: mixed, tau: 3"})
    cli("rl", "train", config).one_line_error("sql.tau: unknown key")
    config = write_config(tmp_path / "rl2.yaml", tokenizer_dir, **{"{kind: bleu, reference: target}": "{kind: lm_nll}"})
    cli("rl", "train", config).one_line_error("needs 'model'")
    cli("rl", "generate", tmp_path / "nowhere", "-s", "x").one_line_error("not found")


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("rl-*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_validate(path):
    from luminary.core.config import load_config
    from luminary.rl.config import RLConfig

    cfg = load_config(path, RLConfig)
    assert cfg.rewards and cfg.train.max_steps


@pytest.mark.parametrize("name", ["rl-return-lines.yaml", "rl-keyword.yaml"])
def test_shipped_examples_run_with_a_tiny_policy(tmp_path, tokenizer_dir, monkeypatch, name):
    """The examples' data files and reward functions work (the demo's policy swapped for a tiny one)."""
    from luminary.core.config import load_config
    from luminary.rl.config import RLConfig
    from luminary.rl.run import run_rl

    monkeypatch.chdir(EXAMPLES_DIR.parent)
    overrides = {"policy.model": "llama-debug", "policy.tokenizer": str(tokenizer_dir), "train.max_steps": 2,
                 "sampling.max_new_tokens": 6, "deploy.precision": "fp32", "data.eval_fraction": 0.02}
    records = run_rl(load_config(EXAMPLES_DIR / name, RLConfig, overrides), tmp_path / "run")
    assert len(records) == 2 and all("reward_mean" in r and "entropy" in r for r in records)
