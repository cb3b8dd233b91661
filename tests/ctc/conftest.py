"""CTC fixtures: the packaged MiniLM encoder, a tiny random BERT with MiniLM's tokenizer, a stub aligner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from luminary.ctc.aligners import Alignment

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="session")
def minilm() -> Path:
    from luminary.ctc.encoder import default_encoder

    return default_encoder()


@pytest.fixture(scope="session")
def minilm_aligner(minilm):
    from luminary.ctc.aligners import EmbeddingAligner

    return EmbeddingAligner(minilm, device="cpu")


def save_tiny_bert(folder: Path, tokenizer_source: Path, head: str | None = None, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) at random init with MiniLM's WordPiece tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=512,
                                     num_labels={"AutoModelForTokenClassification": 2}.get(head, 1))
    cls = getattr(transformers, head) if head else transformers.AutoModel
    cls.from_config(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm)


@pytest.fixture(scope="session")
def tiny_d(tmp_path_factory, minilm) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-d"), minilm, "AutoModelForTokenClassification", seed=1)


@pytest.fixture(scope="session")
def tiny_r(tmp_path_factory, minilm) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-r"), minilm, "AutoModelForSequenceClassification", seed=2)


class StubAligner:
    """Known token scores: ``table[(input, context)]`` is a list of (token, score); records every call."""

    def __init__(self, table: dict[tuple[str, str], list[tuple[str, float]]]):
        self.table = table
        self.calls: list[tuple[list[str], list[str]]] = []

    def align(self, inputs, contexts):
        self.calls.append((list(inputs), list(contexts)))
        return [Alignment([t for t, _ in self.table[(a, b)]], [s for _, s in self.table[(a, b)]])
                for a, b in zip(inputs, contexts)]


@pytest.fixture
def make_stub():
    return StubAligner


@pytest.fixture(scope="session")
def tiny_d2(tmp_path_factory, minilm) -> Path:
    """A second D aligner (other weights): relevance's summ_to_ref."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-d2"), minilm, "AutoModelForTokenClassification", seed=3)
