"""Entity filters of BertNet's search (specs/bertnet.md, step 4).

An entity is dropped when it is a stopword, has at most 2 characters, holds a
one-character word or the same word twice, has no letter or any punctuation,
appears in the prompt, or is not whole text (a byte-level token cut inside a
character decodes to U+FFFD); a tuple is dropped when one of its entities equals,
or is a prefix of, another. After ranking, one word may appear in at most 5
tuples (:func:`cap_word_repeats`).
"""

from __future__ import annotations

import re
import string

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can cannot could couldn't did didn't do does doesn't doing don't down during each few for from further
had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his how how's
i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some
such than that that's the their theirs them themselves then there there's these they they'd they'll they're they've
this those through to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
when's where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves also may might must shall just can't s t d ll m o re ve y
""".split())

PUNCTUATION = frozenset(string.punctuation)
MAX_WORD_REPEAT = 5


def prompt_words(prompts: list[str]) -> set[str]:
    """The lower-cased words of the prompts, slots left out (an entity may not be one of them)."""
    words: set[str] = set()
    for prompt in prompts:
        words.update(w for w in re.sub(r"<ENT\d+>", " ", prompt).lower().split() if w)
    return words


def token_allowed(text: str) -> bool:
    """A subword may be part of an entity: not blank, no punctuation, not a stopword.

    Exact with respect to :func:`entity_ok`: an entity holding a token with
    punctuation fails it anyway, so banning the token prunes nothing valid.
    """
    stripped = text.strip()
    return bool(stripped) and not (set(stripped) & PUNCTUATION) and stripped.lower() not in STOPWORDS


def entity_ok(entity: str, banned_words: set[str] = frozenset()) -> bool:
    """The single-entity filters of the spec."""
    text = entity.strip()
    words = text.lower().split()
    if not words or len(text) <= 2 or text.lower() in STOPWORDS:
        return False
    if any(len(w) == 1 for w in words) or len(set(words)) < len(words):
        return False
    if not any(c.isalpha() for c in text) or set(text) & PUNCTUATION or "\ufffd" in text:  # \ufffd: a cut byte
        return False
    if text.lower() in banned_words:
        return False
    return True


def pair_ok(entity: str, others: list[str]) -> bool:
    """An entity neither equals nor is a prefix of another entity of its tuple (nor they of it)."""
    a = entity.strip().lower()
    for other in others:
        b = other.strip().lower()
        if a == b or a.startswith(b) or b.startswith(a):
            return False
    return True


def tuple_ok(entities: list[str], banned_words: set[str] = frozenset()) -> bool:
    return all(entity_ok(e, banned_words) for e in entities) and all(
        pair_ok(e, entities[:i]) for i, e in enumerate(entities))


def cap_word_repeats(ranked: list[tuple[list[str], float]], limit: int = MAX_WORD_REPEAT) -> list:
    """Keep tuples in rank order while every word stays in at most ``limit`` kept tuples."""
    counts: dict[str, int] = {}
    kept = []
    for entities, score in ranked:
        words = {w for e in entities for w in e.lower().split()}
        if any(counts.get(w, 0) >= limit for w in words):
            continue
        for w in words:
            counts[w] = counts.get(w, 0) + 1
        kept.append((entities, score))
    return kept
