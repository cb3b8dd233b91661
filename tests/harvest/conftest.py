"""Hand-built language models with known distributions, and their word-level tokenizer."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["[PAD]", "[MASK]", "[BOS]", "[UNK]"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
GLUE = ["lives", "near", "close", "by", "knows", "ignores", "the", ".", ","]


def word_tokenizer(words=WORDS, glue=GLUE) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(SPECIALS + list(glue) + list(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]",
                                   bos_token="[BOS]", unk_token="[UNK]")


class TableLM(torch.nn.Module):
    """logits[b, q] = A[q] + Σ_{r ≠ q} E[ids[b, r]] (masked: every other position; causal: r ≤ q).

    A fixed random table by position plus one by context token: the next-token
    distribution depends on where the mask is and on what is filled around it.
    """

    def __init__(self, vocab: int, causal: bool = False, seed: int = 0, max_len: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = 2.0 * torch.randn(max_len, vocab, generator=g)
        self.E = 1.5 * torch.randn(vocab, vocab, generator=g)
        self.causal = causal

    def forward(self, input_ids, attention_mask):
        ctx = self.E[input_ids] * attention_mask.unsqueeze(-1)  # (B, L, V)
        if self.causal:
            mixed = torch.cumsum(ctx, dim=1)  # r <= q
        else:
            mixed = ctx.sum(dim=1, keepdim=True) - ctx  # r != q
        return self.A[: input_ids.shape[1]].unsqueeze(0) + mixed


class PairLM(torch.nn.Module):
    """Knows the seed pairs, but only in a prompt holding the trigger word: then every filled
    token in the context raises its partner's logit by 5; everything else is uniform."""

    def __init__(self, tokenizer, pairs, trigger="knows"):
        super().__init__()
        self.vocab = len(tokenizer)
        self.trigger = tokenizer.convert_tokens_to_ids(trigger)
        self.partner = {}
        for a, b in pairs:
            ia, ib = tokenizer.convert_tokens_to_ids([a, b])
            self.partner[ia], self.partner[ib] = ib, ia

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            if self.trigger in row:
                for t in row:
                    if t in self.partner:
                        logits[b, :, self.partner[t]] += 5.0
        return logits


@pytest.fixture
def words_tokenizer():
    return word_tokenizer()
