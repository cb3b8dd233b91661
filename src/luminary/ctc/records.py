"""JSONL rows with their line numbers, so that a bad value can name its line."""

from __future__ import annotations

from pathlib import Path

from luminary.core.io import read_jsonl


def read_numbered(path: str | Path, required: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line; a missing field names its line (``read_jsonl``)."""
    rows = read_jsonl(path, required=required)
    numbers = [n for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    return list(zip(numbers, rows))
