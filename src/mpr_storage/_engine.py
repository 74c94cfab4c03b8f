"""The bulk transfer engine: a bounded queue of keys, a fixed set of workers, adaptive
concurrency, progress, and the report (retries happen in the transport)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import anyio

from ._errors import LocalFileError, StorageConnectionError, StorageError, ThrottledError
from ._models import KeySource, ObjectInfo, ProgressCallback, TransferError, TransferReport

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["AdaptiveLimit", "Engine", "batches", "check_concurrency"]

_PROGRESS_INTERVAL = 0.1
_GIVE_UP_AFTER = 3  # keys in a row failing at the endpoint level (unreachable / throttled)
_log = logging.getLogger(__name__)

T = TypeVar("T")


class Progress:
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


class AdaptiveLimit:
    """How many requests a bulk call has in flight: halves on throttling, grows back by one
    per window of successes.

    Acquiring costs nothing while under the limit: no checkpoint, no turn of the event loop
    (anyio's ``CapacityLimiter`` yields once per acquire, which per object of a bulk call
    cost more than the limit itself). Only while throttled do workers wait, woken whenever a
    request ends or the limit grows.
    """

    def __init__(self, maximum: int, *, operation: str = "") -> None:
        self.operation = operation  # named in the log line of a cut
        self.maximum = self.total = maximum
        self.active = 0
        self._streak = 0
        self._last_cut = 0.0
        self._changed: anyio.Event | None = None

    async def acquire(self) -> None:
        while self.active >= self.total:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def throttled(self) -> None:
        now = time.monotonic()
        if now - self._last_cut > 0.5:  # one cut per burst, not one per failed request
            self._last_cut = now
            if self.total > 1:
                _log.info(
                    "%s: throttled by the server: at most %d requests in flight (was %d)",
                    self.operation or "a bulk call", self.total // 2, self.total,
                )  # fmt: skip
            self.total = max(1, self.total // 2)
        self._streak = 0

    def succeeded(self) -> None:
        if self.total < self.maximum:
            self._streak += 1
            if self._streak >= self.total:
                self._streak = 0
                self.total += 1
                self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class _GaveUp(Exception):
    """Stops the workers once keys keep failing at the endpoint (``Engine.gave_up`` says)."""


class Engine(Generic[T]):
    """Runs ``work`` on the items ``produce`` sends, ``concurrency`` at a time.

    Items flow through a bounded queue to a fixed set of workers, so memory stays flat however
    many keys there are. A failing key is recorded and the others go on; when keys keep failing
    at the endpoint level (unreachable, throttled) with no success in between, the call gives up
    instead of grinding through every key, and its report says so (``TransferError``).
    Retries happen inside the transport (one loop for every call); it reports throttling
    through ``limit.throttled``, so a bulk call lowers its concurrency.
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
        self.progress = Progress(on_progress, self.report)
        self.limit = AdaptiveLimit(concurrency, operation=operation)
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
        produce: Callable[[Callable[[tuple[str, T]], Awaitable[None]]], Awaitable[None]],
        work: Callable[[str, T], Awaitable[int | None]],
    ) -> None:
        """``await produce(send)`` feeds ``(key, item)`` pairs through ``send``; the workers
        run ``work`` on each. A bounded queue: ``send`` waits while ``concurrency`` items
        are queued."""
        # asyncio's queue, not an anyio memory stream: a get or put that need not wait
        # returns at once, where a stream's checkpoint would cost a turn of the event loop
        # per key (see AdaptiveLimit).
        queue: asyncio.Queue[tuple[str, T] | None] = asyncio.Queue(self.concurrency)

        async def producer() -> None:
            await produce(queue.put)
            for _ in range(self.concurrency):
                await queue.put(None)  # one end mark per worker

        async def worker() -> None:
            while (pair := await queue.get()) is not None:
                await self._one(*pair, work)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(producer)
                for _ in range(self.concurrency):
                    tg.start_soon(worker)
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
        await self.limit.acquire()
        try:
            nbytes = await work(key, item)
        except StorageError as exc:
            await self._failed(key, exc)
            return
        except OSError as exc:  # local file trouble: this key fails, the others go on
            err = LocalFileError(
                f"local file error: {exc.strerror or exc}",
                path=os.fsdecode(exc.filename) if exc.filename is not None else "",
                operation=self.operation,
                bucket=self.bucket,
                key=key,
                errno=exc.errno,
            )
            err.__cause__ = exc
            await self._failed(key, err)
            return
        finally:
            self.limit.release()
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
                _log.warning(
                    "%s s3://%s: gave up after %d keys in a row failed at the endpoint "
                    "(%d done, %d failed so far): %s",
                    self.operation, self.bucket, _GIVE_UP_AFTER, len(self.report.done),
                    len(self.report.failed), exc,
                )  # fmt: skip
                raise _GaveUp

    def finish(self, raise_on_error: bool) -> TransferReport:
        report = self.report
        if not raise_on_error or not report.failed:
            return report
        if self.gave_up is not None:
            message = (
                f"gave up after {_GIVE_UP_AFTER} keys in a row failed at the endpoint "
                f"({len(report.done)} done, {len(report.failed)} failed): {self.gave_up}"
            )
        else:
            first_key, first = next(iter(report.failed.items()))
            message = (
                f"{len(report.failed)} of {len(report.failed) + len(report.done)} keys failed "
                f"(first: {first_key}: {first})"
            )
        raise TransferError(
            message, report=report, operation=self.operation, bucket=self.bucket
        ) from self.gave_up


async def batches(keys: KeySource, size: int) -> AsyncIterator[list[str | ObjectInfo]]:
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


def check_concurrency(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"concurrency must be a positive integer, got {value!r}")
    return value
