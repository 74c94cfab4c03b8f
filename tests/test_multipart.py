"""Multipart uploads from one open file: parts read at their offsets and sent concurrently, on
both transports and both servers; aborted on failure, cancellation or a file that changes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import S3Target, VirtualClock
from mpr_storage import AccessDeniedError, LocalFileError, Storage, TransferError, _concurrency
from s3proxy import FaultProxy

MiB = 1024 * 1024
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])


def parts_of(s3: S3Target, url: str, fast_path: bool, **overrides: Any) -> Storage:
    """A storage whose uploads above 5 MiB go in 5 MiB parts, through ``url``."""
    settings = dict(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_attempts=4)
    settings.update(overrides)
    return Storage(s3.settings(endpoint_url=url, fast_path=fast_path, **settings))


def is_part(request: Any) -> bool:
    return request.method == "PUT" and "partNumber=" in request.query_string


async def left_behind(s3: S3Target, key: str) -> tuple[list[Any], bool]:
    """The multipart uploads still open under ``key``, and whether the object exists."""
    async with Storage(s3.settings()) as st:
        client = await st.client()
        uploads = await client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key)
        return uploads.get("Uploads", []), await st.object_exists(s3.bucket, key)


class _OnFirstPart(FaultProxy):
    """Calls ``action()`` (in the proxy's thread) when the first UploadPart arrives, before
    it is forwarded."""

    def __init__(self, upstream: str, action: Any) -> None:
        super().__init__(upstream)
        self._action = action
        self._done = False

    def reset_first(self) -> None:
        self._done = False

    async def intercept(self, request: Any, body: bytes) -> None:
        if is_part(request) and not self._done:
            self._done = True
            self._action()


@PATHS
async def test_parts_are_sent_concurrently_up_to_the_setting(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    data = os.urandom(20 * MiB + 3)  # five parts
    (tmp_path / "big.bin").write_bytes(data)
    key = s3.key("parallel.bin")
    with FaultProxy(s3.server.endpoint_url) as proxy:
        # Each part is held a moment at the proxy: the others arrive meanwhile, if sent.
        proxy.stall(5, seconds=1.0, method="PUT")
        async with parts_of(s3, proxy.url, fast_path, part_concurrency=3) as st:
            info = await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
            out = await st.download_file(s3.bucket, key, tmp_path / "out.bin")
        parts = [r for r in proxy.requests if r.method == "PUT"]
        assert len(parts) == 5 and proxy.max_in_flight == 3  # three at once, never more
    assert info.size == len(data) and info.etag.endswith("-5")
    assert out.read_bytes() == data


@PATHS
async def test_a_cancelled_upload_is_aborted_whatever_its_parts_were_doing(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    (tmp_path / "big.bin").write_bytes(os.urandom(16 * MiB))
    key = s3.key("cancelled.bin")
    with FaultProxy(s3.server.endpoint_url) as proxy:
        proxy.stall(1000, method="PUT")  # every part hangs: the cancel lands mid-upload
        async with parts_of(s3, proxy.url, fast_path) as st:
            with anyio.move_on_after(1) as scope:
                await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
            assert scope.cancelled_caught
        assert proxy.max_in_flight >= 4  # every part was on its way at once
        assert proxy.count("DELETE", objects_only=True) == 1  # AbortMultipartUpload, shielded
    assert await left_behind(s3, key) == ([], False)


@contextlib.contextmanager
def opens_of(path: Path) -> Iterator[Callable[[], int]]:
    """Counts the opens of ``path``'s file from now on, as the kernel sees them (inotify:
    nothing in the process is patched). Closes are watched too: inotify merges identical
    events in a row, never an open, a close and an open."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, ctypes.get_errno()
    opens = 0

    def count() -> int:
        nonlocal opens
        while True:
            try:
                events = os.read(fd, 65536)
            except BlockingIOError:
                return opens
            at = 0
            while at < len(events):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", events, at)
                opens += bool(mask & _IN_OPEN)
                at += 16 + length

    try:
        watch = libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN | _IN_CLOSE)
        assert watch >= 0, ctypes.get_errno()
        yield count
    finally:
        os.close(fd)


