"""``luminary``: the command line. Each module in MODULES registers its commands.

Commands parse arguments and call the library. A :class:`LuminaryError`
becomes one line on stderr and exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from luminary.core.errors import Interrupted, LuminaryError, as_luminary_error

try:  # newer Typer raises its own copy of click's exceptions
    from typer._click import exceptions as click_exceptions
except ImportError:  # older Typer raises click's
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="luminary",
    help="An open workshop for language models: pretrain, release, merge, score, evaluate and align.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# One explicit list; tests/cli/test_app.py checks that every module here is registered.
MODULES = [
    "luminary.cli.train",
    "luminary.cli.generate",
    "luminary.cli.pretrain",
    "luminary.cli.data",
    "luminary.cli.release",
    "luminary.cli.rl",
    "luminary.cli.parallel",
    "luminary.cli.ctc",
    "luminary.cli.scorer",
    "luminary.cli.merge",
    "luminary.cli.harvest",
    "luminary.cli.activity",
    "luminary.cli.summarize",
    "luminary.cli.evaluate",
]


def _register() -> None:
    for name in MODULES:
        importlib.import_module(name).register(app)


def _version(value: bool) -> None:
    if value:
        from luminary import __version__

        typer.echo(f"luminary {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="print luminary's version and exit")) -> None:
    """An open workshop for language models: pretrain, release, merge, score, evaluate and align."""


def _polish(command) -> None:
    """Help as users read it: each command's first line whole in its group's list (click cuts it at 45
    characters), arguments named as users type them (CONFIG, not {config})."""
    for sub in getattr(command, "commands", {}).values():
        if sub.help and not sub.short_help:
            sub.short_help = sub.help.strip().split("\n\n")[0].replace("\n", " ")
        _polish(sub)
    for param in getattr(command, "params", []):
        if param.param_type_name == "argument" and param.metavar is None:
            param.metavar = param.name.upper()


_register()


def _quiet_libraries() -> None:
    """Set through the environment, which transformers reads when it is imported (if a command imports it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars follow this switch
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "transformers" in sys.modules:  # called in-process, after transformers read the environment
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def _usage_line(exc: Exception) -> str:
    """A usage error as one line: the command, what is wrong, where help is."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "luminary"
    message = " ".join(exc.format_message().split())
    return f"{where}: {message} (see {where} --help)"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    _quiet_libraries()
    command = typer.main.get_command(app)
    _polish(command)
    try:
        code = command.main(args=args, prog_name="luminary", standalone_mode=False)
    except (LuminaryError, OSError, UnicodeDecodeError) as exc:
        if debug:
            raise
        error = exc if isinstance(exc, LuminaryError) else as_luminary_error(exc)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line, not one per rank
            print(str(error) if isinstance(error, Interrupted) else f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except click_exceptions.UsageError as exc:
        if isinstance(exc, getattr(click_exceptions, "NoArgsIsHelpError", ())):  # a bare group: its help
            print(exc.format_message())
            sys.exit(0)
        if debug:
            raise
        print(f"error: {_usage_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except click_exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
