"""GET bodies into files: one stream or ranges, atomic, resumable."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from ._body import Body, Range
from ._errors import (
    InvalidRangeError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
)
from ._files import LocalIO
from ._partfile import PartFile, local_error
from ._progress import ByteProgress
from ._ranges import Ranges, Slots, fetch_parts
from ._retry import backoff_delay
from ._sizes import SMALL_BODY, WRITE_BLOCK
from ._transport import Throttle, Transport

__all__ = ["Fetched", "fetch_file"]

_IOV_MAX = 512  # chunks per pwritev, well under every system's IOV_MAX


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a GET wrote: its size, the object's ETag, and the file's mtime after the write."""

    size: int
    etag: str
    mtime_ns: int


@dataclass
class _Job:
    """One object to fetch, and what every request for it shares."""

    transport: Transport
    where: tuple[str, str, str]
    io: LocalIO
    progress: ByteProgress | None
    on_throttle: Throttle | None
    read_ahead: int | None
    block: int
    etag: str = ""
    file: PartFile | None = None

    def get(
        self, span: Range | None, *, if_none_match: str | None = None
    ) -> AbstractAsyncContextManager[Body | None]:
        operation, bucket, key = self.where
        return self.transport.get(
            bucket,
            key,
            operation=operation,
            range=span,
            if_match=self.etag or None,
            if_none_match=if_none_match,
            read_ahead=self.read_ahead,
            on_throttle=self.on_throttle,
        )

    async def drain(self, body: Body, pos: int, end: int | None) -> tuple[int, Exception | None]:
        """Write ``body`` into the file from ``pos`` up to ``end`` (``None``: its end):
        ``(the offset reached, the error that cut it or None)``. An answer of another
        version fails; a 200 to a range (a server without ranges) skips what is written."""
        if self.etag and body.etag and body.etag != self.etag:
            raise _replaced(self.where)
        skip = pos - body.start  # > 0 only when the server sent more than asked (a 200)
        if skip < 0:
            raise _cut(f"asked for bytes from {pos}, got from {body.start}", self.where)
        assert self.file is not None
        pending: list[bytes] = []
        size = 0
        try:
            async for chunk in body:
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if end is not None and pos + size + len(chunk) > end:
                    chunk = chunk[: end - pos - size]
                if not chunk:
                    if end is not None and pos + size >= end:
                        break
                    continue
                if pending and (size + len(chunk) > self.block or len(pending) >= _IOV_MAX):
                    pos = await self._write(pending, pos, size)
                    pending, size = [], 0
                pending.append(chunk)
                size += len(chunk)
        except StorageConnectionError as exc:
            if pending:
                pos = await self._write(pending, pos, size)
            return pos, exc
        if pending:
            pos = await self._write(pending, pos, size)
        if end is not None and pos < end:  # ended early without an error: cut all the same
            return pos, _cut(f"body ended at byte {pos} of {end}", self.where)
        return pos, None

    async def _write(self, chunks: list[bytes], pos: int, size: int) -> int:
        assert self.file is not None
        await self.file.write(chunks, pos, size)
        if self.progress is not None:
            await self.progress.add(size)
        return pos + size

    async def fill(self, pos: int, end: int | None, body: Body | None = None) -> int:
        """Fill ``[pos, end)`` (``end`` None: to the object's end), starting with ``body`` if
        given; a cut resumes from the byte it stopped at (``If-Match`` the first answer's
        ETag), at once while each try moves bytes, else after a backoff; returns the end."""
        fails = 0
        policy = self.transport.policy
        while True:
            started = pos
            if body is None:
                async with self.get((pos, end)) as answer:
                    assert answer is not None  # no If-None-Match here: never a 304
                    pos, cut = await self.drain(answer, pos, end)
            else:
                pos, cut = await self.drain(body, pos, end)
                body = None
            if cut is None:
                return pos
            fails = 0 if pos > started else fails + 1
            if fails >= policy.attempts:
                raise cut
            if fails:
                await anyio.sleep(backoff_delay(fails, base=policy.base))


def _cut(message: str, where: tuple[str, str, str]) -> StorageConnectionError:
    operation, bucket, key = where
    return StorageConnectionError(message, operation=operation, bucket=bucket, key=key)


def _replaced(where: tuple[str, str, str]) -> PreconditionFailedError:
    operation, bucket, key = where
    return PreconditionFailedError(
        "the object was replaced during the download (its ETag changed); nothing was written",
        operation=operation,
        bucket=bucket,
        key=key,
        code="PreconditionFailed",
        status=412,
    )


