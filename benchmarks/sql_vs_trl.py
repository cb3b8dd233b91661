"""Soft Q-learning (luminary) against TRL's GRPO at an equal budget of generated tokens.

Task: a tiny causal LM (llama-debug, random weights, a BPE tokenizer trained
here on the standard library) is rewarded by sentence BLEU (0–100) of its
continuation to a fixed target text, whatever the prompt. Every method samples
the same number of sequences of at most ``--max-new-tokens`` tokens:

- ``sql_on``: luminary SQL, on-policy only (top-k 50 samples);
- ``sql_mixed``: luminary SQL, mixed: the same samples plus off-policy
  demonstrations, of which ``--good`` are the target and the rest are other
  ``return`` lines of the standard library (limited good data, as the paper);
- ``mle_demonstrations``: plain fine-tuning on the same demonstrations (no
  reward, no sampling), to show what the demonstrations alone teach;
- ``trl_grpo``: TRL's GRPOTrainer (on-policy only: TRL has no off-policy
  training), groups of 8 completions per prompt, the same sampling, no KL
  term; run at four learning rates, the best one compared.

SQL uses the paper's settings (Adam lr 1e-3, clip 5, shaping [−50, 50],
top-k 50) with τ = 0.01.

Each final policy is scored on the same prompts by the same sampler (seeded):
the mean BLEU of 8 samples per prompt, and the greedy output's BLEU. TRL is a
dependency of the ``bench`` extra (``pip install -e .[bench]``) and runs in
this process.

    python benchmarks/sql_vs_trl.py            # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import sysconfig
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sacrebleu  # noqa: E402
import torch  # noqa: E402

TARGET = "return self._value"
PROMPTS = ["def value(self):", "def get(self):", "def __call__(self):", "def result(self):",
           "def current(self):", "def read(self):", "def fetch(self):", "def peek(self):"]


def bleu(texts: list[str]) -> list[float]:
    return [sacrebleu.sentence_bleu(t, [TARGET]).score for t in texts]


def reward(sources, texts, targets):
    return bleu(texts)


def stdlib_texts() -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    return [f.read_text(encoding="utf-8", errors="ignore") for f in files]


def demonstrations(n: int, good: float, seed: int) -> list[dict]:
    """``good`` of them the target; the rest other ``return`` lines of the standard library."""
    lines = sorted({ln.strip() for t in stdlib_texts() for ln in t.splitlines()
                    if ln.strip().startswith("return ") and 8 < len(ln.strip()) < 40 and ln.strip() != TARGET})
    rng = random.Random(seed)
    n_good = round(good * n)
    texts = [TARGET] * n_good + [rng.choice(lines) for _ in range(n - n_good)]
    rng.shuffle(texts)
    return [{"source": PROMPTS[i % len(PROMPTS)], "target": t} for i, t in enumerate(texts)]


def fresh_policy(tokenizer, max_new_tokens: int, seed: int):
    from luminary.models import build_model
    from luminary.rl.policy import Policy

    model = build_model("llama-debug", len(tokenizer), seed=seed, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Policy(model, tokenizer, max_new_tokens=max_new_tokens)


def run_sql(mode: str, tokenizer, args) -> tuple[object, dict]:
    from luminary.rl.config import SamplingConfig, SQLConfig
    from luminary.rl.sql import SQLCallback, SQLObjective
    from luminary.rl.target import TargetNetwork
    from luminary.train import Deployer, OptimizerConfig, Trainer

    policy = fresh_policy(tokenizer, args.max_new_tokens, args.seed)
    objective = SQLObjective(policy, TargetNetwork(policy.model, tau=args.tau), reward, SQLConfig(mode=mode),
                             sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, top_k=50), seed=args.seed)
    trainer = Trainer(Deployer(seed=args.seed, precision="fp32", verbose=False, device="cpu"),
                      objective.collate, objective, policy.model, OptimizerConfig(lr=args.sql_lr, betas=(0.9, 0.999)),
                      max_grad_norm=5.0, callbacks=[SQLCallback(objective)])
    examples = demonstrations(args.demos, args.good, args.seed) if mode == "mixed" else \
        [{"source": p, "target": None} for p in PROMPTS]
    records = trainer.fit(examples, per_device_batch_size=args.batch, max_steps=args.steps)
    tokens = sum(r["length"] for r in records) * args.batch
    return policy, {"generated_tokens": int(round(tokens)), "sequences": args.steps * args.batch}


def run_mle(tokenizer, args) -> tuple[object, dict]:
    """Fine-tuning on the same demonstrations (teacher forcing, no reward)."""
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    policy = fresh_policy(tokenizer, args.max_new_tokens, args.seed)
    data = []
    for example in demonstrations(args.demos, args.good, args.seed):
        prompt = policy.encode_sources([example["source"]])[0]
        target = policy.encode_targets([example["target"]])[0]
        data.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
    trainer = Trainer(Deployer(seed=args.seed, precision="fp32", verbose=False, device="cpu"),
                      causal_lm_collate, causal_lm_loss, policy.model,
                      OptimizerConfig(lr=args.sql_lr, betas=(0.9, 0.999)), max_grad_norm=5.0)
    trainer.fit(data, per_device_batch_size=args.batch, max_steps=args.steps)
    return policy, {"generated_tokens": 0, "sequences": 0}


def run_grpo(tokenizer, args, lr: float) -> tuple[object, dict]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy = fresh_policy(tokenizer, args.max_new_tokens, args.seed)
    seen = {"tokens": 0, "sequences": 0}

    def grpo_reward(prompts, completions, completion_ids=None, **kwargs):
        seen["sequences"] += len(completions)
        seen["tokens"] += sum(len(c) for c in completion_ids)
        return bleu(completions)

    config = GRPOConfig(
        output_dir=str(args.workdir / "grpo"), per_device_train_batch_size=args.batch, num_generations=8,
        max_completion_length=args.max_new_tokens, learning_rate=lr, lr_scheduler_type="constant",
        max_steps=args.steps, temperature=1.0, top_k=50, beta=0.0, save_strategy="no", report_to="none",
        use_cpu=True, bf16=False, seed=args.seed, logging_steps=max(1, args.steps // 10), disable_tqdm=True,
    )
    data = Dataset.from_dict({"prompt": PROMPTS * (args.steps * args.batch // len(PROMPTS) + 1)})
    trainer = GRPOTrainer(model=policy.model, reward_funcs=grpo_reward, args=config, train_dataset=data,
                          processing_class=tokenizer)
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout holds one JSON object
        trainer.train()
    policy.model = trainer.model
    return policy, {"generated_tokens": seen["tokens"], "sequences": seen["sequences"]}


def score(policy, args) -> dict:
    """Mean BLEU of 8 seeded samples per prompt, and of the greedy outputs."""
    from luminary.rl.policy import Sampling

    policy.model.to("cpu").eval()
    ids, mask = policy.prompts(PROMPTS * 8)
    torch.manual_seed(1234)
    sampled = policy.decode(*policy.generate(policy.model, ids, mask,
                                             Sampling(max_new_tokens=args.max_new_tokens, top_k=50)))
    ids, mask = policy.prompts(PROMPTS)
    greedy = policy.decode(*policy.generate(policy.model, ids, mask,
                                            Sampling(max_new_tokens=args.max_new_tokens, do_sample=False)))
    return {"sampled_reward": sum(bleu(sampled)) / len(sampled), "greedy_reward": sum(bleu(greedy)) / len(greedy),
            "greedy_example": greedy[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--demos", type=int, default=400)
    parser.add_argument("--good", type=float, default=0.05)
    parser.add_argument("--sql-lr", type=float, default=1e-3)
    parser.add_argument("--tau", type=float, default=0.01)
    parser.add_argument("--grpo-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2],
                        help="TRL runs at each; the best final sampled reward is the one compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-sql-vs-trl"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    try:
        import trl
    except ImportError:
        sys.exit("error: TRL is not installed; pip install -e '.[bench]' (trl>=1.16)")
    from transformers.utils import logging as hf_logging

    from luminary.data.tokenizer import train_bpe

    hf_logging.set_verbosity_error()
    tokenizer = train_bpe(stdlib_texts(), vocab_size=512)
    results = {}
    for name, run in (("sql_on", lambda: run_sql("on", tokenizer, args)),
                      ("sql_mixed", lambda: run_sql("mixed", tokenizer, args)),
                      ("mle_demonstrations", lambda: run_mle(tokenizer, args))):
        policy, budget = run()
        results[name] = {**score(policy, args), **budget}
    by_lr = {}
    for lr in args.grpo_lrs:
        policy, budget = run_grpo(tokenizer, args, lr)
        by_lr[str(lr)] = {**score(policy, args), **budget}
    best = max(by_lr, key=lambda k: by_lr[k]["sampled_reward"])
    results["trl_grpo"] = {"learning_rate": float(best), **by_lr[best]}
    results["trl_grpo_sampled_reward_by_lr"] = {k: v["sampled_reward"] for k, v in by_lr.items()}
    ratio = results["sql_mixed"]["sampled_reward"] / max(results["trl_grpo"]["sampled_reward"], 1e-9)
    print(json.dumps({
        "benchmark": "sql_vs_trl", "task": f"sentence BLEU to {TARGET!r}, llama-debug from random weights",
        "budget": {"steps": args.steps, "sequences_per_step": args.batch, "max_new_tokens": args.max_new_tokens},
        "demonstrations": {"n": args.demos, "good_fraction": args.good},
        "trl_version": trl.__version__, "trl_install": "bench extra, same venv, same process",
        "results": results, "ratio": ratio,
        "ratio_is": "sql_mixed sampled_reward / trl_grpo sampled_reward",
    }, indent=None))


if __name__ == "__main__":
    main()
