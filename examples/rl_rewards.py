"""A reward of your own for ``luminary rl train``: ``kind: python, function: examples/rl_rewards.py:keywords``.

A reward takes the batch's sources, generated texts and targets (None where
the data has none) and returns one number per text, on [0, 100].
"""

KEYWORDS = ("self", "return", "None")


def keywords(sources, texts, targets):
    """100 × the fraction of KEYWORDS that appear in the text."""
    return [100.0 * sum(k in text.split() for k in KEYWORDS) / len(KEYWORDS) for text in texts]
