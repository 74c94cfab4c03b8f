"""Atomic local files: complete or absent, with the permissions a plain open() would give."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.lowlevel
import pytest

from mpr_storage import _checksums, _files, _sizes
from mpr_storage._config import Checksum
from mpr_storage._files import LocalIO, atomic_writer, temp_path_for, write_atomic

T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_atomic_replaces_and_reports_mtime(tmp_path: Path) -> None:
    target = tmp_path / "frame.jpg"
    target.write_bytes(b"old")
    mtime_ns = write_atomic(target, b"new" * 100_000)
    assert target.read_bytes() == b"new" * 100_000
    assert target.stat().st_mtime_ns == mtime_ns
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.jpg"]


def test_temp_names_skip_taken_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.png"
    monkeypatch.setattr(_files, "_serial", itertools.count(7))
    fd, first = temp_path_for(target)
    os.close(fd)
    monkeypatch.setattr(_files, "_serial", itertools.count(7))  # the next name is taken
    fd, second = temp_path_for(target)
    os.close(fd)
    assert first != second
    assert all(Path(n).name.startswith(".x.png.") and n.endswith(".part") for n in (first, second))


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files.os, "write", broken)
    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "f.jpg", b"data")
    assert list(tmp_path.iterdir()) == []


async def test_atomic_writer_discards_on_error_and_cancel(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    with pytest.raises(RuntimeError):
        async with atomic_writer(target) as f:
            await f.write(b"partial")
            raise RuntimeError("stream broke")
    with anyio.CancelScope() as scope:
        async with atomic_writer(target) as f:
            await f.write(b"partial")
            scope.cancel()
            await anyio.lowlevel.checkpoint()  # the cancellation lands here
    assert list(tmp_path.iterdir()) == []
    async with atomic_writer(target) as f:
        await f.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


class _CountingIO(LocalIO):
    """Records how many bytes each call it runs moves."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def run(self, fn: Callable[[], T], nbytes: int) -> T:
        self.sizes.append(nbytes)
        return await super().run(fn, nbytes)


@pytest.mark.parametrize("block", [256 * 1024, 1024 * 1024])
async def test_a_streamed_body_is_written_in_blocks_of_at_most_block(
    tmp_path: Path, block: int
) -> None:
    pieces = [os.urandom(n) for n in (1, 70_000, 250_000, 65_536, 17, 200_000, 99_999)] * 9

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    io = _CountingIO()
    async with atomic_writer(tmp_path / "out.bin", io, block=block) as f:
        written = await f.write_all(body())
    assert written == sum(map(len, pieces))
    assert (tmp_path / "out.bin").read_bytes() == b"".join(pieces)
    assert io.sizes and max(io.sizes) <= block  # gathered up to a block, never past it
    assert len(io.sizes) < len(pieces)


class _Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_local_io_leaves_the_loop_for_a_while_when_calls_are_slow() -> None:
    loop_thread = threading.get_ident()
    clock = _Clock()
    io = LocalIO(slow=0.05, cooldown=0.5, clock=clock)
    assert await io.run(threading.get_ident, 64 * 1024) == loop_thread
    assert await io.run(threading.get_ident, LocalIO.INLINE_MAX + 1) != loop_thread  # big: thread
    assert await io.run(threading.get_ident, 0) == loop_thread

    def slow() -> int:
        time.sleep(0.06)  # a stalling disk: blocked in the kernel for longer than `slow`
        clock.now += 0.06
        return threading.get_ident()

    assert await io.run(slow, 10) == loop_thread  # measured
    assert not io.threaded  # held up for 6% of a second: stay
    assert await io.run(slow, 10) == loop_thread  # 12% within a second: leave for a while
    assert io.threaded
    assert await io.run(threading.get_ident, 10) != loop_thread  # for a while in a thread
    clock.now += 1.1  # the cooldown (and the one-second window) is over: back on the loop
    assert not io.threaded
    assert await io.run(threading.get_ident, 10) == loop_thread
    assert await io.run(slow, 10) == loop_thread
    assert await io.run(slow, 10) == loop_thread  # slow again: threads for twice as long
    clock.now += 0.6
    assert io.threaded
    assert await io.run(threading.get_ident, 10) != loop_thread
    clock.now += 0.5
    assert await io.run(threading.get_ident, 10) == loop_thread


BUSY_CHILD = textwrap.dedent(
    """
    import asyncio, threading, time
    from mpr_storage._files import LocalIO

    def busy():
        deadline = time.perf_counter() + 0.1
        while time.perf_counter() < deadline:
            pass
        return threading.get_ident()

    async def main():
        io = LocalIO(slow=0.05, cooldown=0.5)
        threads = {await io.run(busy, 10) for _ in range(3)}
        print(threads == {threading.get_ident()} and not io.threaded)

    asyncio.run(main())
    """
)


async def test_local_io_stays_on_the_loop_when_a_call_is_slow_without_blocking() -> None:
    """A call slowed by a busy machine (computing, or preempted) never slept in the kernel:
    threads would not make it faster, so calls stay on the loop. In a process of its own: a
    thread of the test process waking meanwhile would make the call wait for the GIL, which
    is sleeping too."""
    result = await anyio.run_process([sys.executable, "-c", BUSY_CHILD], check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().strip() == "True"


async def test_local_io_leaves_the_loop_at_once_after_one_long_stall() -> None:
    io = LocalIO(slow=0.05)
    await io.run(partial(time.sleep, 0.15), 10)  # a tenth of a second and more, in one call
    assert io.threaded


@pytest.mark.parametrize("checksum", ["crc32", "md5"])
def test_upload_checksums_are_the_values_botocore_sends(tmp_path: Path, checksum: Checksum) -> None:
    from botocore.httpchecksum import Crc32Checksum
    from botocore.utils import calculate_md5

    data = os.urandom(3 * _sizes.STREAM_CHUNK + 12345)  # streamed across chunk boundaries
    if checksum == "crc32":
        reference = Crc32Checksum()
        reference.update(data)
        expected = reference.b64digest()
    else:
        expected = calculate_md5(data)
    path = tmp_path / "body"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        streamed = _checksums.hash_fd(fd, len(data), checksum=checksum, sha256=True)
    finally:
        os.close(fd)
    whole = _checksums.digests(data, checksum=checksum, sha256=True)
    assert whole == streamed == (expected, hashlib.sha256(data).hexdigest())
    assert _checksums.digests(b"", checksum="crc32", sha256=False) == ("AAAAAA==", None)
