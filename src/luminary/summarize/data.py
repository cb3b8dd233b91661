"""Files and model inputs: (document, summary) JSONL in, aspect-summary JSONL out, seq2seq batches.

The model reads the paper's source string and writes the aspect summary:

    source = "{aspect} : {knowledge words, space-separated}\\n\\n{document}"

An aspect-blind model (the ablation) reads the document alone. Sources are
cut to ``max_source`` tokens and targets to ``max_target`` (1024 and 140 in
the paper), each closed by the end-of-sequence token.

    luminary summarize build-data pairs.jsonl --out data/weak --heldout 0.2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import atomic_dir, read_jsonl, write_jsonl, write_manifest
from luminary.core.locks import locked
from luminary.core.seed import derive_seed
from luminary.train.labels import IGNORE

SOURCE_FORMAT = "{aspect} : {knowledge}\n\n{document}"


def format_source(aspect: str, knowledge_words: Sequence[str], document: str, aspect_blind: bool = False) -> str:
    """The paper's source string (the document alone when ``aspect_blind``)."""
    if aspect_blind:
        return document
    return SOURCE_FORMAT.format(aspect=aspect, knowledge=" ".join(knowledge_words), document=document)


def _check_strings(path: Path, rows: list[dict], fields: Sequence[str]) -> None:
    for number, row in enumerate(rows, 1):
        for key in fields:
            if not isinstance(row[key], str):
                raise LuminaryError(f"{path}: record {number}: '{key}' must be a string, got "
                                    f"{type(row[key]).__name__}")


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    """(document, summary) rows; a missing field names the line; each row gets an ``id`` (its own or its number)."""
    path = Path(path)
    rows = read_jsonl(path, required=("document", "summary"))
    _check_strings(path, rows, ("document", "summary"))
    _check_strings(path, [r for r in rows if "group" in r], ("group",))
    if not rows:
        raise LuminaryError(f"{path}: no (document, summary) pairs")
    return [{**row, "id": str(row.get("id", number))} for number, row in enumerate(rows, 1)]


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """Aspect-summary rows (``build-data`` output): aspect, document, summary; knowledge_words optional."""
    path = Path(path)
    rows = read_jsonl(path, required=("aspect", "document", "summary"))
    _check_strings(path, rows, ("aspect", "document", "summary"))
    for number, row in enumerate(rows, 1):
        words = row.get("knowledge_words", [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise LuminaryError(f"{path}: record {number}: 'knowledge_words' must be a list of strings")
    if not rows:
        raise LuminaryError(f"{path}: no examples")
    return rows


def is_heldout(group: str, fraction: float, seed: int) -> bool:
    """A seeded share ``fraction`` of documents, decided by the id alone (by the ``group``, where the pairs
    name one, so that documents cut from one source stay on one side)."""
    return fraction > 0 and derive_seed(seed, "heldout", group) % 1_000_000 < fraction * 1_000_000


def build_data(input: str | Path, out: str | Path, knowledge: str = "wordnet", extractor: str = "auto",
               max_knowledge_words: int = 10, heldout: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Weak supervision from ``input`` into folder ``out``: train.jsonl, heldout.jsonl, stats.json, a manifest.

    Returns the statistics (also in stats.json). See :mod:`luminary.summarize.weak`.
    """
    from luminary.summarize.aspects import extractor_name
    from luminary.summarize.knowledge import ConceptNetKnowledge, open_knowledge
    from luminary.summarize.weak import (build_examples, candidate_terms, document_aspects, draw_neighbours,
                                         statistics)

    if not 0 <= heldout < 1:
        raise LuminaryError(f"--heldout must be in [0, 1), got {heldout}")
    rows = read_pairs(input)
    out = Path(out)
    if knowledge.endswith((".csv", ".csv.gz", ".json")):  # ConceptNet holds only the terms asked about
        candidates = {c for r in rows for c in candidate_terms(r["summary"])}
        source = ConceptNetKnowledge(knowledge, terms=candidates)
        entities = [document_aspects(r["summary"], source, extractor) for r in rows]
        drawn = [draw_neighbours(r["id"], ents, source, seed) for r, ents in zip(rows, entities)]
        # a second pass for the drawn neighbours' own neighbours
        source = ConceptNetKnowledge(knowledge, terms={a for doc in entities for a in doc}
                                     | {n for doc in drawn for n, _ in doc})
    else:
        source = open_knowledge(knowledge)
        entities = [document_aspects(r["summary"], source, extractor) for r in rows]
        drawn = [draw_neighbours(r["id"], ents, source, seed) for r, ents in zip(rows, entities)]
    examples = build_examples(rows, source, entities, drawn, max_knowledge_words)
    train = [e for e in examples if not is_heldout(e.get("group", e["doc_id"]), heldout, seed)]
    held = [e for e in examples if is_heldout(e.get("group", e["doc_id"]), heldout, seed)]
    stats = {**statistics(len(rows), examples), "train_examples": len(train), "heldout_examples": len(held),
             "knowledge": source.name, "extractor": extractor_name(extractor), "seed": seed}
    with locked(out, "data folder"), atomic_dir(out, overwrite=True) as tmp:
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "heldout.jsonl", held)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        write_manifest(tmp)
    return stats


# --- model inputs ---------------------------------------------------------------------------------


def encode_example(example: dict[str, Any], tokenizer: Any, max_source: int, max_target: int,
                   aspect_blind: bool = False) -> dict[str, list[int]]:
    """Token ids of the source and the target, each cut and closed by EOS."""
    source = format_source(example["aspect"], example.get("knowledge_words", []), example["document"], aspect_blind)
    return {"input_ids": encode_text(source, tokenizer, max_source),
            "labels": encode_text(example["summary"], tokenizer, max_target)}


def encode_text(text: str, tokenizer: Any, limit: int) -> list[int]:
    """``text`` as at most ``limit`` ids ending in EOS (whether or not the tokenizer adds one itself)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: limit - 1]
    return ids + [tokenizer.eos_token_id]


def collate_seq2seq(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded sources with their mask; labels padded with -100 (the model shifts them itself)."""
    S = max(len(e["input_ids"]) for e in examples)
    T = max(len(e["labels"]) for e in examples)
    input_ids = torch.full((len(examples), S), pad_id, dtype=torch.long)  # (B, S)
    mask = torch.zeros((len(examples), S), dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)  # (B, T)
    for i, e in enumerate(examples):
        input_ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        mask[i, : len(e["input_ids"])] = 1
        labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
