"""Single downloads that fail locally: a full disk, a file where a directory goes."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import LocalFileError, Storage
from test_transfer import leftovers

MiB = 1024 * 1024


async def seed(s3: S3Target, tmp_path: Path, size: int) -> str:
    (tmp_path / "src.bin").write_bytes(os.urandom(size))
    key = s3.key(f"obj-{size}.bin")
    async with Storage(s3.settings()) as st:
        await st.upload_file(tmp_path / "src.bin", s3.bucket, key)
    (tmp_path / "src.bin").unlink()
    return key


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (mounting needs root; elsewhere the RLIMIT test below still runs)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize(
    ("size", "ranges"),
    [(900_000, 16), (3 * MiB, 16), (3 * MiB, 1)],
    ids=["whole", "ranges", "one-stream"],
)
async def test_a_full_disk_is_a_local_file_error_and_leaves_nothing(
    s3: S3Target,
    tmp_path: Path,
    full_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    ranges: int,
) -> None:
    (full_disk / "filler").write_bytes(b"x" * 300_000)  # what is left: ~700 KiB
    key = await seed(s3, tmp_path, size)
    monkeypatch.setattr(tempfile, "tempdir", str(full_disk))
    async with Storage(s3.settings(range_part_size=MiB, range_concurrency=ranges)) as st:
        with pytest.raises(LocalFileError) as info:
            await st.download_file(s3.bucket, key, full_disk / "out.bin")
        err = info.value
        assert (err.errno, err.operation, err.bucket, err.key) == (
            errno.ENOSPC,
            "download_file",
            s3.bucket,
            key,
        )
        assert str(full_disk) in err.path and key in str(err)
        with pytest.raises(LocalFileError) as info:
            await st.download_to_temp(s3.bucket, key)
        assert (info.value.errno, info.value.operation) == (errno.ENOSPC, "download_to_temp")
    assert sorted(os.listdir(full_disk)) == ["filler"]  # nothing left behind


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files of this process can't grow past ``limit`` bytes: writes fail with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("ranges", [16, 1], ids=["ranges", "one-stream"])
async def test_a_file_that_cannot_grow_is_a_local_file_error(
    s3: S3Target, tmp_path: Path, ranges: int
) -> None:
    key = await seed(s3, tmp_path, 3 * MiB)
    dest = tmp_path / "dst" / "out.bin"
    async with Storage(s3.settings(range_part_size=MiB, range_concurrency=ranges)) as st:
        with file_size_limit(2 * MiB), pytest.raises(LocalFileError) as info:
            await st.download_file(s3.bucket, key, dest)
    assert (info.value.errno, info.value.key) == (errno.EFBIG, key)
    assert leftovers(tmp_path / "dst") == [] and not dest.exists()


async def test_a_file_where_the_parent_directory_goes(s3: S3Target, tmp_path: Path) -> None:
    key = await seed(s3, tmp_path, 1000)
    (tmp_path / "afile").write_bytes(b"not a directory")
    async with Storage(s3.settings()) as st:
        with pytest.raises(LocalFileError) as info:
            await st.download_file(s3.bucket, key, tmp_path / "afile" / "out.bin")
        assert isinstance(info.value, FileExistsError)
        assert (info.value.key, info.value.operation) == (key, "download_file")
        assert key in str(info.value) and "afile" in info.value.path
        with pytest.raises(LocalFileError) as deeper:  # a file further up
            await st.download_file(s3.bucket, key, tmp_path / "afile" / "sub" / "out.bin")
        assert deeper.value.errno == errno.ENOTDIR and deeper.value.key == key
    assert (tmp_path / "afile").read_bytes() == b"not a directory"
