"""Soft Q-learning (luminary) against TRL's GRPO and RLOO, on equal information.

Two settings of Guo et al. (2022), on one task: a tiny causal LM
(llama-debug, random weights, a 512-token BPE trained here on the standard
library) continues a method signature (``def NAME(self):``) and is rewarded by
sentence BLEU (0–100) of its continuation to ``return self._value``. The
signatures are split into train / validation / test prompts; every method
trains on the train prompts only.

**Noisy demonstrations.** ``--demos`` (source, target) pairs on the train
prompts: a share ``--good`` are the target, a share ``--bad`` one plausible but
wrong line (``return self._cache``, BLEU 66.9), the rest other ``return`` lines
of the standard library. Every method may use them:

- ``sql_off``: luminary SQL, off-policy on the demonstrations (each scored by
  the reward; no sampling);
- ``sql_mixed``: luminary SQL, mixed (the mean of the on-policy loss on its own
  samples and the off-policy loss on the demonstrations, every step);
- ``mle``: fine-tuning on the demonstrations (cross-entropy, no reward);
- ``mle_then_grpo`` / ``mle_then_rloo``: that fine-tuned policy (at its own
  chosen learning rate) then trained by TRL's GRPO / RLOO: what a TRL user runs,
  since TRL's RL trainers learn from their own samples only;
- ``trl_grpo`` / ``trl_rloo``: TRL from the initial policy (the demonstrations
  unused; the same runs as in the reward-only setting).

**Reward only.** No demonstrations: ``sql_on`` (luminary SQL on-policy)
against ``trl_grpo`` and ``trl_rloo``.

Equal terms: the same initial policy per seed (the same weights for every
method), the same reward, the same sampler (temperature 1, top-k 50, at most
``--max-new-tokens``), and the same budget of ``--steps`` updates, each on
``--batch`` sampled sequences for the methods that sample (GRPO: groups of 8,
RLOO: groups of 2, TRL's defaults; both ``--batch`` completions a step).
TRL runs with its own defaults otherwise (GRPO without a KL term, RLOO with
β = 0.05; AdamW, gradient clip 1); luminary with the paper's (Adam,
clip 5, shaping [−50, 50], the mean of the single- and multi-step losses).
The prompt every method sees starts with BOS, TRL's as luminary's.

Hyperparameters: each method's learning rate, and SQL's Polyak τ, are chosen
from a small grid by the mean sampled reward on the validation prompts of the
first seed; the chosen setting is then run for every seed and reported on the
test prompts: the mean reward of ``--samples`` seeded samples per prompt (the
same sampler noise for every method) and the greedy output's reward, as the
mean over seeds and its standard deviation (n − 1).

    python benchmarks/sql_vs_trl.py            # the full run, one JSON object on stdout (~15 min, 2 cores)
    python benchmarks/sql_vs_trl.py --quick    # a smoke run: 1 seed, one-point grids, 30 steps (< 2 min)

TRL is a dependency of the ``bench`` extra (``pip install -e .[bench]``) and
runs in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sacrebleu  # noqa: E402
import torch  # noqa: E402

TARGET = "return self._value"
BAD = "return self._cache"
SETTINGS = {
    "noisy_demonstrations": ["sql_off", "sql_mixed", "mle", "mle_then_grpo", "mle_then_rloo", "trl_grpo",
                             "trl_rloo"],
    "reward_only": ["sql_on", "trl_grpo", "trl_rloo"],
}
SQL_MODES = {"sql_off": "off", "sql_mixed": "mixed", "sql_on": "on"}


def bleu(texts: list[str]) -> list[float]:
    return [sacrebleu.sentence_bleu(t, [TARGET]).score for t in texts]


def reward(sources, texts, targets):
    return bleu(texts)


def stdlib_texts() -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    return [f.read_text(encoding="utf-8", errors="ignore") for f in files]


def prompt_splits(n_train: int, n_val: int, n_test: int) -> dict[str, list[str]]:
    """Disjoint train / validation / test signatures ``def NAME(self):`` from the standard library."""
    names = sorted({m.group(1) for t in stdlib_texts() for m in re.finditer(r"^\s*def (\w+)\(self\):", t, re.M)})
    random.Random(0).shuffle(names)
    if len(names) < n_train + n_val + n_test:
        sys.exit(f"error: --prompts: only {len(names)} method names in the standard library sample")
    sigs = [f"def {n}(self):" for n in names]
    return {"train": sigs[:n_train], "val": sigs[n_train:n_train + n_val],
            "test": sigs[n_train + n_val:n_train + n_val + n_test]}


def demonstrations(prompts: list[str], n: int, good: float, bad: float, seed: int) -> list[dict]:
    """``good`` of them the target, ``bad`` the wrong line ``BAD``, the rest other ``return`` lines."""
    lines = sorted({ln.strip() for t in stdlib_texts() for ln in t.splitlines()
                    if ln.strip().startswith("return ") and 8 < len(ln.strip()) < 40
                    and ln.strip() not in (TARGET, BAD)})
    rng = random.Random(seed)
    n_good, n_bad = round(good * n), round(bad * n)
    texts = [TARGET] * n_good + [BAD] * n_bad + [rng.choice(lines) for _ in range(n - n_good - n_bad)]
    rng.shuffle(texts)
    return [{"source": rng.choice(prompts), "target": t, "index": i} for i, t in enumerate(texts)]


class Bench:
    """The task, its data and the runs of every method at one setting of the hyperparameters."""

    def __init__(self, args):
        from luminary.data.tokenizer import train_bpe

        self.args = args
        self.tokenizer = train_bpe(stdlib_texts(), vocab_size=512)
        self.prompts = prompt_splits(*args.prompts)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-sql-vs-trl-"))

    def demos(self, seed: int) -> list[dict]:
        a = self.args
        return demonstrations(self.prompts["train"], a.demos, a.good, a.bad, seed)

    def fresh_policy(self, seed: int):
        from luminary.models import build_model
        from luminary.rl.policy import Policy

        tok = self.tokenizer
        model = build_model("llama-debug", len(tok), seed=seed, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return Policy(model, tok, max_new_tokens=self.args.max_new_tokens)

    def trainer(self, policy, collate, loss, lr: float, seed: int, callbacks=()):
        from luminary.train import Deployer, OptimizerConfig, Trainer

        return Trainer(Deployer(seed=seed, precision="fp32", verbose=False, device="cpu"), collate, loss,
                       policy.model, OptimizerConfig(lr=lr, betas=(0.9, 0.999)), max_grad_norm=5.0,
                       callbacks=list(callbacks))

    # --- methods: each returns (policy, budget) ------------------------------------------------
    def run(self, method: str, hp: dict, seed: int):
        if method in SQL_MODES:
            return self.sql(SQL_MODES[method], hp, seed)
        if method == "mle":
            return self.mle(hp["lr"], seed), {"generated_tokens": 0, "sequences": 0}
        algo = method.rsplit("_", 1)[1]
        policy = self.mle(hp["mle_lr"], seed) if method.startswith("mle_then") else self.fresh_policy(seed)
        return self.trl(algo, policy, hp["lr"], seed)

    def sql(self, mode: str, hp: dict, seed: int):
        from luminary.rl.config import SamplingConfig, SQLConfig
        from luminary.rl.sql import SQLCallback, SQLObjective
        from luminary.rl.target import TargetNetwork

        a = self.args
        policy = self.fresh_policy(seed)
        objective = SQLObjective(policy, TargetNetwork(policy.model, tau=hp["tau"]), reward, SQLConfig(mode=mode),
                                 sampling=SamplingConfig(max_new_tokens=a.max_new_tokens, top_k=50), seed=seed)
        trainer = self.trainer(policy, objective.collate, objective, hp["lr"], seed, [SQLCallback(objective)])
        examples = self.demos(seed) if mode != "on" else \
            [{"source": p, "target": None, "index": i} for i, p in enumerate(self.prompts["train"])]
        records = trainer.fit(examples, per_device_batch_size=a.batch, max_steps=a.steps)
        if mode == "off":
            return policy, {"generated_tokens": 0, "sequences": 0}
        tokens = sum(r["length"] for r in records) * a.batch
        return policy, {"generated_tokens": int(round(tokens)), "sequences": a.steps * a.batch}

    def mle(self, lr: float, seed: int):
        """Fine-tuning on the demonstrations (teacher forcing, no reward)."""
        from luminary.train.losses import causal_lm_collate, causal_lm_loss

        policy = self.fresh_policy(seed)
        data = []
        for example in self.demos(seed):
            prompt = policy.encode_sources([example["source"]])[0]
            target = policy.encode_targets([example["target"]])[0]
            data.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
        self.trainer(policy, causal_lm_collate, causal_lm_loss, lr, seed).fit(
            data, per_device_batch_size=self.args.batch, max_steps=self.args.steps)
        return policy

    def trl(self, algo: str, policy, lr: float, seed: int):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

        a = self.args
        seen = {"generated_tokens": 0, "sequences": 0}

        def trl_reward(prompts, completions, completion_ids=None, **kwargs):
            seen["sequences"] += len(completions)
            seen["generated_tokens"] += sum(len(c) for c in completion_ids)
            return bleu(completions)

        Config, Trainer = (GRPOConfig, GRPOTrainer) if algo == "grpo" else (RLOOConfig, RLOOTrainer)
        config = Config(
            output_dir=str(self.workdir / algo), per_device_train_batch_size=a.batch,
            max_completion_length=a.max_new_tokens, learning_rate=lr, lr_scheduler_type="constant",
            max_steps=a.steps, temperature=1.0, top_k=50, save_strategy="no", report_to="none", use_cpu=True,
            bf16=False, seed=seed, logging_steps=max(1, a.steps // 4), disable_tqdm=True,
        )
        # TRL tokenizes the prompt text as it is; luminary's policy puts BOS first: the same ids for both
        bos = self.tokenizer.bos_token
        data = Dataset.from_dict({"prompt": [bos + p for p in self.prompts["train"]]
                                  * (a.steps * a.batch // len(self.prompts["train"]) + 1)})
        # TRL takes the policy as a folder: RLOO loads its KL reference model (β > 0) from the same one
        start = self.workdir / f"start-{algo}"
        policy.model.save_pretrained(start)
        trainer = Trainer(model=str(start), reward_funcs=trl_reward, args=config, train_dataset=data,
                          processing_class=self.tokenizer)
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout holds one JSON object
            trainer.train()
        policy.model = trainer.model.to("cpu")
        return policy, seen

    # --- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, policy, split: str) -> dict:
        """Mean reward of ``--samples`` seeded samples per prompt (the same seeds for every method), and greedy."""
        from luminary.core.seed import derive_seed
        from luminary.rl.policy import Sampling

        a, prompts = self.args, self.prompts[split]
        policy.model.eval()
        rows = [p for p in prompts for _ in range(a.samples)]
        seeds = [derive_seed("bench-eval", split, i) for i in range(len(rows))]
        ids, mask = policy.prompts(rows)
        sampled = policy.decode(*policy.generate(policy.model, ids, mask,
                                                 Sampling(max_new_tokens=a.max_new_tokens, top_k=50), seeds))
        ids, mask = policy.prompts(prompts)
        greedy = policy.decode(*policy.generate(policy.model, ids, mask,
                                                Sampling(max_new_tokens=a.max_new_tokens, do_sample=False)))
        return {"sampled": statistics.fmean(bleu(sampled)), "greedy": statistics.fmean(bleu(greedy)),
                "greedy_example": greedy[0]}


def grids(args) -> dict[str, list[dict]]:
    sql = [{"lr": lr, "tau": tau} for lr in args.lrs for tau in args.taus]
    return {**{m: sql for m in SQL_MODES}, "mle": [{"lr": lr} for lr in args.lrs],
            **{m: [{"lr": lr} for lr in args.trl_lrs] for m in ("trl_grpo", "trl_rloo", "mle_then_grpo",
                                                                  "mle_then_rloo")}}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16, help="sampled sequences (or demonstrations) per update")
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--demos", type=int, default=400)
    parser.add_argument("--good", type=float, default=0.1, help="share of demonstrations that are the target")
    parser.add_argument("--bad", type=float, default=0.3, help=f"share that are the wrong line {BAD!r}")
    parser.add_argument("--prompts", type=int, nargs=3, default=[32, 12, 16], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--samples", type=int, default=8, help="samples per evaluation prompt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="the first one chooses the hyperparameters (on the validation prompts)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                        help="learning rates of SQL and fine-tuning")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.001, 0.01], help="SQL's Polyak τ")
    parser.add_argument("--trl-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2],
                        help="learning rates of GRPO and RLOO")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 steps, seed 0, one-point grids")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds, args.lrs, args.taus, args.trl_lrs = 30, [0], [1e-2], [0.01], [1e-3]
    for name in ("good", "bad"):
        if not 0 <= getattr(args, name) <= 1:
            sys.exit(f"error: --{name} must lie in [0, 1]")
    if args.good + args.bad > 1:
        sys.exit("error: --good + --bad must not exceed 1")
    torch.set_num_threads(1)

    try:
        import trl
    except ImportError:
        sys.exit("error: TRL is not installed; pip install -e '.[bench]' (trl>=1.16)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    bench = Bench(args)
    grid = grids(args)
    order = ["mle", *(m for m in grid if m != "mle")]  # fine-tuning first: the mle_then_* runs start from it
    chosen, by_method = {}, {}
    for method in order:
        first = []
        for hp in grid[method]:
            hp = {**hp, "mle_lr": chosen["mle"]["lr"]} if method.startswith("mle_then") else hp
            policy, budget = bench.run(method, hp, args.seeds[0])
            first.append((hp, bench.score(policy, "val"), bench.score(policy, "test"), budget))
            print(f"{method} {hp} val {first[-1][1]['sampled']:.1f} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr)
        hp, val, test, budget = max(first, key=lambda row: row[1]["sampled"])
        chosen[method] = hp
        runs = [(test, budget)]
        for seed in args.seeds[1:]:
            policy, budget = bench.run(method, hp, seed)
            runs.append((bench.score(policy, "test"), budget))
        by_method[method] = {
            "chosen": hp,
            "validation_sampled_reward_by_setting": [{**h, "sampled": v["sampled"]} for h, v, _, _ in first],
            "test_sampled_reward": spread([t["sampled"] for t, _ in runs]),
            "test_greedy_reward": spread([t["greedy"] for t, _ in runs]),
            "generated_tokens": statistics.fmean(b["generated_tokens"] for _, b in runs),
            "sampled_sequences": statistics.fmean(b["sequences"] for _, b in runs),
            "greedy_example": {"prompt": bench.prompts["test"][0], "output": runs[0][0]["greedy_example"]},
        }
    rows = [{"setting": setting, "method": method, **by_method[method]}
            for setting, methods in SETTINGS.items() for method in methods]
    noisy_trl = max(("mle_then_grpo", "mle_then_rloo", "trl_grpo", "trl_rloo"),
                    key=lambda m: by_method[m]["test_sampled_reward"]["mean"])
    best_sql = max(("sql_off", "sql_mixed"), key=lambda m: by_method[m]["test_sampled_reward"]["mean"])
    print(json.dumps({
        "benchmark": "sql_vs_trl",
        "task": f"sentence BLEU to {TARGET!r} after 'def NAME(self):', llama-debug from random weights",
        "budget": {"steps": args.steps, "sequences_per_step": args.batch, "max_new_tokens": args.max_new_tokens},
        "demonstrations": {"n": args.demos, "good_fraction": args.good, "bad_line": BAD, "bad_fraction": args.bad,
                           "rest": "other return lines of the standard library"},
        "prompts": {k: len(v) for k, v in bench.prompts.items()}, "samples_per_prompt": args.samples,
        "seeds": args.seeds, "selection": "validation sampled reward, first seed",
        "trl_version": trl.__version__, "quick": args.quick, "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
        "noisy_demonstrations_ratio": {
            "sql": best_sql, "best_trl_pipeline": noisy_trl,
            "sampled": by_method[best_sql]["test_sampled_reward"]["mean"]
            / max(by_method[noisy_trl]["test_sampled_reward"]["mean"], 1e-9)},
    }))


if __name__ == "__main__":
    main()
