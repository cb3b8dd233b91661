"""``luminary summarize build-data|warm-start|train|run|evaluate|demo``: summaries on any aspect, weakly supervised."""

from __future__ import annotations

import json
from pathlib import Path

import typer

summarize_app = typer.Typer(help="Aspect-based summarization with weak supervision from knowledge (Tan et al. 2020).",
                            no_args_is_help=True)

KNOWLEDGE = typer.Option("wordnet", "--knowledge", "-k",
                         help="wordnet, wordnet:/folder, or a ConceptNet .csv/.csv.gz/.json file")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N (default: CUDA when present)")


def _settings(batch_size: int, num_beams: int | None, min_length: int | None, max_length: int | None):
    from luminary.summarize.generate import GenerationSettings

    given = {"batch_size": batch_size, "num_beams": num_beams, "min_length": min_length, "max_length": max_length}
    return GenerationSettings(**{k: v for k, v in given.items() if v is not None})


BATCH = typer.Option(8, "--batch-size", min=1)
BEAMS = typer.Option(None, "--num-beams", min=1, help="default 4 (the paper)")
MIN_LEN = typer.Option(None, "--min-length", min=0, help="default 55 tokens (the paper)")
MAX_LEN = typer.Option(None, "--max-length", min=1, help="default 140 tokens (the paper)")


@summarize_app.command("build-data")
def build_data(
    input: Path = typer.Argument(..., help="JSONL of {document, summary} (an id optional)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder: train.jsonl, heldout.jsonl, stats.json"),
    knowledge: str = KNOWLEDGE,
    extractor: str = typer.Option("auto", "--extractor", help="auto (spaCy where installed), spacy, rule"),
    max_knowledge_words: int = typer.Option(10, "--max-knowledge-words", min=0),
    heldout: float = typer.Option(0.0, "--heldout", min=0.0, max=0.99, help="share of documents held out"),
    seed: int = typer.Option(0),
) -> None:
    """Weak supervision: aspects, knowledge neighbours, aspect summaries and knowledge words."""
    from luminary.core.errors import LuminaryError
    from luminary.summarize.data import build_data as build

    if extractor not in ("auto", "spacy", "rule"):
        raise LuminaryError(f"--extractor: expected auto, spacy or rule, got {extractor!r}")
    stats = build(input, out, knowledge, extractor, max_knowledge_words, heldout, seed)
    typer.echo(json.dumps(stats, indent=2))
    typer.echo(f"wrote {out}\nnext: luminary summarize train CONFIG   (with data: {out}/train.jsonl; "
               "see examples/summarize-tiny.yaml)", err=True)  # stdout stays one JSON object