async def fetch_file(
    transport: Transport,
    bucket: str,
    key: str,
    path: Path,
    *,
    io: LocalIO,
    operation: str,
    prepare: Callable[[], object] | None = None,
    if_none_match: str | None = None,
    size_hint: int | None = None,
    progress: ByteProgress | None = None,
    on_throttle: Throttle | None = None,
    read_ahead: int | None = None,
    block: int = WRITE_BLOCK,
    ranges: Ranges | None = None,
    slots: Slots | None = None,
) -> Fetched | None:
    """GET ``key`` into ``path`` atomically (a temp file beside it, renamed into place when
    complete): ``None`` when ``if_none_match`` (an ETag) still matches (304, no body).

    Objects over ``ranges.part_size`` (``size_hint``: the listing's size, if known) go as byte
    ranges on up to ``ranges.concurrency`` connections, each written at its offset into one
    preallocated file; the first request asks for the first part, so a smaller object is one
    request. Every request after the first is pinned to its ETag (``If-Match``): an object
    replaced meanwhile raises :class:`PreconditionFailedError` and leaves nothing. A cut body
    resumes from the byte where it stopped. ``slots``: a bulk call's budget, one slot per
    range beyond the first. ``prepare()`` (blocking: making the parent directory) runs once the
    object is found. Local failures raise :class:`LocalFileError`."""
    where = (operation, bucket, key)
    job = _Job(transport, where, io, progress, on_throttle, read_ahead, block)
    ranged = ranges is not None and ranges.enabled
    if ranged and size_hint is not None and ranges is not None:
        ranged = size_hint > ranges.part_size
    try:
        return await _fetch(job, path, prepare, if_none_match, ranges if ranged else None, slots)
    except StorageError:
        raise
    except OSError as exc:
        raise local_error(exc, path, where) from exc
    finally:
        if job.file is not None:
            job.file.discard()  # after a commit: nothing (closed, renamed)


async def _fetch(
    job: _Job,
    path: Path,
    prepare: Callable[[], object] | None,
    if_none_match: str | None,
    ranges: Ranges | None,
    slots: Slots | None,
) -> Fetched | None:
    first = (0, ranges.part_size) if ranges is not None else None
    for attempt in range(1, job.transport.policy.attempts + 1):
        try:
            if first is not None:
                try:
                    return await _open(job, path, prepare, if_none_match, first, ranges, slots)
                except InvalidRangeError:  # an empty object has no byte 0: ask for all of it
                    first = ranges = None
            return await _open(job, path, prepare, if_none_match, None, None, slots)
        except _SmallCut as cut:
            if attempt >= job.transport.policy.attempts:
                raise cut.error from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _open(
    job: _Job,
    path: Path,
    prepare: Callable[[], object] | None,
    if_none_match: str | None,
    first: Range | None,
    ranges: Ranges | None,
    slots: Slots | None,
) -> Fetched | None:
    """The first request, and what its answer says to do."""
    async with job.get(first, if_none_match=if_none_match) as body:
        if body is None:
            return None
        if prepare is not None:  # the object is there: its directory may be made now
            await job.io.run(prepare, 0)
        length = body.length
        if body.start == 0 and length is not None and length == body.size and length <= SMALL_BODY:
            return await _small(job, path, body)
        return await _large(job, path, body, ranges, slots)


class _SmallCut(Exception):
    def __init__(self, error: StorageConnectionError) -> None:
        self.error = error


async def _small(job: _Job, path: Path, body: Body) -> Fetched:
    """A body up to :data:`SMALL_BODY`, read whole and written in one call (cut: fetched
    again whole, by the caller)."""
    try:
        data = await body.read()
    except StorageConnectionError as exc:
        raise _SmallCut(exc) from exc
    mtime_ns = await job.io.write_file(path, data)
    if job.progress is not None:
        job.progress.start(len(data))
        await job.progress.add(len(data))
    return Fetched(len(data), body.etag, mtime_ns)


async def _large(
    job: _Job, path: Path, body: Body, ranges: Ranges | None, slots: Slots | None
) -> Fetched:
    """Stream ``body`` (the first answer) into a temp file; when it is the first part of a
    larger object, fetch the other parts beside it, then rename the file into place."""
    job.file = file = PartFile(path, job.io)
    job.etag = body.etag
    size = body.size
    if job.progress is not None:
        job.progress.start(size)
    if size is not None:
        await job.io.run(partial(file.allocate, size), size)
    first_end = body.start + body.length if body.status == 206 and body.length else None
    if ranges is None or size is None or first_end is None or first_end >= size:
        end = await job.fill(0, first_end if size is None else size, body)
        if size is None and first_end is not None:  # a 206 of an object of unknown size
            end = await job.fill(end, None)
    else:
        await fetch_parts(job, body, first_end, size, ranges, slots)
        end = size
    mtime_ns = file.commit(end)
    return Fetched(end, job.etag, mtime_ns)
