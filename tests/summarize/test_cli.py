from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from luminary.cli.summarize import register
from luminary.core.errors import LuminaryError


def app() -> typer.Typer:
    root = typer.Typer()
    register(root)
    return root


def test_build_data_command_prints_statistics(pairs_file, conceptnet_csv, tmp_path):
    result = CliRunner().invoke(app(), ["summarize", "build-data", str(pairs_file), "--out", str(tmp_path / "d"),
                                        "--knowledge", str(conceptnet_csv), "--extractor", "rule", "--seed", "1"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)  # stdout: the statistics alone; the path and next command on stderr
    assert f"wrote {tmp_path / 'd'}" in result.stderr and "next: luminary summarize train" in result.stderr
    assert stats["documents"] == 3 and stats == json.loads((tmp_path / "d" / "stats.json").read_text())
    assert set(stats) >= {"aspects_per_document", "sentences_per_aspect_summary", "share_with_knowledge_words"}


def test_bad_input_is_a_luminary_error(tmp_path, conceptnet_json):
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"summary": "s"}\n')
    result = CliRunner().invoke(app(), ["summarize", "build-data", str(bad), "--out", str(tmp_path / "d"),
                                        "--knowledge", str(conceptnet_json)])
    assert isinstance(result.exception, LuminaryError)
    assert str(result.exception) == f"{bad}: line 1: missing field 'document'"
    result = CliRunner().invoke(app(), ["summarize", "run", str(tmp_path), "--aspect", "dog"])
    assert isinstance(result.exception, LuminaryError) and "DOCUMENT" in str(result.exception)


def test_every_command_is_registered():
    result = CliRunner().invoke(app(), ["summarize", "--help"])
    for name in ("build-data", "train", "run", "evaluate", "demo"):
        assert name in result.output
