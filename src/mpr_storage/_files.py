"""Atomic local files: data goes to a temp file beside the target, renamed in only when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

__all__ = ["atomic_writer", "temp_path_for", "write_atomic"]


def temp_path_for(path: Path) -> tuple[int, str]:
    """Create a hidden, uniquely named temp file in ``path``'s directory: ``(fd, name)``."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".part")


def write_atomic(path: Path, data: bytes) -> int:
    """Blocking: write ``data`` to ``path`` atomically (temp file + rename); returns the
    file's mtime in nanoseconds."""
    fd, tmp = temp_path_for(path)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            mtime_ns = os.fstat(fd).st_mtime_ns
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return mtime_ns


@contextlib.asynccontextmanager
async def atomic_writer(path: Path) -> AsyncIterator[anyio.AsyncFile[bytes]]:
    """Yield an async file; on a clean exit it replaces ``path``, otherwise it disappears.

    Writes run in a worker thread; open, close, rename and unlink are synchronous, so
    cancellation cannot interrupt the cleanup: a cancelled or failed transfer never leaves a
    partial file or a temp file behind.
    """
    fd, tmp = temp_path_for(path)
    try:
        with os.fdopen(fd, "wb") as fp:
            yield anyio.wrap_file(fp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
