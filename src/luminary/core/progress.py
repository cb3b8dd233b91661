"""Progress bars and console output (rich), quiet off rank 0 and under tests."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

console = Console(stderr=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def enabled() -> bool:
    return is_main_process() and os.environ.get("LUMINARY_QUIET", "0") != "1"


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled(),
        transient=not sys.stderr.isatty(),
    )


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator["Bar"]:
    """A bar with ``advance(n, info=...)``; silent off rank 0 or with LUMINARY_QUIET=1."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total, info="")
        yield Bar(progress, task)


class Bar:
    def __init__(self, progress: Progress, task: int):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if info is None:
            self._progress.update(self._task, advance=n)
        else:
            self._progress.update(self._task, advance=n, info=info)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as bar:
        for item in items:
            yield item
            bar.advance()


def info(message: str) -> None:
    if enabled():
        console.print(message, soft_wrap=True)  # one line a message, however wide, for logs and grep
