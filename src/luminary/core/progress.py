"""Progress bars and console output (rich), quiet off rank 0 and under tests.

In a terminal a bar is drawn by rich. Into a log file (stderr not a terminal)
a bar writes plain lines instead: one when the work starts, one each time it
passes another tenth of its total or 30 s after the last line, and one when
it ends, so a long run in a batch job shows where it is.
"""

from __future__ import annotations

import os
import sys
import time
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
        disable=not enabled() or not sys.stderr.isatty(),
    )


LOG_EVERY_S = 30.0  # into a log file: a line at least this often ...
LOG_TENTHS = 10  # ... and at each tenth of the total


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator["Bar"]:
    """A bar with ``advance(n, info=...)``; silent off rank 0 or with LUMINARY_QUIET=1."""
    with make_progress() as progress:
        task = progress.add_task(description, total=total, info="")
        bar = Bar(progress, task, description, total, log=enabled() and not sys.stderr.isatty())
        yield bar
        bar.finish()


class Bar:
    def __init__(self, progress: Progress, task: int, description: str = "", total: int | None = None,
                 log: bool = False):
        self._progress, self._task = progress, task
        self.description, self.total, self.log = description, total, log
        self.done, self.info = 0, ""
        self._start = self._last = time.monotonic()
        self._tenth, self._printed = 0, -1
        if log:
            self._line()

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info
        if info is None:
            self._progress.update(self._task, advance=n)
        else:
            self._progress.update(self._task, advance=n, info=info)
        if self.log:
            now = time.monotonic()
            tenth = self.done * LOG_TENTHS // self.total if self.total else 0
            if tenth > self._tenth or now - self._last >= LOG_EVERY_S:
                self._tenth = max(self._tenth, tenth)
                self._line(now)

    def finish(self) -> None:
        if self.log and self._printed != self.done:
            self._line()

    def _line(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._last, self._printed = now, self.done
        of = f"/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        info = f" {self.info}" if self.info else ""
        print(f"{self.description}: {self.done}{of}{info}, {now - self._start:.0f} s", file=sys.stderr, flush=True)


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
