"""CTC: evaluation of generated text by information alignment (Deng et al., EMNLP 2021).

Compression (summarization), transduction (style transfer) and creation
(dialog) are scored with one idea: how well the information of one text is
supported by another, token by token. See docs/ctc.md.
"""

from luminary.ctc.scorers import (
    DialogScorer,
    FactualConsistencyScorer,
    StyleTransferScorer,
    SummarizationScorer,
    score_file,
)

__all__ = ["DialogScorer", "FactualConsistencyScorer", "StyleTransferScorer", "SummarizationScorer", "score_file"]
