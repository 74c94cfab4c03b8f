"""The bulk transfer engine: bounded, streaming, atomic, resumable multi-key transfers."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sized
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from . import _objects
from ._client import BaseStorage
from ._errors import StorageConnectionError, StorageError, ThrottledError, TransferError
from ._files import LocalIO, write_atomic
from ._keys import KeyMapper, check_bucket, check_key
from ._objects import ObjectInfo, guess_content_type
from ._transport import CHUNK_SIZE

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["MANIFEST_NAME", "ProgressCallback", "TransferReport", "download_many", "upload_many"]

MANIFEST_NAME = ".mpr-manifest.json"
"""Sidecar file a download writes into its destination: size, ETag and mtime of each file,
so a later ``skip_existing`` pass can trust unchanged files without re-reading them."""

ProgressCallback = Callable[[int, int | None, int], object]
"""``on_progress(done_objects, total_objects, done_bytes)``; may also be a coroutine function.
``total_objects`` is ``None`` while the keys are still being listed, then the final count (it
never changes once known)."""

KeySource = Iterable[str | ObjectInfo] | AsyncIterable[str | ObjectInfo]

_PLAN_BATCH = 256
_PROGRESS_INTERVAL = 0.1
_GIVE_UP_AFTER = 3  # keys in a row failing at the endpoint level (unreachable / throttled)
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")

T = TypeVar("T")


@dataclass
class TransferReport:
    """What a bulk call did.

    Attributes:
        done: keys transferred, in completion order.
        skipped: keys left alone because the destination already had them.
        failed: keys that failed, with the error of each.
        bytes: bytes transferred (skipped keys not counted).
        seconds: wall time of the call.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, StorageError] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no key failed."""
        return not self.failed


class _Progress:
    """Calls ``on_progress`` at most every 0.1 s, and once more with the totals at the end."""

    def __init__(self, callback: ProgressCallback | None, report: TransferReport) -> None:
        self._callback = callback
        self._report = report
        self.total: int | None = None  # unknown until every key has been seen
        self.seen = 0
        self._last = 0.0

    async def update(self, *, final: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not final and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        r = self._report
        result = self._callback(len(r.done) + len(r.skipped) + len(r.failed), self.total, r.bytes)
        if inspect.isawaitable(result):
            await result


class _AdaptiveLimit:
    """Concurrency that halves on throttling and grows back by one per window of successes."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limiter = anyio.CapacityLimiter(maximum)
        self._streak = 0
        self._last_cut = 0.0

    def throttled(self) -> None:
        now = time.monotonic()
        if now - self._last_cut > 0.5:  # one cut per burst, not one per failed request
            self._last_cut = now
            self.limiter.total_tokens = max(1, int(self.limiter.total_tokens) // 2)
        self._streak = 0

    def succeeded(self) -> None:
        total = int(self.limiter.total_tokens)
        if total < self.maximum:
            self._streak += 1
            if self._streak >= total:
                self._streak = 0
                self.limiter.total_tokens = total + 1


class _GaveUp(Exception):
    """Stops the workers once keys keep failing at the endpoint (``_Engine.gave_up`` says)."""


class _Engine(Generic[T]):
    """Runs ``work`` on the items ``produce`` sends, ``concurrency`` at a time.

    Items flow through a bounded stream to a fixed set of workers, so memory stays flat however
    many keys there are. A failing key is recorded and the others go on; when keys keep failing
    at the endpoint level (unreachable, throttled) with no success in between, the call gives up
    instead of grinding through every key, and its report says so (``TransferError``).
    """

    def __init__(
        self,
        *,
        operation: str,
        bucket: str,
        concurrency: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.operation = operation
        self.bucket = bucket
        self.concurrency = concurrency
        self.gave_up: StorageError | None = None
        self.report = TransferReport()
        self.progress = _Progress(on_progress, self.report)
        self.limit = _AdaptiveLimit(concurrency)
        self._endpoint_failures = 0
        self._started = time.monotonic()

    async def skip(self, key: str) -> None:
        self.report.skipped.append(key)
        await self.progress.update()

    async def fail(self, key: str, error: StorageError) -> None:
        self.report.failed[key] = error
        await self.progress.update()

    async def run(
        self,
        produce: Callable[[ObjectSendStream[tuple[str, T]]], Awaitable[None]],
        work: Callable[[str, T], Awaitable[int | None]],
    ) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, T]](self.concurrency)

        async def producer() -> None:
            async with send:
                await produce(send)

        async def worker(stream: MemoryObjectReceiveStream[tuple[str, T]]) -> None:
            async with stream:
                async for key, item in stream:
                    await self._one(key, item, work)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                with receive:
                    for _ in range(self.concurrency):
                        tg.start_soon(worker, receive.clone())
        except BaseExceptionGroup as group:
            # A worker giving up on the endpoint (the report tells, see finish()), or a failing
            # on_progress callback or listing: surface the error itself, not a group.
            rest = group.split(_GaveUp)[1]
            if rest is not None:
                errors = rest.exceptions
                if len(errors) == 1 or all(isinstance(e, StorageError) for e in errors):
                    raise errors[0] from None
                raise rest from None
        finally:
            self.report.seconds = time.monotonic() - self._started
        with anyio.CancelScope(shield=True):
            await self.progress.update(final=True)

    async def _one(
        self, key: str, item: T, work: Callable[[str, T], Awaitable[int | None]]
    ) -> None:
        # Retries happen inside the transport (one loop for every call); it reports throttling
        # through ``self.limit.throttled``, so a bulk call lowers its concurrency.
        try:
            async with self.limit.limiter:
                nbytes = await work(key, item)
        except StorageError as exc:
            await self._failed(key, exc)
            return
        except OSError as exc:  # local file trouble: this key fails, the others go on
            err = StorageError(
                f"local file error: {exc}",
                operation=self.operation,
                bucket=self.bucket,
                key=key,
            )
            err.__cause__ = exc
            await self._failed(key, err)
            return
        self._endpoint_failures = 0
        self.limit.succeeded()
        if nbytes is None:  # the destination already had it
            self.report.skipped.append(key)
        else:
            self.report.done.append(key)
            self.report.bytes += nbytes
        await self.progress.update()

    async def _failed(self, key: str, exc: StorageError) -> None:
        await self.fail(key, exc)
        if isinstance(exc, (StorageConnectionError, ThrottledError)):
            self._endpoint_failures += 1
            if self._endpoint_failures >= _GIVE_UP_AFTER and self.gave_up is None:
                self.gave_up = exc
                raise _GaveUp

    def finish(self, raise_on_error: bool) -> TransferReport:
        report = self.report
        if self.gave_up is not None and raise_on_error:
            raise TransferError(
                f"gave up after {_GIVE_UP_AFTER} keys in a row failed at the endpoint "
                f"({len(report.done)} done, {len(report.failed)} failed): {self.gave_up}",
                report=report,
                operation=self.operation,
                bucket=self.bucket,
            ) from self.gave_up
        if report.failed and raise_on_error:
            first_key, first = next(iter(report.failed.items()))
            raise TransferError(
                f"{len(report.failed)} of {len(report.failed) + len(report.done)} keys failed "
                f"(first: {first_key}: {first})",
                report=report,
                operation=self.operation,
                bucket=self.bucket,
            )
        return report


