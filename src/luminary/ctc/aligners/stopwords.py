"""English stopword lists for aggregation: NLTK's (what ctc_score reads) and scikit-learn's.

ctc_score's ``Aligner.aggregate`` drops a token when ``token.strip().lower()``
is in ``nltk.corpus.stopwords.words('english')``. That list is a separate
NLTK data download (not installed with the ``nltk`` package), so its 179
words are written out here, as NLTK's English list stood when CTC was
published (source: the ``stopwords`` corpus of nltk_data,
https://github.com/nltk/nltk_data, ``corpora/stopwords/english``).
scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words, shipped inside the
package) is the other choice.
"""

from __future__ import annotations

from functools import lru_cache

from luminary.core.errors import LuminaryError

NLTK_ENGLISH = (
    "i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves "
    "he him his himself she she's her hers herself it it's its itself they them their theirs themselves "
    "what which who whom this that that'll these those am is are was were be been being have has had having "
    "do does did doing a an the and but if or because as until while of at by for with about against between "
    "into through during before after above below to from up down in out on off over under again further then "
    "once here there when where why how all any both each few more most other some such no nor not only own "
    "same so than too very s t can will just don don't should should've now d ll m o re ve y ain aren aren't "
    "couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn "
    "mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't "
    "wouldn wouldn't"
).split()


def _sklearn() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


# name -> (loader, where the list comes from)
STOPWORD_LISTS = {
    "nltk": (lambda: frozenset(NLTK_ENGLISH), "NLTK's English list (179 words), what ctc_score uses"),
    "sklearn": (_sklearn, "scikit-learn's ENGLISH_STOP_WORDS (318 words)"),
}
DEFAULT_STOPWORDS = "nltk"


@lru_cache(maxsize=None)
def english_stopwords(name: str = DEFAULT_STOPWORDS) -> frozenset[str]:
    """The stopword list called ``name`` (``nltk`` or ``sklearn``)."""
    if name not in STOPWORD_LISTS:
        raise LuminaryError(f"unknown stopword list {name!r}: choose one of {', '.join(STOPWORD_LISTS)}")
    return STOPWORD_LISTS[name][0]()