@summarize_app.command("warm-start")
def warm_start(
    out: Path = typer.Option(..., "--out", "-o", help="the model folder to write"),
    encoder: Path = typer.Option(None, "--encoder", help="a BERT-family folder (default: the packaged MiniLM)"),
    decoder_layers: int = typer.Option(None, "--decoder-layers", min=1, help="the decoder keeps the first N layers"),
    seed: int = typer.Option(0, help="seeds the fresh cross-attention weights"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """A BERT2BERT seq2seq model warm-started from a pretrained encoder (Rothe et al. 2020), for train's model:."""
    from luminary.summarize.warm_start import warm_start as build

    folder = build(out, encoder, decoder_layers, seed, overwrite)
    typer.echo(f"wrote {folder}\nnext: set model: {folder} in a train config, then luminary summarize train CONFIG")


@summarize_app.command("train")
def train(
    config: Path = typer.Argument(..., help="YAML config (see examples/summarize-tiny.yaml)"),
    out: Path = typer.Option(None, "--out", help="run folder (default: runs/<config name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
) -> None:
    """Train an aspect summarizer (label-smoothed cross-entropy) through the one Trainer; it lands in OUT/model."""
    from luminary.core.config import load_config
    from luminary.summarize.train import SummarizeTrainConfig, train_summarizer

    result = train_summarizer(load_config(config, SummarizeTrainConfig), out or Path("runs") / config.stem, resume)
    last = result["records"][-1] if result["records"] else {}
    typer.echo(f"step {last.get('step', '-')}: loss {last.get('loss', float('nan')):.4f} -> {result['model']}")
    typer.echo(f"next: luminary summarize evaluate {result['model']} HELDOUT.jsonl --out RESULTS   "
               f"(or luminary summarize run {result['model']} --aspect ASPECT DOC.txt)")


@summarize_app.command("run")
def run(
    model: Path = typer.Argument(..., help="a trained summarizer folder (a BART/T5-family seq2seq model)"),
    document: Path = typer.Argument(None, help="a text file to summarize (or --input for JSONL)"),
    aspect: str = typer.Option(None, "--aspect", "-a", help="the aspect to summarize DOCUMENT on"),
    input: Path = typer.Option(None, "--input", "-i", help="JSONL rows with aspect and document"),
    output: Path = typer.Option(None, "--output", "-o", help="JSONL to write (default: stdout)"),
    knowledge: str = KNOWLEDGE, batch_size: int = BATCH, num_beams: int = BEAMS, min_length: int = MIN_LEN,
    max_length: int = MAX_LEN, device: str = DEVICE,
) -> None:
    """Summarize a document on an aspect, or many rows of JSONL (each gains "aspect_summary")."""
    from luminary.core.errors import LuminaryError
    from luminary.core.io import read_text
    from luminary.summarize.generate import AspectSummarizer, add_knowledge_words, summarize_file
    from luminary.summarize.knowledge import open_knowledge

    settings = _settings(batch_size, num_beams, min_length, max_length)
    if input is not None:
        if document is not None or aspect is not None:
            raise LuminaryError("give either --input JSONL or DOCUMENT with --aspect, not both")
        summarize_file(model, input, output, knowledge, settings, device)
        if output is not None:
            typer.echo(f"wrote {output}")
        return
    if document is None or aspect is None:
        raise LuminaryError("give DOCUMENT and --aspect (or --input JSONL)")
    text = read_text(document, "document")
    if not text.strip() or not aspect.strip():
        raise LuminaryError(f"{document}: the document and the aspect must not be empty")
    summarizer = AspectSummarizer(model, device)
    rows = add_knowledge_words([{"aspect": aspect, "document": text}], open_knowledge(knowledge, terms={aspect}))
    typer.echo(summarizer.summarize(rows, settings)[0])


@summarize_app.command("evaluate")
def evaluate(
    model: Path = typer.Argument(..., help="a trained summarizer folder"),
    data: Path = typer.Argument(..., help="aspect summaries (build-data's heldout.jsonl)"),
    out: Path = typer.Option(..., "--out", "-o", help="results folder: predictions.jsonl, results.json, results.md"),
    consistency: bool = typer.Option(True, "--consistency/--no-consistency", help="CTC consistency (MiniLM)"),
    batch_size: int = BATCH, num_beams: int = BEAMS, min_length: int = MIN_LEN, max_length: int = MAX_LEN,
    device: str = DEVICE,
) -> None:
    """ROUGE-1/2/L against the aspect summaries and CTC consistency against the documents, per aspect too."""
    from luminary.summarize.evaluate import evaluate_file, results_table

    report = evaluate_file(model, data, out, _settings(batch_size, num_beams, min_length, max_length),
                           consistency, device)
    typer.echo(results_table(report["systems"]), nl=False)
    typer.echo(f"wrote {out}\nnext: read {out}/results.md (the table per aspect too)")


@summarize_app.command("demo")
def demo(
    config: Path = typer.Argument(None, help="YAML config (see examples/summarize-demo.yaml); defaults without"),
    out: Path = typer.Option(Path("runs/summarize-demo"), "--out"),
) -> None:
    """The offline demonstration: stdlib docs, weak supervision, aspect vs aspect-blind vs lead-k."""
    from luminary.core.config import load_config
    from luminary.summarize.demo import DemoConfig, run_demo
    from luminary.summarize.evaluate import results_table

    report = run_demo(load_config(config, DemoConfig) if config else DemoConfig(), out)
    typer.echo(results_table(report["systems"]), nl=False)
    typer.echo(f"wrote {out}\nnext: read {out}/results/results.md; luminary summarize run {out}/aspect/model "
               "--aspect ASPECT DOC.txt")


def register(app: typer.Typer) -> None:
    app.add_typer(summarize_app, name="summarize")
