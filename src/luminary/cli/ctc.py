"""``luminary ctc …``: score generated text by information alignment, correlate, train aligners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

ctc_app = typer.Typer(help="CTC: evaluate summaries, style transfer and dialog by information alignment.",
                      no_args_is_help=True)


@ctc_app.command("score")
def score(
    input: Path = typer.Argument(..., help="JSONL, one example a line (fields: see docs/ctc.md)"),
    task: str = typer.Option(..., "--task", help="summarization, style_transfer, dialog or factual"),
    aspect: str = typer.Option(..., "--aspect", help="consistency, relevance, preservation, groundedness, "
                                                     "engagingness or factual_consistency"),
    align: str = typer.Option("E", "--align", help="E (embedding), D (discriminative) or R (regression)"),
    model: Optional[Path] = typer.Option(None, "--model", help="encoder (E) or trained aligner (D, R) folder; "
                                                                "E defaults to the packaged MiniLM"),
    layer: Optional[int] = typer.Option(None, "--layer", min=0, help="E: hidden layer to match (default: the "
                                        "preset's where the folder matches one, else the last)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="E: bert-base, roberta-large or roberta-large-mnli "
                                         "(the paper's layers 9, 17, 9)"),
    stopwords: str = typer.Option("nltk", "--stopwords", help="the stop-word list: nltk (ctc_score's) or sklearn"),
    word_features: Optional[str] = typer.Option(None, "--word-features", help="D: sum (ctc_score's) or mean of a "
                                                "word's subword features (default: what the aligner was trained with)"),
    clean: Optional[bool] = typer.Option(None, "--clean/--no-clean", help="D/R: ctc_score's text cleaning "
                                         "(default: on for D, off for R)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write scores here (JSONL) instead of stdout"),
    aggr: Optional[str] = typer.Option(None, "--aggr", help="mean or sum (default: the task's)"),
    remove_stopwords: Optional[bool] = typer.Option(None, "--remove-stopwords/--keep-stopwords",
                                                    help="default: removed for dialog, kept otherwise"),
    baseline: Optional[float] = typer.Option(None, "--baseline", help="E: luminary's per-token rescaling (s-b)/(1-b) "
                                             "(ctc_score's is --rescale-with-baseline)"),
    rescale_with_baseline: bool = typer.Option(False, "--rescale-with-baseline", help="E, preservation: rescale the "
                                               "score with bert-score's shipped F baseline, as ctc_score"),
    baseline_file: Optional[Path] = typer.Option(None, "--baseline-file", help="a baseline file in bert-score's "
                                                 "format (LAYER,P,R,F) for --rescale-with-baseline"),
    baseline_model: Optional[str] = typer.Option(None, "--baseline-model", help="the bert-score baseline to use, "
                                                 "e.g. roberta-base (default: the E preset's)"),
    summ_to_ref: Optional[Path] = typer.Option(None, "--summ-to-ref", help="relevance: a second aligner folder for "
                                               "align(ref -> hypo), as ctc_score's summ_to_ref (default: --model)"),
    idf: bool = typer.Option(False, "--idf", help="E: weight tokens by idf over the file's texts"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Score each line of INPUT; prints (or writes) one {"score": ...} line per example."""
    from luminary.ctc.scorers import score_file

    given = {"device": device, "layer": layer, "baseline": baseline, "preset": preset,
             "word_features": word_features, "clean": clean}
    options = {name: value for name, value in given.items() if value is not None}
    rows = score_file(input, task, aspect, align=align, model=model, remove_stopwords=remove_stopwords,
                      aggr_type=aggr, output=out, idf=idf, stopwords=stopwords, summ_to_ref=summ_to_ref,
                      rescale_with_baseline=rescale_with_baseline, baseline_file=baseline_file,
                      baseline_model=baseline_model, **options)
    if out is None:
        for row in rows:
            typer.echo(json.dumps(row))
    else:
        typer.echo(f"{len(rows)} scores -> {out}", err=True)


