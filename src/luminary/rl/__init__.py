"""Soft Q-learning for text generation (Guo et al. 2022; ``specs/sql.md``, ``docs/rl.md``).

- ``losses``: single- and multi-step path consistency and their mean
- ``shaping``: rewards on [0, 100] onto [min, max]
- ``target``: the target network (Polyak τ or hard copies)
- ``replay``: a replay buffer of generated sequences
- ``rewards``: BLEU, a classifier's probability, an LM's NLL, repetitions, your own, weighted sums
- ``policy``: a causal-LM or seq2seq folder as a soft-Q policy (sampling, beam search, Q-values)
- ``sql``: the ``loss_fn`` for the Trainer (on-, off-policy, mixed, alternate) and its callback
- ``config``, ``run``: ``luminary rl train`` / ``luminary rl generate``
- ``toy``: the paper's toy task and a GRU policy
"""
