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


def require(condition: bool, message: str) -> None:
    """Raise :class:`LuminaryError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise LuminaryError(message)
