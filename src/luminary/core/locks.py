"""One writer per output folder: an OS lock held for the life of the writer.

Every command that writes a run, a release, a merge or a report takes the
lock of its output folder first. The lock is ``fcntl.flock`` on a small file
beside the folder (``.NAME.lock``, so it exists before the folder does and is
outside anything a manifest covers); it holds the writer's pid, host and
start time. The operating system drops a flock when its process dies, so a
lock left by a killed writer is simply free: the next writer takes it over
(and says whose it was). A second writer while the first runs gets one line
naming the holder, exit 2.

Whoever holds the lock also clears the leftovers of an interrupted atomic
write of that folder (``.tmp-NAME.*`` beside it): nobody else can be writing
them.

The lock is per process: the same process taking a folder it already holds
(a resume in one Python session) just holds it on. A folder inside a writer's
own staging area (a ``.tmp-`` folder: a merge that a glue or a search makes
on its way) needs no lock: nobody else can see it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import time
from pathlib import Path
from typing import Iterator

from luminary.core.errors import LuminaryError
from luminary.core.io import TMP_PREFIX, sweep_temporaries

_HELD: dict[Path, int] = {}  # resolved folder -> the open lock file's descriptor


def lock_path(folder: Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (since {info.get('started', '?')})"


def acquire(folder: str | Path, what: str = "output folder") -> None:
    """Hold the lock of ``folder`` until :func:`release` or the end of the process."""
    folder = Path(folder).absolute()
    if folder in _HELD or _staged(folder):
        return
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LuminaryError(f"{folder}: this {what} is being written by {_holder(path)}; "
                            "wait for it to finish or choose another output") from None
    record = {"pid": os.getpid(), "host": platform.node(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _HELD[folder] = fd
    sweep_leftovers(folder)


def _staged(folder: Path) -> bool:
    return any(part.startswith(TMP_PREFIX) for part in folder.parts[:-1])


def release(folder: str | Path) -> None:
    fd = _HELD.pop(Path(folder).absolute(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def locked(folder: str | Path, what: str = "output folder") -> Iterator[None]:
    """The lock of ``folder`` for the ``with`` block (kept if this process held it already)."""
    held = Path(folder).absolute() in _HELD
    acquire(folder, what)
    try:
        yield
    finally:
        if not held:
            release(folder)


def sweep_leftovers(folder: Path) -> list[Path]:
    """Remove ``.tmp-NAME.*`` (and ``.tmp-old-NAME-*``) beside ``folder``: an interrupted writer's."""
    return sweep_temporaries(folder.parent, (f"{TMP_PREFIX}{folder.name}.", f"{TMP_PREFIX}old-{folder.name}-"))
