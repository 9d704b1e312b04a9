"""The ``diffmusic`` command: ``degrade``, ``restore`` and ``demo``.

Exit status: 0 on success (outputs that already exist are skipped), 2 for bad usage or bad input
(one line ``diffmusic: error: ...`` on stderr, no traceback, nothing written), 3 when some files
of a batch failed and the others were written, 130 when interrupted (Ctrl-C), 143 when
terminated (SIGTERM); an interrupted write leaves no partial file. Other failures raise
(status 1).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from diffmusic import package_version
from diffmusic.cli.errors import CliError
from diffmusic.cli.parsers import COMMANDS
from diffmusic.files import OutputError

USER_ERRORS = (CliError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, FileExistsError, OutputError)
"""Mistakes a user can fix; ``ValueError`` covers ``AudioError``, ``PriorNotFound``, JSON
decoding and operator argument checks."""


class Terminated(BaseException):
    """Raised by the SIGTERM handler, so that temporary files are removed on the way out."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`CliError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``diffmusic`` argument parser with its subcommands."""
    parser = Parser(prog="diffmusic", description="Zero-shot music restoration with latent "
                                                  "audio diffusion (DiffMusic).")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {package_version()}")
    common = Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or messages on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    handles = threading.current_thread() is threading.main_thread()  # signal.signal's rule
    previous = signal.signal(signal.SIGTERM, _terminate) if handles else None
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as done:  # --help and --version
        return done.code if isinstance(done.code, int) else 0
    except USER_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__  # on one line
        print(f"diffmusic: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffmusic: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("diffmusic: terminated", file=sys.stderr)
        return 143
    finally:
        if handles:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["CliError", "build_parser", "main"]
