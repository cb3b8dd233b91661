"""Aspect summaries from a trained seq2seq model, batched, with the paper's generation settings.

Beam search with 4 beams, length penalty 2.0, 55 to 140 tokens, no repeated
trigram (the paper's fairseq settings for bart.large.cnn). Beam scores are
length-normalised as transformers does: score = log p(y) / |y|^α, α = 2.0.

The source is built as in training: the aspect, its knowledge words (the
document's words by tf-idf over the documents of the call that occur in the
aspect's description, :func:`luminary.summarize.weak.knowledge_words`), then
the document. An aspect the knowledge does not know gets a warning and no
knowledge words: the model reads the aspect and the document only.

    luminary summarize run runs/summarize/model --aspect "json" doc.txt
    luminary summarize run runs/summarize/model --input rows.jsonl --output out.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import Field

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_json
from luminary.core.progress import info
from luminary.summarize.data import encode_text, format_source
from luminary.summarize.knowledge import Knowledge
from luminary.summarize.train import MODEL_INFO, check_seq2seq
from luminary.summarize.weak import TfIdf, knowledge_words


class GenerationSettings(Config):
    """The paper's decoding; the one place these defaults live."""

    num_beams: int = Field(4, ge=1)
    length_penalty: float = 2.0
    min_length: int = Field(55, ge=0, description="tokens, the end-of-sequence token included")
    max_length: int = Field(140, ge=1)
    no_repeat_ngram_size: int = Field(3, ge=0)
    batch_size: int = Field(8, ge=1)
    max_source: int | None = Field(None, ge=8, description="default: the model's training setting, else 1024")


def add_knowledge_words(rows: list[dict[str, Any]], knowledge: Knowledge | None, k: int = 10) -> list[dict[str, Any]]:
    """Rows without ``knowledge_words`` get them from ``knowledge`` (a warning for an unknown aspect)."""
    todo = [i for i, r in enumerate(rows) if "knowledge_words" not in r]
    if not todo:
        return rows
    rows = [dict(r) for r in rows]
    if knowledge is None:
        for i in todo:
            rows[i]["knowledge_words"] = []
        return rows
    tfidf = TfIdf([rows[i]["document"] for i in todo])
    for j, i in enumerate(todo):
        aspect = rows[i]["aspect"]
        if not knowledge.has(aspect):
            info(f"warning: aspect {aspect!r} is not in the knowledge ({knowledge.name}); "
                 "the model reads the aspect and the document only")
            rows[i]["knowledge_words"] = []
        else:
            rows[i]["knowledge_words"] = knowledge_words(tfidf.ranked(j), knowledge.description(aspect), k)
    return rows


class AspectSummarizer:
    """A seq2seq model folder with its tokenizer, and how it reads its source."""

    def __init__(self, folder: str | Path, device: str | None = None, allow_pickle: bool = False):
        from transformers import AutoModelForSeq2SeqLM

        from luminary.models.loading import load_config, load_model, load_tokenizer, resolve_model_dir

        self.folder = resolve_model_dir(folder)
        config = load_config(self.folder)
        check_seq2seq(config, self.folder)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(self.folder, AutoModelForSeq2SeqLM, allow_pickle=allow_pickle).to(self.device).eval()
        self.tokenizer = load_tokenizer(self.folder)
        record = self.folder / MODEL_INFO
        self.info = read_json(record) if record.is_file() else {}
        self.aspect_blind = bool(self.info.get("aspect_blind", False))

    def sources(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        return [format_source(r["aspect"], r.get("knowledge_words", []), r["document"], self.aspect_blind)
                for r in rows]

    @torch.inference_mode()
    def summarize(self, rows: Sequence[dict[str, Any]], settings: GenerationSettings | None = None) -> list[str]:
        """One summary per row (aspect, document, knowledge_words), in batches sorted by length."""
        settings = settings or GenerationSettings()
        limit = settings.max_source or int(self.info.get("max_source", 1024))
        encoded = [encode_text(s, self.tokenizer, limit) for s in self.sources(rows)]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        pad = self.tokenizer.pad_token_id
        outputs: list[str] = [""] * len(encoded)
        for start in range(0, len(order), settings.batch_size):
            chunk = order[start : start + settings.batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (B, S)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(chunk):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            generated = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), num_beams=settings.num_beams,
                length_penalty=settings.length_penalty, min_length=settings.min_length,
                max_length=settings.max_length, no_repeat_ngram_size=settings.no_repeat_ngram_size,
                early_stopping=True, do_sample=False)
            for i, text in zip(chunk, self.tokenizer.batch_decode(generated, skip_special_tokens=True)):
                outputs[i] = " ".join(text.split())
        return outputs


def check_rows(rows: Sequence[dict[str, Any]], where: str) -> None:
    for number, row in enumerate(rows, 1):
        for key in ("aspect", "document"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise LuminaryError(f"{where}: record {number}: '{key}' must be a non-empty string")


def summarize_file(model: str | Path, input: str | Path, output: str | Path | None, knowledge: str | None,
                   settings: GenerationSettings, device: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``input`` (aspect, document[, knowledge_words]) each gain ``"aspect_summary"``."""
    import json
    import sys

    from luminary.core.io import read_jsonl, write_jsonl
    from luminary.summarize.knowledge import open_knowledge

    rows = read_jsonl(input, required=("aspect", "document"))
    check_rows(rows, str(input))
    summarizer = AspectSummarizer(model, device)
    source = open_knowledge(knowledge, terms={r["aspect"] for r in rows}) if knowledge else None
    rows = add_knowledge_words(rows, source)
    out = [{**r, "aspect_summary": s} for r, s in zip(rows, summarizer.summarize(rows, settings))]
    if output is None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    else:
        write_jsonl(output, out)
    return out
