"""BertNet search and scoring: nodes the pruned DFS visits against brute force, batched scoring against a loop.

A tiny BERT masked LM (random weights, seed 0) with a 512-token BPE trained on
standard-library modules (offline), and the relation "<ENT0> returns <ENT1> ."
with one paraphrase, weighted on four seed tuples as ``luminary harvest`` does.

* ``nodes_visited``: partial tuples the depth-first search expands (one weighted
  next-token distribution each) to find the top ``--n`` tuples of 1..K tokens
  per entity; ``brute_force_nodes``: the partial tuples an exhaustive
  enumeration expands (every prefix of every length pattern, over the allowed
  tokens); ``ratio`` = brute / visited.
* ``tuples_per_s``: (tuple, prompt) scores per second, length-sorted batches
  of ``--batch-size`` rows against one row per forward, on the same pairs;
  ``max_abs_diff`` between the two (they must agree).

    python benchmarks/harvest_search.py [--n 50] [--max-ent-tokens 2] [--pairs 256] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import BertConfig, BertForMaskedLM

from luminary.data.tokenizer import train_bpe
from luminary.harvest.filters import prompt_words
from luminary.harvest.run import weigh_prompts
from luminary.harvest.scoring import LanguageModel, encode_template, score_pairs
from luminary.harvest.search import SearchSpace, SearchStats, allowed_tokens, dfs

PROMPTS = ["<ENT0> returns <ENT1> .", "the <ENT1> of <ENT0> ."]
SEEDS = [["self", "value"], ["return", "file"], ["name", "data"], ["type", "string"]]


def build_lm(batch_size: int) -> LanguageModel:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [f.read_text(encoding="utf-8", errors="ignore") for f in sorted(stdlib.glob("*.py"))[:40]]
    tok = train_bpe(texts, vocab_size=512)
    tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)).eval()
    return LanguageModel(model, tok, "masked", batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--max-ent-tokens", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    lm = build_lm(args.batch_size)
    _raw, weights = weigh_prompts(lm, PROMPTS, SEEDS)
    templates = [encode_template(lm.tokenizer, p) for p in weights]
    allowed = allowed_tokens(lm.tokenizer, len(lm.tokenizer))
    space = SearchSpace(lm, templates, list(weights.values()), 2, templates[0].order, allowed,
                        prompt_words(PROMPTS), args.max_ent_tokens)
    stats = SearchStats()
    start = time.perf_counter()
    found = dfs(space, args.n, stats)
    dfs_s = time.perf_counter() - start
    a = int(allowed.sum())
    brute = sum(sum(a ** d for d in range(sum(p))) for p in space.patterns())

    rng = random.Random(0)
    ids = [i for i in range(len(lm.tokenizer)) if allowed[i]]
    pairs = [(rng.choice(templates), [[rng.choice(ids) for _ in range(rng.randint(1, args.max_ent_tokens))]
                                      for _ in range(2)]) for _ in range(args.pairs)]
    score_pairs(lm, pairs[:8])  # warm-up
    start = time.perf_counter()
    batched = score_pairs(lm, pairs)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    looped = [score_pairs(lm, [pair], batch_size=1)[0] for pair in pairs]
    loop_s = time.perf_counter() - start

    print(json.dumps({
        "n": args.n, "max_ent_tokens": args.max_ent_tokens, "allowed_tokens": a, "prompts": len(templates),
        "nodes_visited": stats.nodes_visited, "brute_force_nodes": brute,
        "ratio": round(brute / stats.nodes_visited, 1), "dfs_s": round(dfs_s, 2), "found": len(found),
        "pairs": len(pairs), "batch_size": args.batch_size,
        "tuples_per_s_batched": round(len(pairs) / batched_s, 1), "tuples_per_s_loop": round(len(pairs) / loop_s, 1),
        "speedup": round(loop_s / batched_s, 2),
        "max_abs_diff": max(abs(x - y) for x, y in zip(batched, looped)),
    }))


if __name__ == "__main__":
    main()
