"""Weak supervision: aspect summaries drawn from generic (document, summary) pairs with knowledge.

Tan et al. (EMNLP 2020), §3, as their code does it:

1. A tf-idf model (English stop words) is fitted on the documents:
   tfidf(t, d) = tf(t, d) · (ln((1 + N) / (1 + df(t))) + 1), rows L2-normalised
   (scikit-learn's ``TfidfVectorizer``, which the authors use).
2. Aspects: the summary's entities (:mod:`luminary.summarize.aspects`), plus for
   each one neighbour n drawn with P(n) = w(n) / Σ w over its neighbours that
   are not already aspects (finite weights only).
3. The aspect summary: the summary's sentences, in order, that contain the
   aspect or any of its neighbours as whole words; the word that matched is
   recorded as the reasoning. Aspects with no sentence are dropped.
4. Knowledge words: the document's words by descending tf-idf that also occur
   in the aspect's description (the Wikipedia page in the paper; WordNet
   glosses here), at most 10; none when the knowledge has no description.

Every draw is seeded by (seed, document id, aspect), so the same input gives
the same data byte for byte, whatever the order of other documents.
"""

from __future__ import annotations

import random
import re
from typing import Any, Sequence

from luminary.core.seed import derive_seed
from luminary.summarize.aspects import content_runs, extract_aspects
from luminary.summarize.knowledge import Knowledge, Neighbour, normalise

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n\s*\n")
_TOKEN = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")


def split_sentences(text: str) -> list[str]:
    """Sentences: after . ! ? followed by a capital, a digit or a quote, and at blank lines."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def mentions(sentence: str, term: str) -> bool:
    """Whether ``term`` occurs in ``sentence`` as whole words (case-insensitive)."""
    words = normalise(term).split()
    if not words:
        return False
    pattern = r"(?<![A-Za-z0-9])" + r"\s+".join(re.escape(w) for w in words) + r"(?![A-Za-z0-9])"
    return re.search(pattern, sentence, flags=re.IGNORECASE) is not None


def sample_neighbour(neighbours: Sequence[Neighbour], exclude: set[str], seed: int) -> Neighbour | None:
    """One neighbour drawn with probability proportional to its weight, none of ``exclude``."""
    pool = [n for n in neighbours if n.term not in exclude and n.weight > 0 and n.weight != float("inf")]
    if not pool:
        return None
    rng = random.Random(seed)
    return rng.choices(pool, weights=[n.weight for n in pool], k=1)[0]


def aspect_sentences(sentences: Sequence[str], aspect: str, neighbours: Sequence[Neighbour]) -> list[tuple[int, str]]:
    """(index, matched word) of each sentence that mentions the aspect or one of its neighbours."""
    found = []
    for i, sentence in enumerate(sentences):
        for word in [aspect, *(n.term for n in neighbours)]:
            if mentions(sentence, word):
                found.append((i, word))
                break
    return found


class TfIdf:
    """The documents' terms by descending tf-idf (scikit-learn's formula, English stop words)."""

    def __init__(self, documents: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(stop_words="english")
        self.matrix = self.vectorizer.fit_transform(documents)  # (N docs, V terms), sparse
        self.terms = self.vectorizer.get_feature_names_out()

    def ranked(self, i: int) -> list[str]:
        row = self.matrix.getrow(i)
        pairs = sorted(zip(row.data.tolist(), row.indices.tolist()), key=lambda p: (-p[0], self.terms[p[1]]))
        return [str(self.terms[j]) for _, j in pairs]


def knowledge_words(ranked: Sequence[str], description: str, k: int = 10) -> list[str]:
    """The first ``k`` of ``ranked`` that occur in ``description`` (lowercased words)."""
    vocabulary = set(_TOKEN.findall(description.lower()))
    return [t for t in ranked if t in vocabulary][:k]


def document_aspects(summary: str, knowledge: Knowledge, extractor: str) -> list[str]:
    """The summary's entities; without spaCy, noun phrases by the knowledge's noun test (WordNet's
    noun index), or, for a source without one (ConceptNet), the words and pairs it knows."""
    is_noun = getattr(knowledge, "is_noun", knowledge.has)
    return extract_aspects(summary, extractor, is_noun=is_noun, knows=knowledge.has)


def candidate_terms(summary: str) -> set[str]:
    """Every content word and adjacent pair of a summary: what a ConceptNet pass must hold to find aspects."""
    out = set()
    for run in content_runs(summary):
        words = [w.lower() for w in run]
        out.update(words)
        out.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return out


def draw_neighbours(doc_id: str, entities: Sequence[str], knowledge: Knowledge, seed: int) -> list[tuple[str, str]]:
    """(neighbour, the entity it was drawn for): one per entity, none already an aspect."""
    taken = set(entities)
    drawn = []
    for entity in entities:
        pick = sample_neighbour(knowledge.neighbours(entity), taken, derive_seed(seed, "neighbour", doc_id, entity))
        if pick is not None:
            taken.add(pick.term)
            drawn.append((pick.term, entity))
    return drawn


def build_examples(rows: Sequence[dict[str, Any]], knowledge: Knowledge, entities: Sequence[Sequence[str]],
                   drawn: Sequence[Sequence[tuple[str, str]]], max_knowledge_words: int = 10) -> list[dict[str, Any]]:
    """One example per (document, aspect) that has an aspect summary (see the module docstring)."""
    tfidf = TfIdf([r["document"] for r in rows])
    examples = []
    for i, row in enumerate(rows):
        sentences = split_sentences(row["summary"])
        ranked = tfidf.ranked(i)
        aspects = [(a, None) for a in entities[i]] + list(drawn[i])
        for aspect, via in aspects:
            hits = aspect_sentences(sentences, aspect, knowledge.neighbours(aspect))
            if not hits:
                continue
            examples.append({
                "id": f"{row['id']}:{aspect}",
                "doc_id": row["id"],
                **({"group": row["group"]} if "group" in row else {}),
                "aspect": aspect,
                "origin": "entity" if via is None else "neighbour",
                "via": via,
                "knowledge_words": knowledge_words(ranked, knowledge.description(aspect), max_knowledge_words),
                "summary": " ".join(sentences[j] for j, _ in hits),
                "reasoning": [{"sentence": j, "matched": w} for j, w in hits],
                "document": row["document"],
            })
    return examples


def statistics(n_documents: int, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aspects per document, sentences per aspect summary, share with knowledge words."""
    n = len(examples)
    return {
        "documents": n_documents,
        "documents_with_aspects": len({e["doc_id"] for e in examples}),
        "aspect_summaries": n,
        "aspects_per_document": round(n / n_documents, 4) if n_documents else 0.0,
        "sentences_per_aspect_summary": round(sum(len(e["reasoning"]) for e in examples) / n, 4) if n else 0.0,
        "share_with_knowledge_words": round(sum(bool(e["knowledge_words"]) for e in examples) / n, 4) if n else 0.0,
        "share_neighbour_aspects": round(sum(e["origin"] == "neighbour" for e in examples) / n, 4) if n else 0.0,
    }