async def _batches(keys: KeySource, size: int) -> AsyncIterator[list[str | ObjectInfo]]:
    batch: list[str | ObjectInfo] = []
    if isinstance(keys, AsyncIterable):
        async for item in keys:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    else:
        for item in keys:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


# --- downloads ------------------------------------------------------------------------------


class _Manifest:
    """``{relative path: [size, etag, mtime_ns]}`` of files a download wrote."""

    def __init__(self, root: Path, entries: dict[str, list[Any]]) -> None:
        self.path = root / MANIFEST_NAME
        self.entries = entries
        self.changed = False

    @classmethod
    def load(cls, root: Path) -> _Manifest:
        try:
            data = json.loads((root / MANIFEST_NAME).read_text("utf-8"))
            entries = data["files"] if isinstance(data.get("files"), dict) else {}
        except (OSError, ValueError, AttributeError):
            entries = {}
        return cls(root, entries)

    def record(self, rel: str, size: int, etag: str, mtime_ns: int) -> None:
        self.entries[rel] = [size, etag, mtime_ns]
        self.changed = True

    def save(self) -> None:
        if self.changed:
            payload = json.dumps({"version": 1, "files": self.entries}, separators=(",", ":"))
            write_atomic(self.path, payload.encode("utf-8"))
            self.changed = False


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


_SKIP = object()


def _plan_downloads(
    mapper: KeyMapper,
    manifest: _Manifest,
    batch: list[str | ObjectInfo],
    skip_existing: bool,
) -> list[tuple[str, Any]]:
    """Blocking, one thread hop per batch: map each key to its path (creating directories),
    and decide whether the local file can be kept. Returns ``(key, path | _SKIP | error)``."""
    plans: list[tuple[str, Any]] = []
    for item in batch:
        info = item if isinstance(item, ObjectInfo) else None
        key = item.key if isinstance(item, ObjectInfo) else item
        if key.endswith("/") and (info is None or info.size == 0):
            plans.append((key, _SKIP))  # a "folder" marker, not a file
            continue
        try:
            path = mapper.prepare(key)
        except StorageError as exc:
            plans.append((key, exc))
            continue
        if skip_existing and _up_to_date(path, key, info, mapper, manifest):
            plans.append((key, _SKIP))
        else:
            plans.append((key, (path, info)))
    return plans


