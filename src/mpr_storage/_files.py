"""Atomic local files: data goes to a temp file beside the target, renamed in only when complete."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import math
import os
import secrets
import socket
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

import anyio

from ._sizes import STREAM_CHUNK

__all__ = [
    "AtomicFile",
    "LocalIO",
    "PreadReader",
    "atomic_writer",
    "fd_chunks",
    "open_regular",
    "pread_exact",
    "read_fd",
    "temp_name",
    "temp_path_for",
    "write_atomic",
    "write_fd",
]

T = TypeVar("T")


_SALT = secrets.token_hex(3)
_serial = itertools.count()
_STEM_BYTES = 100  # of the target's name in a temp name: 1 + 100 + 1 + 8 + 1 + 12 + 16 + 5 < 255


def _place() -> str:
    """Where this process's pid means something: the host and the PID namespace, hashed."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    where = f"{socket.gethostname()}/{namespace}".encode()
    return hashlib.blake2s(where, digest_size=3).hexdigest()


_PLACE = _place()
_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def _cut_utf8(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes as the file system sees it, never mid-character
    (bytes that are not UTF-8 are dropped: the result only has to be a recognisable prefix)."""
    if 4 * len(name) <= limit:  # UTF-8 takes at most 4 bytes a character: nothing to cut
        return name
    return os.fsencode(name)[:limit].decode("utf-8", "ignore")


def temp_name(name: str) -> str:
    """A fresh hidden temp file name for a file named ``name``, unique in this process:
    ``.{stem}.{pid:x}-{place}{salt}{serial:x}.part``, with at most 100 bytes of ``name`` (cut
    by UTF-8 bytes, not characters, so it fits the 255-byte limit of a file name whatever
    ``name`` is), the process ID and where it is valid (host and PID namespace:
    :func:`remove_stale_temps` reads both to tell a killed run's file from a live one's), a
    salt per process and a counter (not mkstemp's random draw per file)."""
    unique = f"{os.getpid():x}-{_PLACE}{_SALT}{next(_serial):x}"
    return f".{_cut_utf8(name, _STEM_BYTES)}.{unique}.part"


def temp_path_for(path: Path) -> tuple[int, str]:
    """Create a hidden temp file named by :func:`temp_name` in ``path``'s directory:
    ``(fd, name)``. Its mode is 0o666 minus the umask, what a plain ``open()`` of ``path``
    would give (not mkstemp's 0o600)."""
    parent, name = os.path.split(path)  # strings: no Path made per file
    for _ in range(100):
        tmp = os.path.join(parent, temp_name(name))
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(path))


class _renamed_into_place:  # used like a function: ``with _renamed_into_place(tmp, path):``
    """On a clean exit rename ``tmp`` over ``path``; on any error or cancellation remove it.
    A class, not a generator: it is entered once per file of a bulk download."""

    __slots__ = ("_tmp", "_path")

    def __init__(self, tmp: str, path: Path) -> None:
        self._tmp = tmp
        self._path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            try:
                os.replace(self._tmp, self._path)
                return
            except BaseException:
                self._remove()
                raise
        self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def write_fd(fd: int, data: bytes) -> int:
    """Blocking: write all of ``data`` at the file's position; returns its mtime in
    nanoseconds afterwards."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return os.fstat(fd).st_mtime_ns


def write_atomic(path: Path, data: bytes) -> int:
    """Blocking: write ``data`` to ``path`` atomically (temp file + rename); returns the
    file's mtime in nanoseconds."""
    fd, tmp = temp_path_for(path)
    with _renamed_into_place(tmp, path):
        try:
            return write_fd(fd, data)
        finally:
            os.close(fd)


try:
    from resource import RUSAGE_THREAD, getrusage  # Linux

    def _sleeps() -> int:
        """How often the calling thread has slept in the kernel (blocked, not preempted)."""
        return getrusage(RUSAGE_THREAD).ru_nvcsw

except ImportError:  # pragma: no cover - elsewhere every slow call counts as blocked
    _sleeps = itertools.count().__next__


class LocalIO:
    """Runs blocking file calls on the event loop's thread while they are fast, else in threads.

    A page-cache read or write of a frame takes microseconds, and a thread hop costs more
    (context switches, a cross-core copy, a malloc arena per worker thread), which is why
    plain-file clients write on the loop. Calls on more than ``INLINE_MAX`` bytes always go
    to a worker thread. Calls slower than ``slow`` seconds that blocked in the kernel on the
    way (a stalling disk, a network file system; a call that was only preempted is the
    machine being busy, which threads would not help; a wait for the GIL counts as blocked,
    which the budget absorbs) held the loop up: once they add up to more than
    ``BLOCKED_MAX`` within a second, the loop lost more to the disk than thread hops would
    cost, and this instance sends its calls to threads for ``cooldown`` seconds, then tries
    the loop again; each time it has to leave again the cooldown doubles (up to a minute), so
    a disk that is always slow holds the loop up twice a minute at most, briefly. One
    instance per transfer.
    """

    INLINE_MAX = 1024 * 1024
    MAX_COOLDOWN = 60.0
    BLOCKED_MAX = 0.1  # seconds per second

    def __init__(
        self,
        *,
        slow: float = 0.01,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.slow = slow
        self._clock = clock  # times the calls, the windows and the cooldowns (tests move it on)
        self._cooldown = cooldown
        self._threaded_until = 0.0
        self._window = -math.inf  # when the current second of counting began
        self._blocked = 0.0  # how long slow calls held the loop up in it

    @property
    def threaded(self) -> bool:
        """Whether calls go to worker threads now (no clock read while they never left the
        loop: ``_threaded_until`` is 0.0 then)."""
        return self._threaded_until > 0.0 and self._clock() < self._threaded_until

    @threaded.setter
    def threaded(self, value: bool) -> None:
        self._threaded_until = math.inf if value else 0.0

    async def write_file(self, path: Path, data: bytes) -> int:
        """:func:`write_atomic` of a whole body, as :meth:`run` decides; the file's mtime in
        nanoseconds."""
        return await self.run(partial(write_atomic, path, data), len(data))

    async def run(self, fn: Callable[[], T], nbytes: int) -> T:
        """``fn()``, on the loop or in a worker thread; ``nbytes``: how much it reads or writes."""
        if nbytes > self.INLINE_MAX or self.threaded:
            return await anyio.to_thread.run_sync(fn)
        return self.inline(fn)

    def inline(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the calling (the loop's) thread, its time counted as :meth:`run`
        counts it."""
        started, sleeps = self._clock(), _sleeps()
        try:
            return fn()
        finally:
            took = self._clock() - started
            if took > self.slow and _sleeps() != sleeps:
                self._held_up(took)

    def _held_up(self, seconds: float) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window, self._blocked = now, 0.0
        self._blocked += seconds
        if self._blocked > self.BLOCKED_MAX:
            self._threaded_until = now + self._cooldown
            self._cooldown = min(2 * self._cooldown, self.MAX_COOLDOWN)
            self._window = -math.inf


class AtomicFile:
    """The file :func:`atomic_writer` yields: ``await f.write(data)``."""

    def __init__(self, fp: BinaryIO, io: LocalIO, block: int) -> None:
        self._fp = fp
        self._io = io
        self.block = block  # the largest write of write_all, and what it holds

    async def write(self, data: bytes | memoryview) -> None:
        await self._io.run(partial(self._fp.write, data), len(data))

    async def write_all(self, chunks: AsyncIterable[bytes]) -> int:
        """Write a body arriving in ``chunks`` of any size; returns the bytes written.

        The chunks are gathered while they fit in a ``block`` and written together with one
        ``writev`` (no copy into a block buffer, no block-sized allocation per write), so a
        download holds at most one block plus the chunk in hand however slow the disk.
        """
        pending: list[bytes] = []
        size = total = 0
        async for chunk in chunks:
            total += len(chunk)
            if pending and (size + len(chunk) > self.block or len(pending) >= _IOV_MAX):
                await self._write_chunks(pending, size)
                pending, size = [], 0
            pending.append(chunk)
            size += len(chunk)
        if pending:
            await self._write_chunks(pending, size)
        return total

    async def _write_chunks(self, chunks: list[bytes], size: int) -> None:
        if not hasattr(os, "writev"):  # pragma: no cover - not on POSIX
            for chunk in chunks:
                await self.write(chunk)
            return
        self._fp.flush()  # anything write() left in the file object goes first
        await self._io.run(partial(_writev_all, self._fp.fileno(), chunks), size)


_IOV_MAX = 512  # chunks per writev, well under every system's IOV_MAX


def _writev_all(fd: int, chunks: list[bytes]) -> None:
    """Blocking: write every chunk, in order, however much each ``writev`` takes."""
    views = [memoryview(chunk) for chunk in chunks]
    first = 0
    while first < len(views):
        n = os.writev(fd, views[first:])
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:
            views[first] = views[first][n:]


@contextlib.asynccontextmanager
async def atomic_writer(
    path: Path, io: LocalIO | None = None, *, block: int = STREAM_CHUNK
) -> AsyncIterator[AtomicFile]:
    """Yield a file to write; on a clean exit it replaces ``path``, otherwise it disappears.

    Writes go through ``io`` (a new :class:`LocalIO` by default), those of
    :meth:`AtomicFile.write_all` ``block`` bytes at most; open, close, rename and unlink are
    synchronous, so cancellation cannot interrupt the cleanup: a cancelled or failed transfer
    never leaves a partial file or a temp file behind.
    """
    fd, tmp = temp_path_for(path)
    with _renamed_into_place(tmp, path), os.fdopen(fd, "wb") as fp:
        yield AtomicFile(fp, io or LocalIO(), block)


# --- reading files to upload ------------------------------------------------------------------

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: Path, *, read_up_to: int = 0) -> tuple[int, int, bytes | None]:
    """Open for reading without blocking on a FIFO, and refuse anything but a regular file
    (the walk checked already; this closes the race with a file swapped meanwhile):
    ``(fd, size, data)``, ``data`` the content of a file of at most ``read_up_to`` bytes
    (read in the same call: one trip for a frame), else ``None``."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file: not read", str(path))
        size = st.st_size
        return fd, size, read_fd(fd, size) if size <= read_up_to else None
    except BaseException:
        os.close(fd)
        raise


def read_fd(fd: int, size: int) -> bytes:
    """Blocking: the file's first ``size`` bytes (refused if it has fewer)."""
    return pread_exact(fd, 0, size)


def pread_exact(fd: int, offset: int, size: int) -> bytes:
    """Blocking: ``size`` bytes of the file from ``offset``, read with ``pread`` (the file's
    position is not used: parts of one open file are read at once); fewer bytes there means
    the file changed size while it was read."""
    data = os.pread(fd, size, offset)
    while len(data) < size:  # a pread may return less than asked; only 0 means the end
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise OSError(0, "file changed size while it was read")
        data += more
    return data


class PreadReader(io.RawIOBase):
    """A blocking, seekable reader of the ``size`` bytes of the open file ``fd`` from ``start``,
    read with ``pread`` (a position of its own); closing it leaves ``fd`` open."""

    def __init__(self, fd: int, size: int, *, start: int = 0) -> None:
        super().__init__()
        self._fd = fd
        self._size = size
        self._start = start
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        with memoryview(buffer) as view:
            got = os.preadv(self._fd, [view[:n]], self._start + self._pos)
        if not got:
            raise OSError(0, "file shrank while it was uploaded")
        self._pos += got
        return got


async def fd_chunks(fd: int, size: int, io: LocalIO, *, offset: int = 0) -> AsyncIterator[bytes]:
    """The ``size`` bytes of the file from ``offset``, read with ``pread`` in chunks of
    256 KiB (with the one the socket still holds, at most 512 KiB per upload)."""
    end = offset + size
    while offset < end:
        n = min(STREAM_CHUNK, end - offset)
        chunk = await io.run(partial(os.pread, fd, n, offset), n)
        if not chunk:
            raise OSError(0, "file shrank while it was uploaded")
        offset += len(chunk)
        yield chunk
