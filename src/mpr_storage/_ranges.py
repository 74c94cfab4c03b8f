"""Range scheduling: how a large object is cut, and when its parts run beside the first."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

import anyio

from ._body import Body
from ._config import StorageSettings
from ._errors import StorageError
from ._sizes import (
    BULK_READ_AHEAD,
    RANGE_CONCURRENCY,
    RANGE_PART_SIZE,
    RANGE_STREAM_RATE,
    STREAM_CHUNK,
    MiB,
)

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["Filler", "Ranges", "Slots", "fetch_parts"]


@dataclass(frozen=True, slots=True)
class Ranges:
    """How a large object is split: objects over ``part_size`` go as ranges of ``part_size``
    to ``8 x part_size``, about ``concurrency`` of them at once (``1``: one stream), unless
    the first range arrives at ``stream_rate`` bytes/s or faster (``0``: always ranges)."""

    part_size: int = RANGE_PART_SIZE
    concurrency: int = RANGE_CONCURRENCY
    stream_rate: int = RANGE_STREAM_RATE

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> Ranges:
        return cls(settings.range_part_size, settings.range_concurrency, settings.range_stream_rate)

    def alone_until(self, first: int) -> float:
        """How long (s) one connection may take over the first ``first`` bytes and still be
        enough alone: past that, the other ranges start."""
        return first / self.stream_rate if self.stream_rate else 0.0

    @property
    def enabled(self) -> bool:
        return self.concurrency > 1

    def parts(self, start: int, size: int) -> list[tuple[int, int]]:
        """``[start, size)`` cut into parts: ``size / concurrency`` each, rounded up to a MiB,
        between ``part_size`` and ``8 x part_size``."""
        per = -(-size // self.concurrency)
        if per > self.part_size:
            per = min(-(-per // MiB) * MiB, 8 * self.part_size)
        per = max(per, self.part_size)
        return [(at, min(at + per, size)) for at in range(start, size, per)]


class Slots(Protocol):
    """A bulk call's connection budget (the engine's ``AdaptiveLimit``): each range after an
    object's first stream holds one slot while it runs."""

    async def acquire(self) -> None: ...

    def release(self) -> None: ...


class Filler(Protocol):
    """One object's download (``_fetch``): fills a byte span of its file from a body, or from
    a request of its own, resuming cuts; ``block``/``read_ahead`` size what each holds."""

    block: int
    read_ahead: int | None

    async def fill(self, pos: int, end: int | None, body: Body | None = None) -> int: ...


async def fetch_parts(
    job: Filler, body: Body, first_end: int, size: int, ranges: Ranges, slots: Slots | None
) -> None:
    """Fill ``[0, size)`` from ``body``, the answer to a first part ending at ``first_end``:
    that part on this task (which holds the caller's slot). When it arrives
    within ``ranges.alone_until``, its connection is fast enough alone: the rest follows on it
    in one request. Past that time, the other parts start on up to ``ranges.concurrency - 1``
    more tasks, each holding a slot of ``slots`` while it runs."""
    todo = ranges.parts(first_end, size)
    todo.reverse()  # popped from the end: in order
    left = len(todo) + 1
    deadline = anyio.current_time() + ranges.alone_until(first_end)
    alone = False

    async def done_one() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            tg.cancel_scope.cancel()  # helpers still waiting for a slot: nothing left to do

    async def owner() -> None:
        nonlocal left, alone
        await job.fill(0, first_end, body)
        if anyio.current_time() < deadline:  # one connection keeps up: the rest on it
            todo[:], left, alone = [(first_end, size)], 2, True
        await done_one()
        while todo:
            await job.fill(*todo.pop())
            await done_one()

    async def start_ranges() -> None:
        await anyio.sleep_until(deadline)
        if alone:
            return
        # Each range holds under 1 MiB: at most a 256 KiB block, with what aiohttp reads ahead.
        job.block, job.read_ahead = min(job.block, STREAM_CHUNK), BULK_READ_AHEAD
        for _ in range(min(ranges.concurrency - 1, len(todo))):
            tg.start_soon(helper)

    async def helper() -> None:
        while todo:
            if slots is not None:
                await slots.acquire()
            try:
                if not todo:
                    return
                await job.fill(*todo.pop())
            finally:
                if slots is not None:
                    slots.release()
            await done_one()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner)
            tg.start_soon(start_ranges)
    except BaseExceptionGroup as group:  # ranges failing together (412s): one error
        errors = group.exceptions
        first = next((e for e in errors if isinstance(e, StorageError)), errors[0])
        raise first from None
    if left:
        raise AssertionError("parts left undone")  # pragma: no cover
