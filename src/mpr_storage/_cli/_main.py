"""The ``mpr-storage`` entry point: parse, run the command, turn failures into exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from rich.console import Console

from .. import StorageError
from ._base import EXIT_ERROR, EXIT_USAGE, CliError, Context, Interrupted, UsageError, error_line
from ._parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mpr-storage`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = Context(
        args=args,
        parser=args.command_parser,
        console=Console(highlight=False),
        quiet=getattr(args, "quiet", False),
        debug=getattr(args, "debug", False),
    )
    logger = logging.getLogger("mpr_storage")
    level = logger.level
    if ctx.debug:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logger.setLevel(logging.DEBUG)
    try:
        code: int = args.handler(ctx)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except UsageError as exc:
        ctx.parser.print_usage(sys.stderr)
        print(f"{ctx.parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        _error_line_plain("interrupted")
        return 128 + exc.signum
    except KeyboardInterrupt:
        _error_line_plain("interrupted")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`mpr-storage ls b | head`): stop quietly, with the status a
        # process killed by SIGPIPE has in a shell.
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
            os.close(devnull)
        return EXIT_SIGPIPE
    except Exception as exc:
        if ctx.debug:
            traceback.print_exc()
        error_line(_failure(ctx, exc))
        return EXIT_ERROR
    finally:
        logger.setLevel(level)


EXIT_SIGPIPE = 128 + getattr(signal, "SIGPIPE", 13)


def _failure(ctx: Context, exc: Exception) -> str:
    """The one error line for a failed command."""
    if isinstance(exc, (StorageError, CliError)):  # ours first: some are OSErrors too
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return _local_error(ctx, exc)
    if isinstance(exc, (ValueError, RuntimeError)):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)"


def _local_error(ctx: Context, exc: OSError) -> str:
    """A local file error with the command and the path: ``get: /x/y: Not a directory``."""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return f"{ctx.args.command}: {what}"
    paths = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{ctx.args.command}: {paths}: {what}"


def _error_line_plain(message: str) -> None:
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