@ctc_app.command("correlate")
def correlate(
    scores: Path = typer.Argument(..., help="JSONL of scores (from `luminary ctc score`)"),
    human: Path = typer.Argument(..., help="JSONL of human judgments, line by line with SCORES"),
    field: str = typer.Option(..., "--field", help="the human score's field, e.g. consistency"),
    score_field: str = typer.Option("score", "--score-field"),
    system_field: str = typer.Option("system", "--system-field", help="for system-level correlations"),
) -> None:
    """Pearson, Spearman and Kendall at the instance and the system level."""
    from luminary.ctc.correlate import correlate_files

    typer.echo(json.dumps(correlate_files(scores, human, field, score_field, system_field), indent=2))


@ctc_app.command("make-encoder")
def make_encoder(
    out: Path = typer.Argument(..., help="folder to create"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Write the packaged all-MiniLM-L6-v2 weights as a model folder (no download)."""
    from luminary.ctc.encoder import make_encoder as build

    typer.echo(str(build(out, overwrite=overwrite)))


@ctc_app.command("make-data")
def make_data(
    input: Path = typer.Argument(..., help="JSONL with 'context' (and optionally 'text' to corrupt)"),
    out: Path = typer.Argument(..., help="JSONL of labelled examples to write"),
    infiller: Path = typer.Option(..., "--infiller", help="seq2seq folder with a mask token, or a causal LM "
                                                            "with <fim_prefix>/<fim_suffix>/<fim_middle>"),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Build D/R training data: mask spans, infill them, label each word."""
    from luminary.ctc.data import make_data as build

    typer.echo(json.dumps(build(input, out, infiller, seed=seed, device=device)))


@ctc_app.command("train")
def train(
    config: Path = typer.Argument(..., help="YAML config (see examples/ctc-train-d.yaml)"),
    out: Path = typer.Option(..., "--out", help="run folder; the best aligner goes to OUT/best"),
    resume: bool = typer.Option(True, "--resume/--restart"),
) -> None:
    """Train a D or R aligner through luminary's Trainer."""
    from luminary.core.config import load_config
    from luminary.ctc.train import AlignerTrainConfig, train_aligner

    typer.echo(json.dumps(train_aligner(load_config(config, AlignerTrainConfig), out, resume=resume), indent=2))
    typer.echo(f"next: luminary ctc score DATA.jsonl --task TASK --aspect ASPECT --align D --model {out}/best",
               err=True)  # stdout stays one JSON object


@ctc_app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="a released ctc_score D or R checkpoint (.ckpt)"),
    out: Path = typer.Argument(..., help="aligner folder to create"),
    base: Path = typer.Option(..., "--base", help="the backbone it was trained from, as a local folder with "
                              "config.json and tokenizer (D: roberta-large; D-mix-albert: "
                              "tals/albert-xlarge-vitaminc-mnli; R: bert-base-uncased)"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Convert a ctc_score D/R checkpoint into an aligner folder (read with torch.load(weights_only=True))."""
    from luminary.ctc.convert import convert_checkpoint

    typer.echo(json.dumps(convert_checkpoint(src, out, base, overwrite=overwrite), indent=2))


@ctc_app.command("baseline")
def baseline(
    texts: Path = typer.Argument(..., help="JSONL with one text a line"),
    field: str = typer.Option("text", "--field"),
    model: Optional[Path] = typer.Option(None, "--model", help="encoder folder (default: the packaged MiniLM)"),
    layer: Optional[int] = typer.Option(None, "--layer", min=0),
    pairs: int = typer.Option(1000, "--pairs", min=1),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Measure E's baseline b on unrelated pairs of your own texts (for --baseline)."""
    from luminary.core.io import read_jsonl
    from luminary.ctc.aligners import build_aligner, estimate_baseline

    rows = read_jsonl(texts, required=(field,))
    aligner = build_aligner("E", model, layer=layer)
    typer.echo(json.dumps({"baseline": estimate_baseline(aligner, [str(r[field]) for r in rows], pairs, seed)}))


def register(app: typer.Typer) -> None:
    app.add_typer(ctc_app, name="ctc")
