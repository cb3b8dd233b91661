"""The paper's toy task: learning a hidden sequence from mostly bad demonstrations.

Vocabulary of 20 words, sequences of 6; the reward is 100 × the fraction of
positions that match a hidden target. Of 2000 demonstrations about 2% are the
target, half are one "bad" sequence that matches it nowhere, the rest are
random. Maximum likelihood copies the bad mode (reward 0); on-policy soft
Q-learning finds part of the target; mixed soft Q-learning, which learns from
the demonstrations' rewards and from its own samples, finds all of it
(``specs/sql.md``, Guo et al. 2022).

The policy is a small GRU language model (embedding 32, hidden 64) written as
a transformers ``PreTrainedModel`` with ``generate``, so the same soft
Q-learning code runs on it and on any Hugging Face causal LM. Training goes
through the one Trainer. The toy uses a faster target network (τ = 0.01) and
learning rate (0.01) than the paper's large-model defaults (0.001, 1e-3).

    python -m luminary.rl.toy --seeds 0 1     # greedy and sampled reward per method, as JSON
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast
from transformers.modeling_outputs import CausalLMOutput

BOS = "<s>"


class GRULMConfig(PretrainedConfig):
    model_type = "luminary_gru_lm"

    def __init__(self, vocab_size: int = 21, embed_dim: int = 32, hidden_size: int = 64, **kwargs):
        self.vocab_size, self.embed_dim, self.hidden_size = vocab_size, embed_dim, hidden_size
        self.num_hidden_layers = 1  # one GRU layer (generate sizes its unused cache by this)
        kwargs.setdefault("use_cache", False)
        super().__init__(**kwargs)


class GRULMForCausalLM(PreTrainedModel, GenerationMixin):
    """Embedding -> one GRU layer -> linear head; logits for every position."""

    config_class = GRULMConfig
    base_model_prefix = "gru"

    def __init__(self, config: GRULMConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.gru = nn.GRU(config.embed_dim, config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> CausalLMOutput:
        # right padding only: a position never sees the padding after it
        hidden, _ = self.gru(self.embed(input_ids))  # (B, T, H)
        return CausalLMOutput(logits=self.head(hidden))

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def toy_tokenizer(vocab: int = 20) -> PreTrainedTokenizerFast:
    """Words ``w0`` … ``w{vocab-1}`` and BOS (also the padding token); no EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {BOS: 0, **{f"w{i}": i + 1 for i in range(vocab)}}
    tok = Tokenizer(models.WordLevel(words, unk_token=BOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, pad_token=BOS)


@dataclass
class ToyTask:
    """Hidden target, one bad sequence and noisy demonstrations, all from ``seed``."""

    vocab: int = 20
    length: int = 6
    n_demos: int = 2000
    good_fraction: float = 0.02
    bad_fraction: float = 0.5
    seed: int = 0
    target: list[str] = field(init=False)
    bad: list[str] = field(init=False)
    demos: list[str] = field(init=False)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        target = rng.integers(self.vocab, size=self.length)
        bad = (target + rng.integers(1, self.vocab, size=self.length)) % self.vocab  # differs everywhere
        n_good = int(round(self.good_fraction * self.n_demos))
        n_bad = int(round(self.bad_fraction * self.n_demos))
        rows = [target] * n_good + [bad] * n_bad
        rows += list(rng.integers(self.vocab, size=(self.n_demos - n_good - n_bad, self.length)))
        order = rng.permutation(len(rows))
        self.target, self.bad = self.words(target), self.words(bad)
        self.demos = [" ".join(self.words(rows[i])) for i in order]

    @staticmethod
    def words(ids) -> list[str]:
        return [f"w{int(i)}" for i in ids]

    def examples(self) -> list[dict[str, str]]:
        """Demonstrations as SQL examples (no source: generation from BOS)."""
        return [{"source": "", "target": d} for d in self.demos]

    def score(self, text: str) -> float:
        words = text.split()
        return 100.0 * sum(a == b for a, b in zip(words, self.target)) / self.length

    def reward(self, sources: list[str], texts: list[str], targets: list[str | None]) -> list[float]:
        """100 × fraction of the target's positions matched."""
        return [self.score(t) for t in texts]

    def policy_model(self, seed: int = 0) -> GRULMForCausalLM:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return GRULMForCausalLM(GRULMConfig(vocab_size=self.vocab + 1, bos_token_id=0, pad_token_id=0))


def greedy_reward(task: ToyTask, policy) -> float:
    from luminary.rl.policy import Sampling

    ids, mask = policy.prompts([""])
    actions, lengths = policy.generate(policy.model, ids, mask, Sampling(max_new_tokens=task.length, do_sample=False))
    return task.score(policy.decode(actions, lengths)[0])


def sampled_reward(task: ToyTask, policy, n: int = 256, seed: int = 1234) -> float:
    from luminary.rl.policy import Sampling

    ids, mask = policy.prompts([""] * n)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        texts = policy.decode(*policy.generate(policy.model, ids, mask, Sampling(max_new_tokens=task.length)))
    return sum(task.score(t) for t in texts) / n


def run_toy(task: ToyTask, method: str, seed: int = 0, steps: int = 600, batch: int = 32, lr: float = 0.01,
            tau: float = 0.01, shaping: float = 50.0) -> dict:
    """Train a fresh GRU policy by ``method`` (``mle`` or an SQL mode) and score it."""
    from luminary.rl.config import SamplingConfig, ShapingConfig, SQLConfig
    from luminary.rl.policy import Policy
    from luminary.rl.sql import SQLCallback, SQLObjective
    from luminary.rl.target import TargetNetwork
    from luminary.train import Deployer, OptimizerConfig, Trainer
    from luminary.train.losses import causal_lm_collate, causal_lm_loss

    model = task.policy_model(seed=seed)
    policy = Policy(model, toy_tokenizer(task.vocab), max_new_tokens=task.length)
    deployer = Deployer(seed=seed, precision="fp32", verbose=False, device="cpu")
    optimizer = OptimizerConfig(lr=lr, betas=(0.9, 0.999))
    if method == "mle":
        tok = policy.tokenizer
        data = [[tok.bos_token_id] + tok(d, add_special_tokens=False)["input_ids"] for d in task.demos]
        trainer = Trainer(deployer, causal_lm_collate, causal_lm_loss, model, optimizer, max_grad_norm=5.0)
        records = trainer.fit(data, per_device_batch_size=batch, max_steps=steps)
    else:
        objective = SQLObjective(policy, TargetNetwork(model, tau=tau), task.reward, SQLConfig(mode=method),
                                 ShapingConfig(min=-shaping, max=shaping), SamplingConfig(max_new_tokens=task.length),
                                 seed=seed)
        trainer = Trainer(deployer, objective.collate, objective, model, optimizer, max_grad_norm=5.0,
                          callbacks=[SQLCallback(objective)])
        records = trainer.fit(task.examples(), per_device_batch_size=batch, max_steps=steps)
    return {"method": method, "seed": seed, "greedy_reward": greedy_reward(task, policy),
            "sampled_reward": sampled_reward(task, policy), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description="The SQL paper's toy task: greedy and sampled reward per method.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=["mixed", "on", "off", "mle"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--shaping", type=float, default=50.0, help="rewards shaped onto [-shaping, shaping]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        task = ToyTask(seed=seed)
        for method in args.methods:
            result = run_toy(task, method, seed=seed, steps=args.steps, shaping=args.shaping)
            result.pop("records")
            rows.append(result)
    print(json.dumps({"task": "toy: vocabulary 20, length 6, 2000 demonstrations (2% target, 50% bad)",
                      "steps": args.steps, "shaping": [-args.shaping, args.shaping], "results": rows}))


if __name__ == "__main__":
    main()
