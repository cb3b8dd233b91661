"""The offline demonstration: weak aspect supervision from the standard library's documentation.

Each module of the CPython standard library (read with ``ast``, nothing
downloaded) gives one (document, summary) pair: the summary is the first
paragraph of its docstring, the document the rest of its documentation (the
docstring's later paragraphs, then the first paragraph of each public
function's and class's docstring, in file order). The summary is *not* in
the document, as a news article's highlights are not in the article.

With ``corpus: members`` a pair is instead a few of a module's documented members
(:func:`member_pairs`): their docstrings as the document, their first sentences
as the summary, which is then in the document.

Weak supervision (WordNet knowledge) turns the pairs into aspect summaries;
a seeded fifth of the modules is held out. Three systems are scored on the
held-out aspect summaries:

- lead-k: the document's first k sentences, whatever the aspect;
- aspect-blind: the tiny BART trained on the document alone;
- aspect: the same tiny BART trained on ``"{aspect} : {knowledge words}\\n\\n{document}"``.

    luminary summarize demo --out runs/summarize-demo
    luminary summarize demo examples/summarize-demo.yaml --out runs/summarize-demo
"""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import write_jsonl
from luminary.core.progress import info
from luminary.core.seed import derive_seed
from luminary.summarize.generate import GenerationSettings
from luminary.summarize.train import SummarizeTrainConfig, TinyModel
from luminary.summarize.weak import split_sentences

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SKIP = ("test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__", "turtledemo")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def module_pair(path: Path, name: str, max_document_chars: int) -> dict[str, str] | None:
    """(document, summary) of one module, or None when its documentation is too thin."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    doc = ast.get_docstring(tree)
    if not doc:
        return None
    paragraphs = _paragraphs(doc)
    summary, rest = paragraphs[0], paragraphs[1:]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            inner = ast.get_docstring(node)
            if inner and _paragraphs(inner):
                rest.append(_paragraphs(inner)[0])
    document = " ".join(rest)[:max_document_chars]
    if len(summary) < 30 or len(document) < 200:
        return None
    return {"id": name, "document": document, "summary": summary}


def documented_members(tree: ast.Module) -> list[str]:
    """The docstrings of a module's public functions and classes and of those classes' public methods,
    in file order."""
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            found.append(ast.get_docstring(node))
            if isinstance(node, ast.ClassDef):
                found += [ast.get_docstring(sub) for sub in node.body
                          if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_")]
    return [doc for doc in found if doc and _paragraphs(doc)]


def _closed(sentence: str) -> str:
    return sentence if sentence[-1] in ".!?" else sentence + "."


def member_pairs(path: Path, name: str, members_per_document: int = 6, member_chars: int = 200,
                 min_members: int = 3) -> list[dict[str, str]]:
    """(document, summary) pairs of one module: its documented members, ``members_per_document`` at a time.

    The document is the first paragraph of the module's docstring, then each member's docstring cut
    to ``member_chars`` characters (never inside its first sentence); the summary is each member's
    first sentence, the one-line description a reference manual lists. Here the summary *is* in the
    document: an aspect summary says which members an aspect concerns, in their own words. Every pair
    of a module has the module as its ``group``, so a held-out split keeps the module on one side. A
    last group of fewer than ``min_members`` is dropped.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    head = _paragraphs(ast.get_docstring(tree) or "")[:1]
    members = []
    for doc in documented_members(tree):
        paragraphs = _paragraphs(doc)
        first = split_sentences(paragraphs[0])
        if not first or len(first[0]) < 20:
            continue
        summary = _closed(first[0])
        text = " ".join([summary] + first[1:] + paragraphs[1:])
        members.append((summary, text[: max(member_chars, len(summary))].rstrip()))
    pairs = []
    for k in range(0, len(members), members_per_document):
        group = members[k: k + members_per_document]
        if len(group) >= min(min_members, members_per_document):
            pairs.append({"id": f"{name}#{k // members_per_document}", "group": name,
                          "document": " ".join([_closed(h) for h in head] + [text for _, text in group]),
                          "summary": " ".join(summary for summary, _ in group)})
    return pairs