_IN_OPEN, _IN_CLOSE = 0x20, 0x08 | 0x10


def open_fds(path: Path) -> int:
    """How many of this process's descriptors are open on ``path`` now (from /proc)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{name}") == str(path)
    return count


@PATHS
async def test_the_file_is_opened_once(s3: S3Target, tmp_path: Path, fast_path: bool) -> None:
    """upload_file and upload_many open a large file once, and read its parts from there:
    one open in all (counted by the kernel), one descriptor while its parts go up."""
    src = tmp_path / "src"
    src.mkdir()
    path = src / "big.bin"
    data = os.urandom(12 * MiB + 5)
    path.write_bytes(data)
    held: list[int] = []
    with _OnFirstPart(s3.server.endpoint_url, lambda: held.append(open_fds(path))) as proxy:
        async with parts_of(s3, proxy.url, fast_path) as st:
            with opens_of(path) as opens:
                await st.upload_file(path, s3.bucket, s3.key("one/big.bin"))
                assert opens() == 1
            proxy.reset_first()
            with opens_of(path) as opens:
                assert (await st.upload_many(src, s3.bucket, s3.key("many/"))).ok
                assert opens() == 1
            assert held == [1, 1]
            for prefix in ("one/", "many/"):
                out = await st.download_file(s3.bucket, s3.key(f"{prefix}big.bin"), tmp_path / "o")
                assert out.read_bytes() == data, prefix


@PATHS
@pytest.mark.parametrize("change", ["shrinks", "grows"])
async def test_a_file_that_changes_size_fails_and_leaves_nothing(
    s3: S3Target, tmp_path: Path, fast_path: bool, change: str
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 * MiB))

    def alter() -> None:
        with open(path, "r+b") as f:
            if change == "shrinks":
                f.truncate(7 * MiB)  # the third part is not there any more
            else:
                f.seek(0, os.SEEK_END)
                f.write(b"more")

    key = s3.key(f"{change}.bin")
    with _OnFirstPart(s3.server.endpoint_url, alter) as proxy:
        async with parts_of(s3, proxy.url, fast_path, part_concurrency=1) as st:
            with pytest.raises(LocalFileError, match="changed size") as info:
                await st.upload_file(path, s3.bucket, key)
    err = info.value
    assert (err.operation, err.bucket, err.key, err.path) == (
        "upload_file",
        s3.bucket,
        key,
        str(path),
    )
    assert await left_behind(s3, key) == ([], False)


@PATHS
async def test_upload_many_of_large_files_reports_throttling_to_the_engine(
    s3: S3Target, tmp_path: Path, fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits: list[int] = []
    throttled = _concurrency.AdaptiveLimit.throttled

    def record(self: _concurrency.AdaptiveLimit) -> None:
        throttled(self)
        limits.append(self.total)

    monkeypatch.setattr(_concurrency.AdaptiveLimit, "throttled", record)
    src = tmp_path / "src"
    src.mkdir()
    files = {f"v{i}.bin": os.urandom(10 * MiB + i) for i in range(2)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    with FaultProxy(s3.server.endpoint_url) as proxy:
        proxy.fail(2, status=503, code="SlowDown", method="PUT")  # two UploadParts
        async with parts_of(s3, proxy.url, fast_path) as st:
            report = await st.upload_many(src, s3.bucket, s3.prefix, concurrency=8)
        assert sorted(r.status for r in proxy.requests if r.method == "PUT")[-2:] == [503, 503]
    assert report.ok and sorted(report.done) == sorted(s3.key(n) for n in files)
    assert limits and limits[0] == 4  # the call's limit was halved: 8 -> 4
    async with Storage(s3.settings()) as st:
        for name, data in files.items():
            out = await st.download_file(s3.bucket, s3.key(name), tmp_path / "out" / name)
            assert out.read_bytes() == data


@PATHS
async def test_upload_many_names_itself_in_the_errors_of_its_large_files(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(6 * MiB))
    key = s3.key("big.bin")
    with FaultProxy(s3.server.endpoint_url) as proxy:
        proxy.fail(100, status=403, code="AccessDenied", method="PUT")  # every part refused
        async with parts_of(s3, proxy.url, fast_path) as st:
            with pytest.raises(TransferError) as info:
                await st.upload_many(src, s3.bucket, s3.prefix)
    err = info.value.report.failed[key]
    assert (err.operation, err.bucket, err.key, err.code) == (
        "upload_many",
        s3.bucket,
        key,
        "AccessDenied",
    )
    assert await left_behind(s3, key) == ([], False)


@PATHS
async def test_a_file_that_shrinks_while_a_part_is_sent_fails_and_leaves_nothing(
    s3: S3Target,
    tmp_path: Path,
    fast_path: bool,
    monkeypatch: pytest.MonkeyPatch,
    backoff: VirtualClock,
) -> None:
    """A part is read again from the file as it is sent (never held whole): a file cut after
    the part was hashed fails the upload at once as a changed file, not as a network error
    (retried)."""
    from mpr_storage import _put

    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 * MiB))
    hash_fd = _put.hash_fd

    def cut_after_second(*args: Any, **kwargs: Any) -> Any:
        digests = hash_fd(*args, **kwargs)
        if kwargs.get("offset") == 5 * MiB:  # part 2 hashed whole, then the file is cut
            os.truncate(path, 7 * MiB)
        return digests

    monkeypatch.setattr(_put, "hash_fd", cut_after_second)
    key = s3.key("cut.bin")
    with FaultProxy(s3.server.endpoint_url) as proxy:
        async with parts_of(s3, proxy.url, fast_path, part_concurrency=1) as st:
            with pytest.raises(LocalFileError, match="changed size") as info:
                await st.upload_file(path, s3.bucket, key)
        assert backoff.waits == []
    err = info.value
    assert (err.operation, err.key, err.path) == ("upload_file", key, str(path))
    assert await left_behind(s3, key) == ([], False)


def _error_document(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        "<Message>reported in a 200 answer</Message><RequestId>r</RequestId></Error>"
    ).encode()


@PATHS
async def test_an_error_in_a_completion_200_answer_is_retried_then_raised(
    proxy: FaultProxy, s3: S3Target, fast_path: bool
) -> None:
    """botocore turns a 200 answer reporting an error into a 500 whatever its code, so it is
    retried; what still fails after the retries is raised for its code."""
    async with parts_of(s3, proxy.url, fast_path) as st:
        transport = await st.transport()
        for code, times in (("InternalError", 1), ("AccessDenied", 1), ("AccessDenied", 10)):
            key = s3.key(f"{code}-{times}")
            upload_id = await transport.create_multipart(
                s3.bucket, key, content_type="text/plain", operation="upload_file"
            )
            etag = await transport.upload_part(
                s3.bucket, key, upload_id, 1, b"part", operation="upload_file"
            )
            proxy.reset()
            ids = {"x-amz-request-id": "REQ-IN-200"}
            # 10: more than any retry budget
            proxy.fail(times, status=200, method="POST", body=_error_document(code), headers=ids)
            if times == 1:  # retried, then the upload completes
                await transport.complete_multipart(
                    s3.bucket, key, upload_id, [(1, etag)], operation="upload_file"
                )
                assert proxy.count("POST", objects_only=True) == 2
                assert await st.get_bytes(s3.bucket, key) == b"part"
                continue
            with pytest.raises(AccessDeniedError) as denied:
                await transport.complete_multipart(
                    s3.bucket, key, upload_id, [(1, etag)], operation="upload_file"
                )
            assert (denied.value.key, denied.value.request_id) == (key, "REQ-IN-200")
            assert proxy.count("POST", objects_only=True) > 1
            await transport.abort_multipart(s3.bucket, key, upload_id, operation="upload_file")
