"""A download's temp file beside its target: preallocated, written at offsets, renamed into
place when complete; and the :class:`LocalFileError` of a failed local call."""

from __future__ import annotations

import contextlib
import errno
import os
from functools import partial
from pathlib import Path

from ._errors import LocalFileError
from ._files import LocalIO, temp_path_for

__all__ = ["LocalFileExistsError", "PartFile", "local_error", "pwritev_all"]


def local_error(exc: OSError, path: Path | str, where: tuple[str, str, str]) -> LocalFileError:
    """Our :class:`LocalFileError` for a failed local call (disk full, a file where a
    directory is needed ...), naming the path, the operation, the bucket and the key; also a
    ``FileExistsError`` when ``exc`` was one."""
    if isinstance(exc, LocalFileError):
        return exc
    operation, bucket, key = where
    cls = LocalFileExistsError if isinstance(exc, FileExistsError) else LocalFileError
    err = cls(
        f"local file error: {exc.strerror or exc}",
        path=os.fsdecode(exc.filename) if exc.filename is not None else str(path),
        operation=operation,
        bucket=bucket,
        key=key,
        errno=exc.errno,
    )
    err.__cause__ = exc
    return err


class LocalFileExistsError(LocalFileError, FileExistsError):
    """A :class:`LocalFileError` that is also a ``FileExistsError``: a file stands where a
    directory is needed."""


class PartFile:
    """The temp file a download fills, beside its target: written at offsets, renamed into
    place when complete, removed otherwise (synchronously: cancellation cannot skip it)."""

    def __init__(self, path: Path, io: LocalIO) -> None:
        self.path = path
        self.io = io
        self.fd, self.tmp = temp_path_for(path)

    def allocate(self, size: int) -> None:
        """Reserve ``size`` bytes now, so that a full disk fails before the first request of
        the rest (falls back to a sparse ``ftruncate`` where the file system can't)."""
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.ftruncate(self.fd, size)
        except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
            os.ftruncate(self.fd, size)

    async def write(self, chunks: list[bytes], offset: int, size: int) -> None:
        await self.io.run(partial(pwritev_all, self.fd, chunks, offset), size)

    def commit(self, size: int) -> int:
        """Trim to ``size``, rename into place; the file's mtime in nanoseconds."""
        os.ftruncate(self.fd, size)
        mtime_ns = os.fstat(self.fd).st_mtime_ns
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, self.path)
        self.tmp = ""
        return mtime_ns

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def pwritev_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Blocking: write every chunk, in order, at ``offset``, however much each call takes."""
    views = [memoryview(chunk) for chunk in chunks]
    first = 0
    while first < len(views):
        n = os.pwritev(fd, views[first:], offset)
        offset += n
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:
            views[first] = views[first][n:]
