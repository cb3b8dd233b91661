"""Self-supervised training data for the D and R aligners (CTC §3.2, ``construct.py``).

1. Take the text to corrupt: a reference or response given with the
   context, or else 1–3 sentences drawn from the context (an extractive
   pseudo-summary; the original also paraphrases them).
2. Mask spans of each sentence. The original walks a constituency parse
   and masks node v with probability

       p(v) = |v| / |sentence| / (height(v) + 1)

   (|v| its words; never a span of stopwords only or with no letter or digit),
   a masked node replacing everything below it; up to 5 tries, rejecting a
   template that is one mask or has two masks side by side. Without a
   parser here, the tree is a random binary bracketing of the words, drawn
   from the example's seed: the same rule over random spans.
3. Fill the masks: a seq2seq infiller (BART style: the template with the
   tokenizer's mask token in, the whole text out; fillings read back by
   matching the template) or a causal LM trained with fill-in-the-middle,
   prompted per mask in PSM form ``<fim_prefix>before<fim_suffix>after<fim_middle>``.
   Sampling with top-p 0.95.
4. Label every word of the result: 0 for the template's words; for the
   words of filling k, 1 (hallucinated) if the filling differs from the
   masked span (case-insensitive, stripped), else 0.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl, write_jsonl
from luminary.core.progress import track
from luminary.core.seed import derive_seed
from luminary.ctc.aligners.base import english_stopwords
from luminary.ctc.aligners.batching import default_device

MASK = "<mask>"
TOP_P = 0.95
MASK_TRIES = 5


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@dataclass
class Span:
    start: int
    end: int
    children: list["Span"]


def random_tree(start: int, end: int, rng: random.Random) -> Span:
    """A random binary bracketing of words [start, end)."""
    if end - start == 1:
        return Span(start, end, [])
    cut = rng.randint(start + 1, end - 1)
    return Span(start, end, [random_tree(start, cut, rng), random_tree(cut, end, rng)])


def mask_tree(node: Span, words: Sequence[str], rng: random.Random) -> tuple[list[str], int, list[str]]:
    """(template items, height, masked spans) of a subtree, children first (the original's DFS)."""
    if node.children:
        template, answers, height = [], [], 0
        for child in node.children:
            t, h, a = mask_tree(child, words, rng)
            template += t
            answers += a
            height = max(height, h + 1)
    else:
        template, answers, height = [words[node.start]], [], 0
    span = words[node.start : node.end]
    text = " ".join(span)
    if all(w.lower() in english_stopwords() for w in span) or not any(ch.isalnum() for ch in text):
        p = 0.0
    else:
        p = (node.end - node.start) / len(words) / (height + 1)
    if rng.random() < p:
        return [MASK], height, [text]
    return template, height, answers


def acceptable(template: Sequence[str], answers: Sequence[str]) -> bool:
    """At least one mask, not only a mask, no two masks side by side."""
    adjacent = any(a == b == MASK for a, b in zip(template, template[1:]))
    return bool(answers) and list(template) != [MASK] and not adjacent


def mask_sentence(words: Sequence[str], rng: random.Random, tries: int = MASK_TRIES):
    """(template, answers) for one sentence, or None when no try is acceptable."""
    if not words:
        return None
    for _ in range(tries):
        template, _, answers = mask_tree(random_tree(0, len(words), rng), words, rng)
        if acceptable(template, answers):
            return template, answers
    return None


def fragments(template: Sequence[str]) -> list[str]:
    """The text between masks: n_masks + 1 strings (possibly empty)."""
    parts, current = [], []
    for item in template:
        if item == MASK:
            parts.append(" ".join(current))
            current = []
        else:
            current.append(item)
    parts.append(" ".join(current))
    return parts


def label_words(frags: Sequence[str], answers: Sequence[str], fillings: Sequence[str]) -> tuple[str, list[int]]:
    """The filled text and one label per whitespace word: 1 where a filling differs from its span."""
    if not len(frags) == len(answers) + 1 == len(fillings) + 1:
        raise LuminaryError(f"{len(frags)} fragments need {len(frags) - 1} answers and fillings, "
                            f"got {len(answers)} and {len(fillings)}")
    words: list[str] = []
    labels: list[int] = []
    for k, frag in enumerate(frags):
        words += frag.split()
        labels += [0] * len(frag.split())
        if k < len(answers):
            hallucinated = int(fillings[k].strip().lower() != answers[k].strip().lower())
            words += fillings[k].split()
            labels += [hallucinated] * len(fillings[k].split())
    return " ".join(words), labels


def extract_fillings(frags: Sequence[str], generated: str) -> list[str] | None:
    """What a seq2seq infiller put in each mask, read by matching the template (None if it does not match)."""
    literal = [r"\s+".join(map(re.escape, f.split())) for f in frags]
    pattern = r"\s*(.*?)\s*".join(literal)
    match = re.fullmatch(r"\s*" + pattern + r"\s*", generated, flags=re.IGNORECASE | re.DOTALL)
    return [g.strip() for g in match.groups()] if match else None


class Infiller(Protocol):
    def fill(self, batch: Sequence[Sequence[str]], seed: int) -> list[list[str] | None]:
        """Fillings for each template (given as its fragments), or None where infilling failed."""


class Seq2SeqInfiller:
    """A BART-style text infiller: the template with mask tokens in, the whole text out."""

    def __init__(self, folder: str | Path, device: str | None = None, top_p: float = TOP_P, max_new_tokens: int = 256):
        from transformers import AutoModelForSeq2SeqLM

        from luminary.models.loading import load_model, load_tokenizer

        self.device = default_device(device)
        self.model = load_model(folder, AutoModelForSeq2SeqLM).to(self.device).eval()
        self.tokenizer = load_tokenizer(folder)
        if self.tokenizer.mask_token is None:
            raise LuminaryError(f"{folder}: the tokenizer has no mask token to mark the spans to fill")
        self.top_p, self.max_new_tokens = top_p, max_new_tokens

    @torch.inference_mode()
    def fill(self, batch, seed):
        mask = self.tokenizer.mask_token
        texts = [f" {mask} ".join(frags).strip() for frags in batch]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        torch.manual_seed(seed)
        out = self.model.generate(**enc, do_sample=True, top_p=self.top_p, top_k=0, max_new_tokens=self.max_new_tokens)
        decoded = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [extract_fillings(frags, text) for frags, text in zip(batch, decoded)]


class FimInfiller:
    """A causal LM with fill-in-the-middle tokens, asked for one mask at a time (PSM order)."""

    def __init__(self, folder: str | Path, device: str | None = None, top_p: float = TOP_P, max_new_tokens: int = 16):
        from luminary.data.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
        from luminary.models.loading import load_model, load_tokenizer

        self.device = default_device(device)
        self.model = load_model(folder).to(self.device).eval()
        self.tokenizer = load_tokenizer(folder)
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE) if t not in vocab]
        if missing:
            raise LuminaryError(f"{folder}: the tokenizer has no {', '.join(missing)} token for fill-in-the-middle")
        self.tokens = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
        stops = {vocab[t] for t in vocab if t.startswith("<fim_")} | {self.tokenizer.eos_token_id}
        self.stop_ids = sorted(i for i in stops if i is not None)
        self.top_p, self.max_new_tokens = top_p, max_new_tokens

    def prompt(self, before: str, after: str) -> str:
        prefix, suffix, middle = self.tokens
        return f"{prefix}{before}{suffix}{' ' + after if after else ''}{middle}"

    @torch.inference_mode()
    def generate(self, prompts: list[str], seed: int) -> list[str]:
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, ids))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        input_ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids], device=self.device)
        torch.manual_seed(seed)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True, top_p=self.top_p, top_k=0,
                                  max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids, pad_token_id=pad_id)
        texts = []
        for row in out[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            text = self.tokenizer.decode(row[:cut], skip_special_tokens=True)
            texts.append(text.split("\n")[0].strip())
        return texts

    def fill(self, batch, seed):
        fillings: list[list[str]] = [[] for _ in batch]
        for k in range(max(len(frags) - 1 for frags in batch)):
            active = [i for i, frags in enumerate(batch) if len(frags) - 1 > k]
            prompts = []
            for i in active:
                parts = [p for pair in zip(batch[i][: k + 1], [*fillings[i], ""]) for p in pair]
                before = " ".join(p for p in parts if p)
                prompts.append(self.prompt(before, batch[i][k + 1]))
            for i, text in zip(active, self.generate(prompts, derive_seed(seed, k))):
                fillings[i].append(text)
        return fillings


def build_infiller(folder: str | Path, device: str | None = None, **options: Any) -> Infiller:
    """A seq2seq folder gives a :class:`Seq2SeqInfiller`, a causal LM a :class:`FimInfiller`."""
    from luminary.models.loading import load_config

    config = load_config(folder)
    cls = Seq2SeqInfiller if getattr(config, "is_encoder_decoder", False) else FimInfiller
    return cls(folder, device=device, **options)


def corrupt_text(text: str, rng: random.Random):
    """(fragments, answers) for a text, sentence by sentence, or None where a sentence cannot be masked."""
    template: list[str] = []
    answers: list[str] = []
    for sentence in split_sentences(text):
        masked = mask_sentence(sentence.split(), rng)
        if masked is None:
            return None
        template += masked[0]
        answers += masked[1]
    if not acceptable(template, answers):
        return None
    return fragments(template), answers


def pick_text(record: dict, rng: random.Random) -> str:
    """The record's ``text``, else 1–3 consecutive sentences of its context."""
    if record.get("text"):
        return record["text"]
    sentences = split_sentences(record["context"])
    if not sentences:
        return ""
    k = min(len(sentences), rng.randint(1, 3))
    start = rng.randint(0, len(sentences) - k)
    return " ".join(sentences[start : start + k])


def make_examples(records: Sequence[dict], infiller: Infiller, seed: int = 0, batch_size: int = 16) -> list[dict]:
    """Masked, infilled and labelled examples ``{context, input_text, labels, ...}`` (failures skipped)."""
    jobs = []
    for i, record in enumerate(records):
        rng = random.Random(derive_seed("ctc-data", seed, i))
        corrupted = corrupt_text(pick_text(record, rng), rng)
        if corrupted is not None:
            jobs.append((record["context"], *corrupted))
    examples = []
    for start in track(range(0, len(jobs), batch_size), "infill"):
        chunk = jobs[start : start + batch_size]
        filled = infiller.fill([frags for _, frags, _ in chunk], derive_seed("ctc-fill", seed, start))
        for (context, frags, answers), fills in zip(chunk, filled):
            if fills is None or len(fills) != len(answers):
                continue
            text, labels = label_words(frags, answers, fills)
            if labels:
                examples.append({"context": context, "input_text": text, "labels": labels,
                                 "template": f" {MASK} ".join(frags).strip(), "answers": answers, "fillings": fills})
    return examples


def make_data(input_path: str | Path, output_path: str | Path, infiller: str | Path, seed: int = 0,
              device: str | None = None) -> dict[str, int]:
    """Read ``{context[, text]}`` lines, write labelled examples as JSONL; returns counts."""
    records = read_jsonl(input_path, required=("context",))
    if not records:
        raise LuminaryError(f"{input_path}: no examples")
    examples = make_examples(records, build_infiller(infiller, device=device), seed=seed)
    if not examples:
        raise LuminaryError(f"{input_path}: no example could be masked and infilled")
    write_jsonl(output_path, examples)
    hallucinated = sum(sum(e["labels"]) for e in examples)
    return {"records": len(records), "examples": len(examples), "words": sum(len(e["labels"]) for e in examples),
            "hallucinated_words": hallucinated}
