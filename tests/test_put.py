"""Single-object uploads against real servers: multipart, content types, create-only PUTs."""

from __future__ import annotations

import mimetypes
import os
import random
import string
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Target, VirtualClock
from mpr_storage import LocalFileError, ObjectExistsError, Storage
from mpr_storage._checksums import CHECKSUM_HEADERS, hash_fd
from mpr_storage._files import LocalIO, PreadReader, fd_chunks
from mpr_storage._payload import Payload
from mpr_storage._put import guess_content_type
from mpr_storage._transport import Transport
from s3proxy import FaultProxy

MiB = 1024 * 1024


async def test_multipart_round_trip(s3: S3Target, tmp_path: Path) -> None:
    settings = s3.settings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    data = os.urandom(12 * MiB + 3)
    (tmp_path / "big.bin").write_bytes(data)
    key = s3.key("big.bin")
    async with Storage(settings) as st:
        info = await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
        assert info.size == len(data) and info.etag.endswith("-3")  # three parts
        out = await st.download_file(s3.bucket, key, tmp_path / "big.out")
    assert out.read_bytes() == data


async def test_one_streamed_put_reports_progress_as_its_bytes_go(
    s3: S3Target, tmp_path: Path
) -> None:
    """A file over 1 MiB and under the multipart threshold goes in one PUT, streamed from the
    file: its progress ticks as its bytes go, on botocore over plain HTTP too (which reads the
    file once more to sign it), and the object is the file."""
    data = os.urandom(6 * MiB)
    (tmp_path / "one.bin").write_bytes(data)
    calls: list[tuple[int, int | None]] = []
    async with Storage(s3.settings()) as st:
        key = s3.key("one.bin")
        await st.upload_file(
            tmp_path / "one.bin", s3.bucket, key, on_progress=lambda *a: calls.append(a)
        )
        assert await st.get_bytes(s3.bucket, key) == data
    assert calls[-1] == (len(data), len(data))
    assert len([done for done, _ in calls if 0 < done < len(data)]) >= 2
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


async def test_a_file_cut_after_it_was_hashed_fails_one_put_as_a_changed_file(
    s3: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backoff: VirtualClock
) -> None:
    """A single PUT streams the file after hashing it: a file cut meanwhile fails at once as a
    changed file naming the path (not as a broken connection, nor as botocore's raw read
    error; not retried, as reading it again cannot help), and no object is written."""
    from mpr_storage import _put

    path = tmp_path / "one.bin"
    path.write_bytes(os.urandom(6 * MiB))
    hash_fd = _put.hash_fd

    def cut_after_hashing(*args: Any, **kwargs: Any) -> Any:
        digests = hash_fd(*args, **kwargs)
        os.truncate(path, 3 * MiB)
        return digests

    monkeypatch.setattr(_put, "hash_fd", cut_after_hashing)
    key = s3.key("one.bin")
    async with Storage(s3.settings(max_attempts=5)) as st:
        with pytest.raises(LocalFileError, match="changed size") as info:
            await st.upload_file(path, s3.bucket, key)
        assert backoff.waits == []
        assert not await st.object_exists(s3.bucket, key)
    err = info.value
    assert (err.operation, err.bucket, err.key) == ("upload_file", s3.bucket, key)
    assert err.path == str(path)


async def test_a_streamed_put_that_the_wire_fails_is_sent_again_whole(
    s3: S3Target, tmp_path: Path, backoff: VirtualClock
) -> None:
    """What stops a changed file's retries lets the wire's failures be retried: a throttled
    streamed PUT of a file that did not change is sent again, read from its first byte."""
    data = os.urandom(3 * MiB)
    path = tmp_path / "one.bin"
    path.write_bytes(data)
    key = s3.key("one.bin")
    with FaultProxy(s3.server.endpoint_url) as proxy:
        proxy.fail(1, status=503, code="SlowDown", method="PUT")
        async with Storage(s3.settings(endpoint_url=proxy.url, max_attempts=3)) as st:
            await st.upload_file(path, s3.bucket, key)
            assert await st.get_bytes(s3.bucket, key) == data
        assert [r.status for r in proxy.requests if r.method == "PUT"] == [503, 200]
    assert len(backoff.waits) == 1


async def test_upload_guesses_content_type(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"\xff\xd8")
    client = await storage.client()
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("a.jpg"))
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("b.bin"), content_type="video/mp4")
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("c.unknownext"))
    types = [
        (await client.head_object(Bucket=s3.bucket, Key=s3.key(n)))["ContentType"]
        for n in ("a.jpg", "b.bin", "c.unknownext")
    ]
    assert types == ["image/jpeg", "video/mp4", "application/octet-stream"]


def test_content_type_guesses_agree_with_mimetypes() -> None:
    """The guess is looked up once per ending; it must be what mimetypes says of every name."""
    endings = [*mimetypes.types_map, *mimetypes.encodings_map, *mimetypes.suffix_map]
    endings += [".JPG", ".Gz", ".", ""]
    names = ["a b.jpg", "ünï cödé ✓.png", "a..b.bin", "deep/er/ key+:.png", "x.tar.gz"]
    names += [".tar.gz", ".hidden", "..mp4", "a..jpg", "data:x.jpg", "c:d.jpg", "a+b.jpg"]
    rnd = random.Random(14)
    for _ in range(5000):
        stem = "".join(rnd.choices(string.ascii_letters + "._-/:?#\\ %", k=rnd.randint(0, 6)))
        names.append(stem + "".join(rnd.choices(endings, k=rnd.randint(0, 3))))
    for name in names:
        expected = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        assert guess_content_type(name) == expected, name


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
async def test_a_create_only_put_refuses_an_existing_key(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    """``If-None-Match: *``: the first write wins, the next raises ObjectExistsError (a
    FileExistsError) naming the key, and the object stays as it was; streamed bodies too."""
    key = s3.key("create-only.bin")
    (tmp_path / "f").write_bytes(b"x" * (2 * MiB))
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        transport = await st.transport()
        put = partial(transport.put, content_type="text/plain", operation="put_bytes")
        await put(s3.bucket, key, b"first", if_none_match="*")
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        try:
            for body in (b"second", b"", await _streamed(transport, fd, 2 * MiB)):
                with pytest.raises(ObjectExistsError) as info:
                    await put(s3.bucket, key, body, if_none_match="*")
                assert isinstance(info.value, FileExistsError) and info.value.status == 412
                assert (info.value.operation, info.value.bucket, info.value.key) == (
                    "put_bytes",
                    s3.bucket,
                    key,
                )
        finally:
            os.close(fd)
        out = await st.download_file(s3.bucket, key, tmp_path / "out")
        assert out.read_bytes() == b"first"
        await put(s3.bucket, key, b"replaced")  # without the condition: replaced
        out = await st.download_file(s3.bucket, key, tmp_path / "out")
        assert out.read_bytes() == b"replaced"


async def _streamed(transport: Transport, fd: int, size: int) -> Payload:
    """A streamed body read from ``fd``, as uploads build it."""
    kind, sign = transport.upload_checksum, transport.signs_payload
    value, sha256 = hash_fd(fd, size, checksum=kind, sha256=sign)
    io = LocalIO()
    return Payload(
        size,
        (CHECKSUM_HEADERS[kind], value),
        sha256,
        lambda: fd_chunks(fd, size, io),
        partial(PreadReader, fd, size),
    )
