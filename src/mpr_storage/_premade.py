"""Files made ahead by a helper process, for bulk downloads where creating a file is slow."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import anyio

from ._files import LocalIO, temp_name, write_fd

__all__ = ["FileMaker", "MakerIO"]

# The helper: for each byte it receives, one unnamed file (O_TMPFILE) in the directory it was
# given, sent back over the socket; it ends when the socket does or a create fails.
_HELPER = """
import os, socket, sys
sock, folder = socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2])
flags = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
try:
    while wanted := sock.recv(4096):
        for _ in wanted:
            fd = os.open(".", flags, 0o666, dir_fd=folder)
            try:
                socket.send_fds(sock, [b"f"], [fd])
            finally:
                os.close(fd)
except OSError:
    pass
"""
_SUPPORTED = sys.platform == "linux" and hasattr(os, "O_TMPFILE") and hasattr(socket, "send_fds")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class FileMaker:
    """A helper process that keeps ``AHEAD`` unnamed files (``O_TMPFILE``) of one directory
    ready, so the event loop's thread writes and names them (``linkat``) without creating
    them: on ext4 without a journal each create scans the inodes freed in the last half minute
    (~0.8 ms per file after a clean-up of thousands), and a process of its own, unlike a
    thread, makes them beside the loop without waiting for the GIL after each one.

    A file appears under its name only complete, as with a temp file and a rename; one not
    named when the maker closes is freed by the kernel, so nothing is ever left behind.
    """

    AHEAD = 32
    WAIT = 1.0  # seconds without a ready file before the maker counts as stalled

    def __init__(
        self,
        directory: str,
        folder: int,
        fds: int,
        sock: socket.socket,
        process: asyncio.subprocess.Process,
    ) -> None:
        self.directory = directory
        self.ended = False  # the helper stopped (or stalled): write the files as before
        self.made = 0  # files taken from the helper
        self._folder = folder  # the directory, opened when the maker started
        self._fds = fds  # /proc/self/fd, to name an open file
        self._sock = sock
        self._process = process
        self._waiters: collections.deque[asyncio.Future[int | None]] = collections.deque()
        self._watching = False

    @classmethod
    async def start(cls, directory: str) -> FileMaker | None:
        """A maker for ``directory``, or ``None`` where it cannot run (not Linux, no
        ``/proc``, no Python interpreter to start, a loop without subprocesses)."""
        executable = sys.executable or ""
        if not _SUPPORTED or "python" not in os.path.basename(executable).lower():
            return None  # (an embedding program's binary would not run the helper's code)
        try:
            folder = os.open(directory, _DIR_FLAGS)
        except OSError:
            return None
        fds = -1
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fds = os.open("/proc/self/fd", _DIR_FLAGS)
            process = await asyncio.create_subprocess_exec(
                executable, "-I", "-S", "-c", _HELPER, str(theirs.fileno()), str(folder),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(), folder),
            )  # fmt: skip
            ours.setblocking(False)
            if cls.AHEAD:  # (an empty packet would read as the end)
                ours.send(b"\0" * cls.AHEAD)
        except (OSError, ValueError, RuntimeError, NotImplementedError):  # no /proc, no processes
            ours.close()
            for fd in (folder, fds):
                if fd >= 0:
                    os.close(fd)
            return None
        finally:
            theirs.close()
        return cls(directory, folder, fds, ours, process)

    async def take(self) -> int | None:
        """A made file's descriptor, waiting (in turn with the other callers) while none is
        ready; ``None`` once the helper ended, or made none for ``WAIT`` seconds (stalled)."""
        fd = None if self._waiters else self._take()
        if fd is not None or self.ended:
            return fd
        waiter: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._watch()
        try:
            with anyio.move_on_after(self.WAIT):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and (fd := waiter.result()) is not None:
                os.close(fd)  # handed over as this caller was cancelled: freed, never named
            raise
        if waiter.done() and not waiter.cancelled():  # also when handed over as time ran out
            return waiter.result()
        self._end()  # stalled: the callers write their files as before
        return None

    def write(self, fd: int, name: str, data: bytes) -> int:
        """Blocking: write ``data`` into the made file ``fd``, close it, and name it ``name``
        in the directory (replacing a file of that name atomically); its mtime in
        nanoseconds."""
        try:
            mtime_ns = write_fd(fd, data)
            self._name(fd, name)
            return mtime_ns
        finally:
            os.close(fd)

    async def aclose(self) -> None:
        """Stop the helper (the made files not named are freed with the socket) and reap it."""
        self._end()
        self._sock.close()
        for fd in {self._folder, self._fds}:
            os.close(fd)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(5):
                await self._process.wait()
            if self._process.returncode is None:  # stuck in a create on a stalled disk
                self._process.kill()
                await self._process.wait()

    def _watch(self) -> None:
        if not self._watching:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._feed)
            self._watching = True

    def _feed(self) -> None:
        """The socket is readable: hand the made files to the waiting callers, in turn."""
        while self._waiters:
            if self._waiters[0].done():  # its caller was cancelled
                self._waiters.popleft()
                continue
            fd = self._take()
            if fd is None:
                break
            self._waiters.popleft().set_result(fd)
        if self.ended:
            self._end()
        elif not self._waiters:
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._watching = False

    def _end(self) -> None:
        self.ended = True
        self._unwatch()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> int | None:
        if self.ended:
            return None
        try:
            _, fds, _, _ = socket.recv_fds(self._sock, 1, 1)
        except BlockingIOError:
            return None
        except OSError:
            fds = []
        if not fds:  # the helper ended: a create failed (no O_TMPFILE here) or it was killed
            self.ended = True
            return None
        with contextlib.suppress(OSError):  # one more ahead (a full socket: it has plenty)
            self._sock.send(b"\0")
        self.made += 1
        return fds[0]

    def _name(self, fd: int, name: str) -> None:
        try:
            self._link(fd, name)
            return
        except FileExistsError:
            pass
        for _ in range(100):  # a file of that name exists: name ours beside it, then replace
            tmp = temp_name(name)
            try:
                self._link(fd, tmp)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temp file name", name)
        try:
            os.replace(tmp, name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self._folder)
            raise

    def _link(self, fd: int, name: str) -> None:
        """Name the open file ``fd`` (unnamed or not) ``name`` in the directory: a hard link
        to ``/proc/self/fd/<fd>``, followed."""
        os.link(str(fd), name, src_dir_fd=self._fds, dst_dir_fd=self._folder, follow_symlinks=True)


class MakerIO(LocalIO):
    """:class:`LocalIO` for a bulk download: once ``STREAK`` whole-body writes in a row into
    one directory each took over ``SLOW`` seconds on the loop (the create is what is slow
    there: a page-cache write of a frame takes microseconds), a :class:`FileMaker` makes that
    directory's files ahead for the rest of the call. ``aclose()`` stops it."""

    SLOW = 0.0003
    STREAK = 8

    def __init__(self) -> None:
        super().__init__()
        self.maker: FileMaker | None = None
        self._streak = 0
        self._tried = False  # one maker per call at most

    async def write_file(self, path: Path, data: bytes) -> int:
        on_loop = len(data) <= self.INLINE_MAX and not self.threaded
        maker = self.maker
        if maker is not None and on_loop:
            parent, name = os.path.split(path)
            if parent == maker.directory and (fd := await maker.take()) is not None:
                return self.inline(partial(maker.write, fd, name, data))  # no await: fd kept
        if self._tried or not on_loop:  # decided: no timing on the way
            return await super().write_file(path, data)
        started = self._clock()
        mtime_ns = await super().write_file(path, data)
        self._streak = self._streak + 1 if self._clock() - started > self.SLOW else 0
        if self._streak >= self.STREAK:
            self._tried = True
            with anyio.CancelScope(shield=True):  # a spawn cut short would leak it
                self.maker = await FileMaker.start(os.path.dirname(path))
        return mtime_ns

    async def aclose(self) -> None:
        if self.maker is not None:
            await self.maker.aclose()
