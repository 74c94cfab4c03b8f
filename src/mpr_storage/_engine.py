"""The bulk transfer engine: a bounded queue of keys, a fixed set of workers, adaptive
concurrency, progress, and the report (retries happen in the transport)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from ._concurrency import AdaptiveLimit
from ._errors import (
    LocalFileError,
    StorageConnectionError,
    StorageError,
    ThrottledError,
    TransferError,
    TransferReport,
)
from ._models import KeySource, ObjectInfo, ProgressCallback
from ._progress import Pace, deliver

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Engine"]

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
        self._pace = Pace()

    @property
    def ticking(self) -> bool:
        """Whether anyone listens (then the engine calls :meth:`update` on a timer too)."""
        return self._callback is not None

    @property
    def next_at(self) -> float:
        """When (``time.monotonic()``) the next call is due."""
        return self._pace.next_at

    async def update(self, *, final: bool = False) -> None:
        if self._callback is None or not self._pace.due(anyway=final):
            return
        r = self._report
        await deliver(
            self._callback, len(r.done) + len(r.skipped) + len(r.failed), self.total, r.bytes
        )


class Engine(Generic[T]):
    """Runs ``work`` on the items ``produce`` sends, at most ``concurrency`` at a time.

    Items flow through a bounded queue to workers started as items arrive, never more than
    there are items waiting (so a call of 3 keys starts 3 workers whatever the concurrency),
    and memory stays flat however many keys there are. A failing key is recorded and the
    others go on; when keys keep failing at the endpoint level (unreachable, throttled) with
    no success in between, the call gives up instead of grinding through every key: the
    workers stop, and every key received but not finished is reported failed with an error
    saying so, so the report accounts for each key exactly once (``TransferError``).
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
        self.workers_started = 0
        self._endpoint_failures = 0
        self._started = time.monotonic()
        self._open: dict[str, None] = {}  # sent to the workers, not finished yet
        self._scopes: list[anyio.CancelScope] = []  # the workers' and the key reader's
        self._queue: asyncio.Queue[tuple[str, T] | None] | None = None
        self._tg: TaskGroup | None = None

    async def skip(self, key: str) -> None:
        self.report.skipped.append(key)
        await self.progress.update()

    async def fail(self, key: str, error: StorageError) -> None:
        self.report.failed[key] = error
        await self.progress.update()

    def not_tried(self, key: str) -> None:
        """Record ``key`` as failed because the call gave up before finishing it."""
        gave_up = self.gave_up
        assert gave_up is not None
        err = StorageError(
            f"not transferred: the call gave up after {_GIVE_UP_AFTER} keys in a row failed "
            f"at the endpoint ({gave_up})",
            operation=self.operation,
            bucket=self.bucket,
            key=key,
            code=gave_up.code,
            status=gave_up.status,
        )
        err.__cause__ = gave_up
        self.report.failed[key] = err

    async def run(
        self,
        produce: Callable[[Callable[[tuple[str, T]], Awaitable[None]]], Awaitable[None]],
        work: Callable[[str, T], Awaitable[int | None]],
    ) -> None:
        """``await produce(send)`` feeds ``(key, item)`` pairs through ``send``; the workers
        run ``work`` on each. A bounded queue: ``send`` waits while ``concurrency`` items
        are queued. ``on_progress`` is called at least every 0.1 s while the call runs,
        also while no key moves (a key source that waits)."""
        # asyncio's queue, not an anyio memory stream: a get or put that need not wait
        # returns at once, where a stream's checkpoints (a get and a put) would cost turns of
        # the event loop per key (see _concurrency.AdaptiveLimit); the worker takes the one
        # turn per key that pays, after its key (below).
        queue: asyncio.Queue[tuple[str, T] | None] = asyncio.Queue(self.concurrency)
        self._queue = queue
        idle = 0  # workers waiting for an item
        running = 0
        all_done = anyio.Event()
        ticker = anyio.CancelScope()
        producing = True

        async def worker(scope: anyio.CancelScope) -> None:
            nonlocal idle, running
            try:
                with scope:
                    while True:
                        idle += 1
                        try:
                            pair = await queue.get()
                        finally:
                            idle -= 1
                        if pair is None:
                            break
                        await self._one(*pair, work)
                        # One turn of the loop before the next key: the workers that finish
                        # in the same turn write their files first, then send their next
                        # requests together, instead of one request between each two writes,
                        # each waking the server on its own (SeaweedFS on 2 cores: ~20% more
                        # CPU for the same GETs, and a replay ~7% slower).
                        await asyncio.sleep(0)  # the queue is asyncio's already; no sniffio
            finally:
                running -= 1
                if not running and not producing:
                    all_done.set()

        async def send(pair: tuple[str, T]) -> None:
            nonlocal running
            if self.gave_up is not None:
                self.not_tried(pair[0])
                return
            self._open[pair[0]] = None
            await queue.put(pair)
            if (
                queue.qsize() > idle
                and self.workers_started < self.concurrency
                and self.gave_up is None
            ):
                self.workers_started += 1
                running += 1
                scope = anyio.CancelScope()
                self._scopes.append(scope)
                tg.start_soon(worker, scope)

        async def producer() -> None:
            nonlocal producing
            await produce(send)
            if self.gave_up is None:
                for _ in range(running):
                    await queue.put(None)  # one end mark per worker
            producing = False
            if not running:
                all_done.set()
            await all_done.wait()
            ticker.cancel()

        async def tick() -> None:
            with ticker:
                while True:
                    await anyio.sleep(max(0.0, self.progress.next_at - time.monotonic()))
                    await self.progress.update()

        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(producer)
                if self.progress.ticking:
                    tg.start_soon(tick)
        except BaseExceptionGroup as group:
            # A failing on_progress callback or listing: surface the error itself, not a group.
            errors = group.exceptions
            if len(errors) == 1 or all(isinstance(e, StorageError) for e in errors):
                raise errors[0] from None
            raise
        finally:
            self.report.seconds = time.monotonic() - self._started
        if self.gave_up is not None:
            for key in self._open:  # queued or cut off mid-transfer
                self.not_tried(key)
            self._open.clear()
        with anyio.CancelScope(shield=True):
            await self.progress.update(final=True)

    def start_soon(
        self, fn: Callable[[], Coroutine[Any, Any, None]], scope: anyio.CancelScope
    ) -> None:
        """Run ``fn`` beside the workers (the key reader); give-up cancels ``scope``."""
        assert self._tg is not None, "only while run() runs"
        self._scopes.append(scope)
        self._tg.start_soon(fn)

    async def _one(
        self, key: str, item: T, work: Callable[[str, T], Awaitable[int | None]]
    ) -> None:
        await self.limit.acquire()
        try:
            nbytes = await work(key, item)
        except StorageError as exc:
            self._open.pop(key, None)
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
            self._open.pop(key, None)
            await self._failed(key, err)
            return
        finally:
            self.limit.release()
        self._open.pop(key, None)
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
                _log.warning(
                    "%s s3://%s: gave up after %d keys in a row failed at the endpoint "
                    "(%d done, %d failed so far): %s",
                    self.operation, self.bucket, _GIVE_UP_AFTER, len(self.report.done),
                    len(self.report.failed), exc,
                )  # fmt: skip
                self._give_up(exc)

    def _give_up(self, exc: StorageError) -> None:
        """Stop the workers and the key reader; what they held is reported at the end."""
        self.gave_up = exc
        for scope in self._scopes:
            scope.cancel()
        queue = self._queue
        while queue is not None and not queue.empty():  # frees a producer waiting to send
            pair = queue.get_nowait()
            if pair is not None:
                self._open[pair[0]] = None

    def finish(self, raise_on_error: bool) -> TransferReport:
        report = self.report
        if not raise_on_error or not report.failed:
            return report
        if self.gave_up is not None:
            message = (
                f"gave up after {_GIVE_UP_AFTER} keys in a row failed at the endpoint "
                f"({len(report.done)} done, {len(report.skipped)} skipped, "
                f"{len(report.failed)} failed or not tried): {self.gave_up}"
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

    async def batches(self, keys: KeySource, size: int) -> AsyncIterator[list[str | ObjectInfo]]:
        """``keys`` in batches of up to ``size``, for planning: a batch is what has arrived,
        never held back to fill up (an async source is read by a task of its own, so a key
        that arrives alone is planned at once). Once the call gave up, an async source is no
        longer read (a listing would hit the failing endpoint) and the rest of a sync one is
        reported not tried."""
        if not isinstance(keys, AsyncIterable):
            it = iter(keys)
            while batch := list(itertools.islice(it, size)):
                if self.gave_up is not None:
                    for item in (*batch, *it):
                        self.not_tried(_key_of(item))
                    return
                yield batch
            return
        pending: collections.deque[str | ObjectInfo] = collections.deque()
        arrived, taken = asyncio.Event(), asyncio.Event()
        ended = False
        scope = anyio.CancelScope()

        async def read() -> None:
            nonlocal ended
            try:
                with scope:
                    async for item in keys:
                        pending.append(item)
                        arrived.set()
                        while len(pending) >= size:
                            taken.clear()
                            await taken.wait()
            finally:
                ended = True
                arrived.set()

        self.start_soon(read, scope)
        while True:
            while not pending and not ended:
                arrived.clear()
                await arrived.wait()
            if self.gave_up is not None:
                for item in pending:
                    self.not_tried(_key_of(item))
                return
            if not pending:
                return
            batch = [pending.popleft() for _ in range(min(size, len(pending)))]
            taken.set()
            yield batch


def _key_of(item: str | ObjectInfo) -> str:
    return item.key if isinstance(item, ObjectInfo) else item