def _up_to_date(
    path: Path, key: str, info: ObjectInfo | None, mapper: KeyMapper, manifest: _Manifest
) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    rel = key.removeprefix(mapper.prefix)
    entry = manifest.entries.get(rel)
    trusted = entry is not None and entry[0] == st.st_size and entry[2] == st.st_mtime_ns
    if info is None:
        return trusted  # no listing: only a file we wrote and nobody touched since
    if st.st_size != info.size:
        return False
    if trusted and entry is not None:
        return not info.etag or entry[1] == info.etag
    if _MD5_ETAG.match(info.etag):  # the file changed since we wrote it, or we never did
        if _md5_file(path) != info.etag:
            return False
        manifest.record(rel, st.st_size, info.etag, st.st_mtime_ns)
    return True


async def download_many(
    storage: BaseStorage,
    bucket: str,
    keys: KeySource,
    dest_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    concurrency: int | None = None,
    skip_existing: bool = True,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Download many keys concurrently into ``dest_dir``; key ``k`` goes to
    ``dest_dir / k.removeprefix(prefix)``.

    One GET per object and no HEAD; keys stream from ``keys`` (an iterable or async iterable of
    keys or :class:`ObjectInfo`, e.g. :func:`iter_objects`) into ``concurrency`` workers
    (default ``S3_MAX_CONCURRENCY``). Every file is written to a temp file and renamed into
    place when complete, so cancelling leaves only complete files. Transient failures are
    retried with backoff, and throttling lowers the concurrency. Memory stays bounded: keys are
    planned in batches of 256 and each worker streams its body in chunks of 1 MiB.

    Args:
        prefix: removed from each key to make its path under ``dest_dir``.
        skip_existing: keep a local file that is still what was written: its size and mtime
            match the sidecar manifest (``.mpr-manifest.json``) and, where the listing gives
            it, the remote ETag is the one recorded (or, for a file we did not write, its size
            and MD5 match an MD5 ETag). A second pass over unchanged files costs no GET at all.
        on_progress: ``on_progress(done_objects, total_objects, done_bytes)``, a function or a
            coroutine function, called at most every 0.1 s and once at the end with the totals;
            ``total_objects`` is ``None`` while ``keys`` is still being read (a listing), then
            the final count, which never changes once known.
        raise_on_error: when False, return the report instead of raising ``TransferError``.

    Returns:
        The :class:`TransferReport` (``done``, ``skipped``, ``failed``, ``bytes``, ``seconds``).

    Raises:
        TransferError: some keys failed (after every other key was tried); ``.report`` tells.
        InvalidKeyError: reported per key (in ``failed``) for keys that would leave ``dest_dir``.
        ValueError: ``concurrency`` is not a positive integer.
        StorageConnectionError, ThrottledError: the endpoint stayed unreachable or throttled.
    """
    check_bucket(bucket, operation="download_many")
    settings = storage.settings
    concurrency = _check_concurrency(
        settings.max_concurrency if concurrency is None else concurrency
    )
    await anyio.Path(dest_dir).mkdir(parents=True, exist_ok=True)
    mapper = KeyMapper(dest_dir, prefix, operation="download_many", bucket=bucket)
    manifest = await anyio.to_thread.run_sync(_Manifest.load, mapper.root)
    transport = await storage.transport()
    io = LocalIO()
    engine: _Engine[tuple[Path, ObjectInfo | None]] = _Engine(
        operation="download_many",
        bucket=bucket,
        concurrency=concurrency,
        on_progress=on_progress,
    )

    async def produce(send: ObjectSendStream[tuple[str, tuple[Path, ObjectInfo | None]]]) -> None:
        if isinstance(keys, Sized):
            engine.progress.total = len(keys)
        async for batch in _batches(keys, _PLAN_BATCH):
            engine.progress.seen += len(batch)
            plans = await anyio.to_thread.run_sync(
                _plan_downloads, mapper, manifest, batch, skip_existing
            )
            for key, plan in plans:
                if plan is _SKIP:
                    await engine.skip(key)
                elif isinstance(plan, StorageError):
                    await engine.fail(key, plan)
                else:
                    await send.send((key, plan))
        engine.progress.total = engine.progress.seen  # the listing is over: now it is known

    async def work(key: str, plan: tuple[Path, ObjectInfo | None]) -> int:
        path, info = plan
        fetched = await transport.get_to_file(
            bucket, key, path, io=io, operation="download_many", on_throttle=engine.limit.throttled
        )
        assert fetched is not None  # no If-None-Match was sent
        manifest.record(key.removeprefix(prefix), fetched.size, fetched.etag, fetched.mtime_ns)
        return fetched.size

    try:
        await engine.run(produce, work)
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
            await anyio.to_thread.run_sync(manifest.save)
    return engine.finish(raise_on_error)


# --- uploads --------------------------------------------------------------------------------


def _list_files(root: Path) -> list[tuple[str, Path, int]]:
    """Blocking: every regular file under ``root`` as ``(relative posix path, path, size)``."""
    found: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if name == MANIFEST_NAME or (name.startswith(".") and name.endswith(".part")):
                continue  # our own bookkeeping, never data
            with contextlib.suppress(OSError):
                st = path.stat()
                found.append((path.relative_to(root).as_posix(), path, st.st_size))
    return found


async def upload_many(
    storage: BaseStorage,
    src_dir: str | os.PathLike[str],
    bucket: str,
    prefix: str,
    *,
    concurrency: int | None = None,
    skip_existing: bool = False,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Upload every file under ``src_dir`` to ``prefix + relative/path`` concurrently.

    Small files go up with one streamed PUT each (Content-MD5 checked by the server); files of
    ``S3_MULTIPART_THRESHOLD`` bytes or more use multipart, aborted on failure or cancellation,
    so no half-written object remains. The download manifest and temp files are never uploaded.
    The file list (and, with ``skip_existing``, the listing of ``prefix``) is held in memory;
    a small file's body is streamed, a multipart one holds at most four parts per worker.

    Args:
        skip_existing: leave objects that already have the same size and the local file's MD5
            as ETag (one listing of ``prefix``, then an MD5 of each local file of the same
            size); a multipart object, whose ETag is no MD5, is compared by size only.
        on_progress, raise_on_error, concurrency: as for :func:`download_many`.

    Returns:
        The :class:`TransferReport`.

    Raises:
        TransferError: some files failed (after every other file was tried); ``.report`` tells
            which.
        NotADirectoryError: ``src_dir`` is not a directory.
        ValueError: ``concurrency`` is not a positive integer.
        StorageConnectionError, ThrottledError: the endpoint stayed unreachable or throttled.
    """
    check_bucket(bucket, operation="upload_many")
    settings = storage.settings
    concurrency = _check_concurrency(
        settings.max_concurrency if concurrency is None else concurrency
    )
    root = Path(src_dir)
    if not await anyio.Path(root).is_dir():
        raise NotADirectoryError(f"upload_many: {root} is not a directory")
    files = await anyio.to_thread.run_sync(_list_files, root)
    remote: dict[str, ObjectInfo] = {}
    if skip_existing:
        remote = {o.key: o async for o in _objects.iter_objects(storage, bucket, prefix)}
    transport = await storage.transport()
    io = LocalIO()
    engine: _Engine[tuple[Path, int]] = _Engine(
        operation="upload_many",
        bucket=bucket,
        concurrency=concurrency,
        on_progress=on_progress,
    )
    engine.progress.total = len(files)

    async def produce(send: ObjectSendStream[tuple[str, tuple[Path, int]]]) -> None:
        for rel, path, size in files:
            key = prefix + rel
            try:
                check_key(key, operation="upload_many", bucket=bucket)
            except StorageError as exc:
                await engine.fail(key, exc)
                continue
            existing = remote.get(key)
            if (
                existing is not None
                and existing.size == size
                and not _MD5_ETAG.match(existing.etag)
            ):
                await engine.skip(key)  # multipart ETag: same size is all we can compare cheaply
                continue
            await send.send((key, (path, size)))

    async def work(key: str, item: tuple[Path, int]) -> int | None:
        path, size = item
        existing = remote.get(key)
        if existing is not None and existing.size == size:
            if existing.etag == await io.run(partial(_md5_file, path), size):
                return None
        if size >= settings.multipart_threshold:
            await _objects.upload_file(storage, path, bucket, key)
            return size
        await transport.put_file(
            bucket,
            key,
            path,
            size,
            content_type=guess_content_type(key),
            io=io,
            operation="upload_many",
            on_throttle=engine.limit.throttled,
        )
        return size

    await engine.run(produce, work)
    return engine.finish(raise_on_error)


def _check_concurrency(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"concurrency must be a positive integer, got {value!r}")
    return value
