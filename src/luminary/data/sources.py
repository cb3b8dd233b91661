"""Document sources for pretraining, each with a content hash.

Built in, offline on any machine with CPython:

- ``stdlib-code``: the standard library's own ``.py`` files, tests excluded
  (``test``/``tests``/``idle_test`` folders and ``test_*.py``), one document per file.
- ``stdlib-prose``: the reference topics of ``pydoc_data.topics`` (one document per
  topic) and the docstrings of the standard library, extracted with ``ast``
  (one document per module: its module, class and function docstrings).

And from the user: a folder of files by glob, JSONL with a text field, or an
Arrow/parquet dataset read through ``datasets``.

The content hash of a source is the sha256 over its documents in order (each
preceded by its name and length), so an unchanged source is recognised and not
tokenized again.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from pathlib import Path
from typing import Annotated, Iterator, Literal, Union

from pydantic import Field

from luminary.core.config import Config
from luminary.core.errors import LuminaryError
from luminary.core.io import read_jsonl

TEST_DIRS = {"test", "tests", "idle_test"}
SKIP_DIRS = TEST_DIRS | {"site-packages", "__pycache__", "dist-packages"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    root = stdlib_root()
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        files.append(path)
    return files


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def docstrings(source: str) -> list[str]:
    """Module, class and function docstrings of a Python source, in file order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc.split()) >= 3:
                found.append((getattr(node, "lineno", 0), doc))
    return [doc for _, doc in sorted(found, key=lambda x: x[0])]


class SourceBase(Config):
    kind: Literal["code", "prose"] = Field(
        "prose", description="code or prose: a phase's FIM applies to code sources unless told otherwise")
    hub_dataset: str | None = Field(
        None, description="the Hub dataset id this source's text comes from, listed in the release card's "
                          "datasets (none: the source is described in the card's body only)")


class StdlibCode(SourceBase):
    type: Literal["stdlib-code"]
    kind: Literal["code", "prose"] = "code"

    def documents(self) -> Iterator[tuple[str, str]]:
        root = stdlib_root()
        for path in stdlib_files():
            text = read_text(path)
            if text and text.strip():
                yield path.relative_to(root).as_posix(), text


class StdlibProse(SourceBase):
    type: Literal["stdlib-prose"]
    topics: bool = True
    docstrings: bool = True

    def documents(self) -> Iterator[tuple[str, str]]:
        if self.topics:
            from pydoc_data.topics import topics

            for name in sorted(topics):
                yield f"topics/{name}", topics[name]
        if self.docstrings:
            root = stdlib_root()
            for path in stdlib_files():
                text = read_text(path)
                docs = docstrings(text) if text else []
                if docs:
                    yield f"docstrings/{path.relative_to(root).as_posix()}", "\n\n".join(docs)


class FileSource(SourceBase):
    type: Literal["files"]
    path: str
    glob: str = "**/*"

    def documents(self) -> Iterator[tuple[str, str]]:
        root = Path(self.path)
        for path in sorted(p for p in root.glob(self.glob) if p.is_file()):
            text = read_text(path)
            if text and text.strip():
                yield path.relative_to(root).as_posix(), text


class JsonlSource(SourceBase):
    type: Literal["jsonl"]
    path: str
    text_field: str = "text"

    def documents(self) -> Iterator[tuple[str, str]]:
        for i, row in enumerate(read_jsonl(self.path, required=(self.text_field,))):
            yield f"line{i + 1}", str(row[self.text_field])


class ArrowSource(SourceBase):
    """Arrow or parquet files (a file, a folder or a glob) read with ``datasets``."""

    type: Literal["parquet", "arrow"]
    path: str
    text_field: str = "text"

    def documents(self) -> Iterator[tuple[str, str]]:
        import datasets

        root = Path(self.path)
        pattern = str(root / f"*.{self.type}") if root.is_dir() else self.path
        ds = datasets.load_dataset(self.type, data_files=pattern, split="train")
        if self.text_field not in ds.column_names:
            raise LuminaryError(f"{self.path}: no column '{self.text_field}' (has {ds.column_names})")
        for i, text in enumerate(ds[self.text_field]):
            yield f"row{i}", str(text)


SourceConfig = Annotated[
    Union[StdlibCode, StdlibProse, FileSource, JsonlSource, ArrowSource], Field(discriminator="type")
]


def check_source(name: str, source: SourceConfig) -> None:
    """Fail early, naming the field, on a source that cannot give documents."""
    path = getattr(source, "path", None)
    if path is None:
        return
    p = Path(path)
    if not p.exists() and not (source.type in ("parquet", "arrow") and any(p.parent.glob(p.name))):
        raise LuminaryError(f"sources.{name}.path: {p} does not exist")
    if source.type == "files":
        if not p.is_dir():
            raise LuminaryError(f"sources.{name}.path: {p} is not a folder")
        if not any(f.is_file() for f in p.glob(source.glob)):
            raise LuminaryError(f"sources.{name}.path: no files in {p} match '{source.glob}'")


def load_documents(name: str, source: SourceConfig) -> tuple[list[str], str]:
    """All documents of a source and its content hash."""
    check_source(name, source)
    h = hashlib.sha256()
    texts = []
    for doc_name, text in source.documents():
        data = text.encode("utf-8")
        h.update(f"{doc_name}\0{len(data)}\0".encode())
        h.update(data)
        texts.append(text)
    if not texts:
        raise LuminaryError(f"sources.{name}: no documents (empty source)")
    return texts, h.hexdigest()
