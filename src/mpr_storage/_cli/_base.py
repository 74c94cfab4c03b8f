"""What every command shares: errors, signals, the context, argument and output helpers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from types import FrameType
from typing import Any, TypeVar

import anyio
from rich.console import Console
from rich.text import Text

from .. import Storage, StorageSettings

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
S3_SCHEME = "s3://"
# The signals that stop the CLI as Ctrl-C does: closing the terminal (SIGHUP) included.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


# --- errors and signals -------------------------------------------------------------------


class CliError(Exception):
    """A failure the CLI reports as one ``error:`` line (exit 1)."""


class UsageError(Exception):
    """Arguments that parse but don't make sense together (exit 2, with the usage)."""


class Interrupted(Exception):
    """The async job was cancelled by SIGINT/SIGTERM/SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run(job: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(job)`` where a stop signal cancels the job's task (cleanups run) instead
    of raising inside whatever callback the loop happens to be running; on uvloop's loop where
    uvloop is installed (the ``mpr-storage[uvloop]`` extra), else on asyncio's, silently."""
    options = {"loop_factory": _uvloop_factory()}
    return anyio.run(_cancel_on_signals, job, backend="asyncio", backend_options=options)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None  # anyio.run then creates asyncio's loop, as asyncio.run does
    return uvloop.new_event_loop


async def _cancel_on_signals(job: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []
    previous: dict[int, Any] = {}

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in STOP_SIGNALS:
        before = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # Windows, or not the main thread: KeyboardInterrupt still stops us
        previous[signum] = before
    try:
        result = await job
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
    if received:
        raise Interrupted(received[0])
    return result


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Around blocking code that owns a server: SIGTERM and SIGHUP raise ``KeyboardInterrupt``
    like Ctrl-C does, so the server is stopped instead of orphaned."""
    saved: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT:
            with contextlib.suppress(ValueError):  # not the main thread
                saved[signum] = signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not interrupt the shutdown of a server process."""
    saved: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        with contextlib.suppress(ValueError):
            saved[signum] = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --- output helpers -----------------------------------------------------------------------

# C0/C1 control characters and the bidirectional overrides: a key could carry escape
# sequences (or reorder text) on the user's terminal.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: object) -> str:
    """``text`` for a human's terminal: control characters shown escaped (``\\x1b``, ``\\n``)."""
    return _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), str(text))


def one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def error_line(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    print(f"error: {safe(one_line(message))}", file=sys.stderr, flush=True)


def size(n: float) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``4.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def per_second(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else 0.0


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-" * 19


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


# --- context ------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    parser: argparse.ArgumentParser
    console: Console
    quiet: bool
    debug: bool

    @property
    def show_progress(self) -> bool:
        """Progress bars only on an interactive terminal, and not with ``--quiet``."""
        return not self.quiet and self.console.is_interactive

    def settings(self) -> StorageSettings:
        """The environment's settings with the global options applied."""
        overrides: dict[str, Any] = {}
        for option, name in (
            ("endpoint_url", "endpoint_url"),
            ("region", "region"),
            ("provider", "provider"),
            ("concurrency", "max_concurrency"),
        ):
            value = getattr(self.args, option, None)
            if value is not None:
                overrides[name] = value
        return StorageSettings.from_env(**overrides)

    def say(self, message: str | Text) -> None:
        """A status line (suppressed by ``--quiet``); never wrapped, never parsed as markup.
        Plain strings have their control characters escaped."""
        if not self.quiet:
            text = safe(message) if isinstance(message, str) else message
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def storage_command(
    job: Callable[[Context, Storage], Awaitable[int]],
) -> Callable[[Context], int]:
    def handler(ctx: Context) -> int:
        settings = ctx.settings()

        async def main() -> int:
            storage: Storage
            async with Storage(settings) as storage:
                return await job(ctx, storage)

        return run(main())

    handler.__doc__ = job.__doc__
    return handler


# --- argument helpers ---------------------------------------------------------------------


def parse_s3_url(text: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; the key may be empty."""
    bucket, _, key = text[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise UsageError(f"{text!r} names no bucket; write s3://BUCKET/KEY")
    return bucket, key


def is_url(text: str | None) -> bool:
    return text is not None and text.startswith(S3_SCHEME)


def bucket_key(first: str, second: str | None, *, what: str = "KEY") -> tuple[str, str, bool]:
    """``(bucket, key, second_consumed)`` from ``BUCKET KEY`` or ``s3://BUCKET/KEY``."""
    if is_url(first):
        bucket, key = parse_s3_url(first)
        return bucket, key, False
    if second is None:
        raise UsageError(f"{what} is required after BUCKET (or write s3://BUCKET/{what})")
    if is_url(second):
        raise UsageError(f"give either BUCKET {what} or s3://BUCKET/{what}, not both")
    return first, second, True


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value
