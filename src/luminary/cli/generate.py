"""``luminary generate MODEL --prompt TEXT``: sample from any causal-LM folder."""

from __future__ import annotations

from pathlib import Path

import typer


def generate(
    model: Path = typer.Argument(..., help="a causal-LM folder (save_pretrained, with its tokenizer)"),
    prompt: str = typer.Option(..., "--prompt", "-p"),
    max_new_tokens: int = typer.Option(64, min=1),
    temperature: float = typer.Option(1.0, min=0.0),
    top_k: int = typer.Option(0, min=0),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0),
    greedy: bool = typer.Option(False, "--greedy", help="greedy decoding instead of sampling"),
    num: int = typer.Option(1, "--num", min=1, help="samples to draw"),
    seed: int = typer.Option(0),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read *.bin weights with weights_only=True"),
) -> None:
    """Sample (or decode greedily) a continuation of PROMPT."""
    from luminary.models.generation import generate_text

    for text in generate_text(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                              top_p=top_p, greedy=greedy, num=num, seed=seed, allow_pickle=allow_pickle):
        typer.echo(text)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