def stdlib_pairs(max_document_chars: int = 2000, limit: int | None = None, root: Path = STDLIB,
                 corpus: str = "modules", members_per_document: int = 6, member_chars: int = 200) -> list[dict[str, str]]:
    """The corpus's pairs, modules sorted by file path, from the first ``limit`` documented modules.

    ``modules``: one pair a module (:func:`module_pair`); ``members``: a pair per group of its
    documented members (:func:`member_pairs`).
    """
    pairs, modules = [], 0
    for path in sorted(root.rglob("*.py")):
        if limit is not None and modules >= limit:
            break
        rel = path.relative_to(root)
        if any(part in SKIP for part in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if corpus == "members":
            found = member_pairs(path, name, members_per_document, member_chars)
        else:
            found = [pair] if (pair := module_pair(path, name, max_document_chars)) is not None else []
        modules += bool(found)
        pairs += found
    return pairs


def lead(document: str, k: int) -> str:
    """The document's first ``k`` sentences."""
    return " ".join(split_sentences(document)[:k])


class DemoTraining(Config):
    """The tiny model's recipe for the demonstration (the rest is :class:`SummarizeTrainConfig`'s)."""

    tiny: TinyModel = Field(default_factory=lambda: TinyModel(d_model=64, layers=2, heads=4, ffn=128,
                                                              vocab_size=2000, max_position=512))
    max_source: int = Field(192, ge=8)
    max_target: int = Field(64, ge=4)
    lr: float = Field(1e-3, gt=0, description="a model trained from scratch takes a larger rate than 3e-5")
    per_device_batch_size: int = Field(16, ge=1)
    n_epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer updates; default: n_epochs over the data")
    device: str = "cpu"

    def build(self, data: Path, aspect_blind: bool, seed: int) -> SummarizeTrainConfig:
        return SummarizeTrainConfig(
            data=str(data), aspect_blind=aspect_blind, tiny=self.tiny, max_source=self.max_source,
            max_target=self.max_target, lr=self.lr, per_device_batch_size=self.per_device_batch_size,
            accumulate_grad_batches=1, n_epochs=self.n_epochs, max_steps=self.max_steps,
            deploy={"device": self.device, "precision": "fp32", "seed": seed})


class DemoConfig(Config):
    """The demonstration's settings: the tiny-model recipe, derived from the training config."""

    seed: int = 0
    knowledge: str = Field("wordnet", description="wordnet, wordnet:/folder, or a ConceptNet file")
    corpus: Literal["modules", "members"] = Field(
        "modules", description="modules: a module's documentation and its first paragraph; members: a module's "
                               "members a few at a time and their first sentences")
    max_modules: int | None = Field(None, ge=2, description="the first N documented modules by path; none: all")
    max_document_chars: int = Field(2000, ge=200, description="modules corpus: the document's length")
    members_per_document: int = Field(6, ge=1, description="members corpus: members in a document")
    member_chars: int = Field(200, ge=20, description="members corpus: characters of each member's docstring")
    heldout: float = Field(0.2, gt=0, lt=1)
    max_eval: int | None = Field(60, ge=1, description="held-out aspect summaries scored")
    eval_rows: Literal["first", "sample"] = Field(
        "first", description="first: the first max_eval held-out rows by id (a few documents); sample: a seeded "
                             "draw of max_eval across all held-out documents")
    lead_k: int | list[int] = Field(1, description="sentences of the lead baseline; a list: one baseline for each")
    consistency: bool = Field(True, description="CTC consistency too (the offline MiniLM)")
    train: DemoTraining = Field(default_factory=DemoTraining)
    generation: GenerationSettings = Field(default_factory=lambda: GenerationSettings(
        min_length=8, max_length=64, batch_size=16))

    @field_validator("lead_k")
    @classmethod
    def _positive(cls, value: int | list[int]) -> int | list[int]:
        ks = [value] if isinstance(value, int) else value
        if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
            raise ValueError("one or more distinct sentence counts, each at least 1")
        return value

    @property
    def lead_ks(self) -> list[int]:
        return [self.lead_k] if isinstance(self.lead_k, int) else list(self.lead_k)


def scored_rows(rows: list[dict[str, Any]], limit: int | None, how: str = "first", seed: int = 0):
    """The held-out rows scored, sorted by id: the first ``limit`` by id, or a draw of ``limit`` seeded by
    ``seed`` (the same rows for the same data, whatever the file's order)."""
    rows = sorted(rows, key=lambda r: r["id"])
    if limit is None or limit >= len(rows):
        return rows
    if how == "first":
        return rows[:limit]
    order = sorted(range(len(rows)), key=lambda i: derive_seed(seed, "scored", rows[i]["id"]))
    return [rows[i] for i in sorted(order[:limit])]


def run_demo(config: DemoConfig, out: str | Path) -> dict[str, Any]:
    """Build the data, train both models, score them and the lead baselines; the report lands in ``out/results``."""
    from luminary.summarize.data import build_data, read_examples
    from luminary.summarize.evaluate import score_rows, write_results
    from luminary.summarize.generate import AspectSummarizer
    from luminary.summarize.train import train_summarizer

    out = Path(out)
    pairs = stdlib_pairs(config.max_document_chars, config.max_modules, corpus=config.corpus,
                         members_per_document=config.members_per_document, member_chars=config.member_chars)
    if len(pairs) < 2:
        raise LuminaryError(f"{STDLIB}: fewer than two documented modules found")
    write_jsonl(out / "pairs.jsonl", pairs)
    stats = build_data(out / "pairs.jsonl", out / "data", config.knowledge, heldout=config.heldout,
                       seed=config.seed)
    info(f"weak supervision: {json.dumps(stats)}")
    heldout = scored_rows(read_examples(out / "data" / "heldout.jsonl"), config.max_eval, config.eval_rows,
                          config.seed)
    predictions = {f"lead-{k}": [lead(r["document"], k) for r in heldout] for k in config.lead_ks}
    records = {}
    for name, blind in (("aspect-blind", True), ("aspect", False)):
        train = config.train.build(out / "data" / "train.jsonl", blind, config.seed)
        result = train_summarizer(train, out / name)
        records[name] = result["records"][-1]["loss"] if result["records"] else None
        device = None if config.train.device == "auto" else config.train.device
        predictions[name] = AspectSummarizer(result["model"], device).summarize(heldout, config.generation)
    aligner = None
    if config.consistency:
        from luminary.ctc.aligners import build_aligner

        aligner = build_aligner("E")
    scores = {name: score_rows(heldout, hyps, config.consistency, aligner) for name, hyps in predictions.items()}
    report = write_results(out / "results", heldout, predictions, scores)
    return {"stats": stats, "final_loss": records, "systems": report["systems"], "examples": len(heldout)}
