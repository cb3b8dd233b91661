"""Summaries on any aspect, weakly supervised with knowledge (Tan et al., EMNLP 2020).

Knowledge (WordNet, ConceptNet) behind one interface (``knowledge``); aspects of
a summary (``aspects``); weak supervision from (document, summary) pairs
(``weak``, ``data``); training through ``luminary.train`` (``train``);
batched beam search (``generate``); ROUGE and CTC consistency (``evaluate``);
the offline standard-library demonstration (``demo``). See docs/summarize.md.
"""
