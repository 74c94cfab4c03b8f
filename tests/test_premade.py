"""Files made ahead by a helper process: complete under their names or absent, never litter,
and a helper that dies or stalls only sends the writes back to the loop."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from conftest import S3Target
from mpr_storage import Storage
from mpr_storage._premade import FileMaker, MakerIO
from test_transfer import leftovers, make_frames, tree


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def leaked(before: set[str]) -> set[str]:
    """Descriptors opened since ``before`` and still open (a server thread of another test
    may close one of its own meanwhile: that is not ours to count)."""
    return open_fds() - before


def reaped(*makers: FileMaker) -> bool:
    """Whether the makers' helpers are gone, not even zombies waiting to be reaped."""
    return not any(Path(f"/proc/{m._process.pid}").exists() for m in makers)


async def started(directory: Path) -> FileMaker:
    maker = await FileMaker.start(str(directory))
    assert maker is not None
    return maker


async def test_made_files_appear_complete_under_their_names(tmp_path: Path) -> None:
    before = open_fds()
    maker = await started(tmp_path)
    data = {f"frame_{i:03d}.jpg": os.urandom(1000 + i) for i in range(100)}
    for name, body in data.items():
        fd = await maker.take()
        assert fd is not None
        mtime_ns = maker.write(fd, name, body)
        assert os.stat(tmp_path / name).st_mtime_ns == mtime_ns
    await maker.aclose()
    assert reaped(maker)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == data  # nothing else
    umask = os.umask(0)
    os.umask(umask)
    assert all((tmp_path / n).stat().st_mode & 0o777 == 0o666 & ~umask for n in data)
    assert not leaked(before)


async def test_a_made_file_replaces_a_file_or_link_but_never_a_directory(tmp_path: Path) -> None:
    (tmp_path / "old.jpg").write_bytes(b"old")
    (tmp_path / "target").write_bytes(b"kept")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "target")
    (tmp_path / "dir.jpg").mkdir()
    maker = await started(tmp_path)
    try:
        for name in ("old.jpg", "link.jpg"):
            fd = await maker.take()
            assert fd is not None
            maker.write(fd, name, b"new " + name.encode())
        fd = await maker.take()
        assert fd is not None
        with pytest.raises(IsADirectoryError):
            maker.write(fd, "dir.jpg", b"not a directory")
    finally:
        await maker.aclose()
    assert (tmp_path / "old.jpg").read_bytes() == b"new old.jpg"
    assert not (tmp_path / "link.jpg").is_symlink()
    assert (tmp_path / "link.jpg").read_bytes() == b"new link.jpg"
    assert (tmp_path / "target").read_bytes() == b"kept"  # the link was replaced, not followed
    assert (tmp_path / "dir.jpg").is_dir() and list((tmp_path / "dir.jpg").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dir.jpg",
        "link.jpg",
        "old.jpg",
        "target",
    ]


async def test_a_killed_helper_ends_the_maker(tmp_path: Path) -> None:
    before = open_fds()
    maker = await started(tmp_path)
    maker._process.kill()
    taken = 0
    with anyio.fail_after(10):
        while (fd := await maker.take()) is not None:  # the files it sent before it died
            maker.write(fd, f"f{taken}", b"x")
            taken += 1
    assert maker.ended and taken <= FileMaker.AHEAD
    await maker.aclose()
    assert not leaked(before) and reaped(maker)
    assert len(list(tmp_path.iterdir())) == taken


async def test_a_stalled_helper_ends_the_maker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileMaker, "AHEAD", 0)  # asked for nothing: it makes nothing
    monkeypatch.setattr(FileMaker, "WAIT", 0.2)
    maker = await started(tmp_path)
    with anyio.fail_after(10):
        assert await maker.take() is None
    assert maker.ended
    await maker.aclose()
    assert reaped(maker) and list(tmp_path.iterdir()) == []


async def test_callers_cancelled_while_waiting_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FileMaker, "AHEAD", 0)
    before = open_fds()
    maker = await started(tmp_path)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(maker.take)
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    maker._sock.send(b"\0" * 3)  # files arrive for callers that are gone
    await anyio.sleep(0.2)
    fd = await maker.take()  # a caller after them still gets one
    assert fd is not None
    maker.write(fd, "after.jpg", b"ok")
    await maker.aclose()
    assert not leaked(before) and reaped(maker)
    assert [p.name for p in tmp_path.iterdir()] == ["after.jpg"]


@pytest.fixture
def slow_creates(monkeypatch: pytest.MonkeyPatch) -> list[FileMaker]:
    """Every write counts as slow, so a bulk download starts its maker after one file; the
    makers it started, to see that they did the work."""
    monkeypatch.setattr(MakerIO, "SLOW", -1.0)
    monkeypatch.setattr(MakerIO, "STREAK", 1)
    makers: list[FileMaker] = []
    start = FileMaker.start.__func__  # type: ignore[attr-defined]

    async def spy(cls: type[FileMaker], directory: str) -> FileMaker | None:
        maker: FileMaker | None = await start(cls, directory)
        if maker is not None:
            makers.append(maker)
        return maker

    monkeypatch.setattr(FileMaker, "start", classmethod(spy))
    return makers


async def test_a_bulk_download_with_made_files_is_exact_and_skips_next_time(
    s3: S3Target, tmp_path: Path, slow_creates: list[FileMaker]
) -> None:
    files = make_frames(tmp_path / "src", 150)
    async with Storage(s3.settings()) as st:
        await st.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
        listed = await st.list_objects(s3.bucket, s3.prefix)
        report = await st.download_many(
            s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix, concurrency=16
        )
        assert len(report.done) == len(files) and tree(tmp_path / "dst") == files
        assert len(slow_creates) == 1 and slow_creates[0].made > 100  # it did the work
        assert leftovers(tmp_path / "dst") == [] and reaped(*slow_creates)
        again = await st.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
    assert len(again.skipped) == len(files)  # the manifest has the made files' mtimes


async def test_a_cancelled_bulk_download_with_made_files_leaves_only_complete_files(
    s3: S3Target, tmp_path: Path, slow_creates: list[FileMaker], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_frames(tmp_path / "src", 300, size=20_000)
    async with Storage(s3.settings()) as st:
        await st.upload_many(tmp_path / "src", s3.bucket, s3.prefix)
        listed = await st.list_objects(s3.bucket, s3.prefix)
        write = FileMaker.write
        with anyio.CancelScope() as scope:

            def cancel_midway(maker: FileMaker, fd: int, name: str, data: bytes) -> int:
                if maker.made >= 20:
                    scope.cancel()  # delivered at the download's next await
                return write(maker, fd, name, data)

            monkeypatch.setattr(FileMaker, "write", cancel_midway)
            await st.download_many(
                s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix, concurrency=8
            )
        monkeypatch.undo()
        assert scope.cancelled_caught
        got = tree(tmp_path / "dst")
        assert 0 < len(got) < len(files)
        assert all(files[rel] == data for rel, data in got.items())
        assert leftovers(tmp_path / "dst") == [] and reaped(*slow_creates)
        rest = await st.download_many(s3.bucket, listed, tmp_path / "dst", prefix=s3.prefix)
        assert len(rest.skipped) == len(got) and tree(tmp_path / "dst") == files


async def test_no_helper_without_a_python_to_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.executable", "/usr/local/bin/uwsgi")  # an embedding program
    assert await FileMaker.start(str(tmp_path)) is None
    monkeypatch.setattr("sys.executable", "")
    assert await FileMaker.start(str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []
