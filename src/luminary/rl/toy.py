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
Q-learning code runs on it and on any Hugging Face causal LM.
"""

from __future__ import annotations

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
