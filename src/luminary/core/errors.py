"""The one error type users see.

Every check on user input raises :class:`LuminaryError` with a message that
names the file or field at fault. The command line turns it into one line on
stderr and exit status 2 (``--debug`` shows the traceback instead).
"""


class LuminaryError(Exception):
    """Bad input or an impossible request, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Interrupted(LuminaryError):
    """A run stopped by SIGINT or SIGTERM after a step it saved; exit status 128 + the signal."""

    def __init__(self, signum: int, step: int, checkpoint: object = None):
        import signal

        name = signal.Signals(signum).name
        where = f"; checkpoint {checkpoint}; continue with the same command and --resume" if checkpoint else ""
        super().__init__(f"stopped by {name} after step {step}{where}")
        self.exit_code = 128 + signum


def as_luminary_error(exc: BaseException) -> LuminaryError:
    """An error from outside luminary's own checks as one line: the file, and what went wrong.

    The command line's last net, so that a full disk, a file that is not
    UTF-8 or a folder where a file was expected never shows a traceback.
    """
    if isinstance(exc, UnicodeDecodeError):
        return LuminaryError(f"a file is not UTF-8 text (byte {exc.start}: {exc.reason})")
    if isinstance(exc, OSError):
        where = exc.filename or "a file"
        if is_no_space(exc):
            return no_space(where)
        return LuminaryError(f"{where}: {exc.strerror or exc}")
    return LuminaryError(f"{type(exc).__name__}: {exc}")


def is_no_space(exc: BaseException) -> bool:
    """A full disk, as an ``OSError`` or as a library's own error that carries the OS message
    (safetensors raises ``SafetensorError: ... No space left on device (os error 28)``)."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return "No space left on device" in str(exc)


def no_space(where: object) -> LuminaryError:
    """The one line for a full disk: what was being written, the space left, what is intact."""
    import shutil
    from pathlib import Path

    path = Path(str(where))
    probe = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(probe).free / 2**20
    return LuminaryError(f"{where}: no space left on the device while writing it ({free:,.0f} MiB free); "
                         "what was being written is discarded, and every folder written before it "
                         "(a run's earlier checkpoints) is intact")


def require(condition: bool, message: str) -> None:
    """Raise :class:`LuminaryError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise LuminaryError(message)
