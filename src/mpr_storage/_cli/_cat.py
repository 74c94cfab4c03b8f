"""The ``cat`` command: an object (or a byte range of it) to stdout, streamed."""

from __future__ import annotations

import sys

import anyio

from .. import Storage
from ._base import EXIT_OK, Context, UsageError, bucket_key

__all__ = ["byte_range", "cmd_cat"]


def byte_range(text: str) -> tuple[int, int | None]:
    """``--range`` as HTTP writes it, to ``(start, end)`` for ``open_object``: ``A-B`` (both
    inclusive), ``A-`` (to the end) or ``-N`` (the last N bytes)."""
    first, dash, last = text.strip().partition("-")
    try:
        if not dash or (not first and not last):
            raise ValueError
        if not first:
            n = int(last)
            if n < 1:
                raise ValueError
            return -n, None
        start = int(first)
        end = int(last) + 1 if last else None
        if start < 0 or (end is not None and end <= start):
            raise ValueError
    except ValueError:
        raise UsageError(f"--range {text!r}: give A-B (inclusive), A- or -N, in bytes") from None
    return start, end


def _write(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


async def cmd_cat(ctx: Context, s: Storage) -> int:
    """Write an object, or a byte range of it, to stdout (bounded memory: 1 MiB at a time)."""
    a = ctx.args
    bucket, key, consumed = bucket_key(a.bucket, a.key)
    if not consumed and a.key is not None:
        raise UsageError("too many arguments: s3://BUCKET/KEY")
    if key == "" or key.endswith("/"):
        raise UsageError("cat writes one object: KEY must name a key, not a prefix")
    start, end = byte_range(a.range) if a.range is not None else (0, None)
    sys.stdout.flush()
    closed: BrokenPipeError | None = None
    async with s.open_object(bucket, key, start=start, end=end) as body:
        async for chunk in body:
            try:
                await anyio.to_thread.run_sync(_write, chunk)
            except BrokenPipeError as exc:  # raised outside the GET: not a storage error
                closed = exc
                break
    if closed is not None:
        raise closed  # the reader went away: the command ends quietly
    return EXIT_OK
