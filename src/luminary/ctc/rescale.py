"""Baseline rescaling as ctc_score does it: bert-score's shipped F baselines, applied to the final score.

ctc_score's ``StyleTransferScorer.score(..., rescale_with_baseline=True)``
(E aligners only; ``style_transfer_scorer.py``) computes preservation
p = 2ab/(a + b) from the two aggregated directions and then returns

    p' = (p − b_F) / (1 − b_F)

with b_F = ``BERTScorer(model_type, lang="en").baseline_vals[2]``: the F
column of bert-score's file ``rescale_baseline/en/<model_type>.tsv`` at the
row of the layer used (bert-score reads ``iloc[num_layers]``). These files
ship inside the ``bert-score`` package (Zhang et al., ICLR 2020, §A: the
mean score of random unrelated Common Crawl pairs). With bert-score's
matching, a = P and b = R, so p' is bert-score's rescaled F
(``BERTScorer(rescale_with_baseline=True)``).

Which file: the E aligner's preset names its model (bert-base →
``bert-base-uncased``, roberta-large → ``roberta-large``,
roberta-large-mnli → ``roberta-large-mnli``, as ctc_score's
``E_MODEL_CONFIGS``); ``baseline_model`` names any other shipped file (e.g.
``roberta-base``, ``microsoft/deberta-large``), ``baseline_file`` a file of
one's own in bert-score's format (``LAYER,P,R,F``, one row per layer).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from luminary.core.errors import LuminaryError

LANG = "en"  # ctc_score builds its BERTScorer with lang="en"


def baseline_folder(lang: str = LANG) -> Path:
    """bert-score's ``rescale_baseline/<lang>`` folder, found without importing bert-score."""
    spec = importlib.util.find_spec("bert_score")
    if spec is None or not spec.submodule_search_locations:
        raise LuminaryError("rescaling with a baseline needs bert-score's baseline files: pip install bert-score, "
                            "or give a baseline file of your own (baseline_file=, --baseline-file)")
    return Path(list(spec.submodule_search_locations)[0]) / "rescale_baseline" / lang


def shipped_baseline(model: str, lang: str = LANG) -> Path:
    """The baseline file bert-score ships for ``model`` (a hub name such as ``roberta-large``)."""
    folder = baseline_folder(lang)
    path = folder / f"{model}.tsv"
    if not path.is_file():
        names = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.tsv"))
        raise LuminaryError(f"baseline_model: bert-score ships no {lang} baseline for {model!r}; "
                            f"choose one of {', '.join(names)}, or give baseline_file=")
    return path


def read_baseline(path: str | Path, layer: int) -> tuple[float, float, float]:
    """(P, R, F) baselines of ``layer`` from a bert-score baseline file (``LAYER,P,R,F``; row ``layer``)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as err:
        raise LuminaryError(f"{path}: cannot read the baseline file ({err})") from None
    if not rows or [c.strip() for c in rows[0]] != ["LAYER", "P", "R", "F"]:
        raise LuminaryError(f"{path}: not a bert-score baseline file (expected the header LAYER,P,R,F)")
    body = rows[1:]
    if not 0 <= layer < len(body):
        raise LuminaryError(f"{path}: no baseline for layer {layer} (the file has layers 0 to {len(body) - 1})")
    try:
        p, r, f = (float(v) for v in body[layer][1:4])
    except ValueError:
        raise LuminaryError(f"{path}: row {layer + 2} is not three numbers after the layer") from None
    if not f < 1:
        raise LuminaryError(f"{path}: the F baseline of layer {layer} is {f}; it must be below 1")
    return p, r, f


def rescale(score: float, baseline: float) -> float:
    """(s − b) / (1 − b): 0 at the baseline, 1 at a perfect score (bert-score's rescaling)."""
    return (score - baseline) / (1 - baseline)


def aligner_baseline(aligner: object, baseline_file: str | Path | None = None,
                     baseline_model: str | None = None) -> float:
    """The F baseline b_F for an E aligner: from ``baseline_file``, else bert-score's file of
    ``baseline_model`` or of the aligner's preset, at the aligner's layer."""
    if getattr(aligner, "kind", None) != "E":
        raise LuminaryError("rescale_with_baseline applies to the E aligner only (as in ctc_score)")
    if getattr(aligner, "baseline", None) is not None:
        raise LuminaryError("give either a per-token baseline (baseline=) or rescale_with_baseline, not both")
    if baseline_file is not None and baseline_model is not None:
        raise LuminaryError("give baseline_file or baseline_model, not both")
    if baseline_file is None:
        model = baseline_model or getattr(aligner, "baseline_model", None)
        if model is None:
            raise LuminaryError("rescale_with_baseline: this encoder is none of the E presets (bert-base, "
                                "roberta-large, roberta-large-mnli), so no bert-score baseline file is known "
                                "for it; name one (baseline_model=, --baseline-model) or give your own "
                                "(baseline_file=, --baseline-file)")
        baseline_file = shipped_baseline(model)
    return read_baseline(baseline_file, aligner.layer)[2]
