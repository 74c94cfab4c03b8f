"""Server-side copies (copy_object) on both servers and both transports: CopyObject for odd
keys, the multipart copy (UploadPartCopy) with a lowered threshold, errors in 200 answers."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import (
    AccessDeniedError,
    InvalidKeyError,
    ObjectNotFoundError,
    Storage,
    StorageError,
    _copy,
    sync,
)
from s3proxy import FaultProxy

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
MiB = 1024 * 1024
ODD_KEYS = ["a b+c.jpg", "ünï cödé ✓.png", "x%2Fy?z#w.bin", "q'\"<>[]@!$()*,;=&.txt", "d/e~f"]


def _copies(proxy: FaultProxy) -> list[str]:
    """The copy source header of every request that carried one."""
    return [
        s.headers["x-amz-copy-source"] for s in proxy.requests if "x-amz-copy-source" in s.headers
    ]


@PATHS
async def test_copy_object_is_server_side_for_odd_keys(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3000))
    async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
        for n, name in enumerate(ODD_KEYS):
            key = s3.key(f"src/{name}")
            made = await st.upload_file(src, s3.bucket, key, content_type="video/mp4")
            proxy.reset()
            dest = s3.key(f"dest {n}/{name}")
            info = await st.copy_object(s3.bucket, key, s3.bucket, dest)
            assert (info.key, info.size, info.etag) == (dest, 3000, made.etag)
            assert info.last_modified is not None and info.content_type == "video/mp4"
            # One HEAD of the source and one CopyObject; no byte of the object went through.
            assert [(r.method, r.status) for r in proxy.requests] == [("HEAD", 200), ("PUT", 200)]
            assert _copies(proxy) == [proxy.requests[0].path.lstrip("/")]
            assert proxy.requests[1].headers.get("content-length", "0") == "0"
            stat = await st.stat_object(s3.bucket, dest)
            assert (stat.size, stat.etag, stat.content_type) == (3000, made.etag, "video/mp4")
        out = await st.download_file(s3.bucket, s3.key("dest 2/" + ODD_KEYS[2]), tmp_path / "o")
        assert out.read_bytes() == src.read_bytes()


@PATHS
async def test_copy_errors_name_the_source(s3: S3Target, tmp_path: Path, fast_path: bool) -> None:
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        with pytest.raises(ObjectNotFoundError) as missing:
            await st.copy_object(s3.bucket, s3.key("none.jpg"), s3.bucket, s3.key("d.jpg"))
        assert missing.value.key == s3.key("none.jpg") and "copy_object" in str(missing.value)
        with pytest.raises(InvalidKeyError):
            await st.copy_object(s3.bucket, "", s3.bucket, s3.key("d.jpg"))
        with pytest.raises(InvalidKeyError):
            await st.copy_object(s3.bucket, s3.key("a"), s3.bucket, "")
        assert not await st.object_exists(s3.bucket, s3.key("d.jpg"))


@PATHS
async def test_copy_onto_itself_changes_nothing(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    (tmp_path / "f").write_bytes(b"same")
    async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
        made = await st.upload_file(tmp_path / "f", s3.bucket, s3.key("f"))
        proxy.reset()
        info = await st.copy_object(s3.bucket, s3.key("f"), s3.bucket, s3.key("f"))
    assert (info.size, info.etag) == (4, made.etag)
    assert [r.method for r in proxy.requests] == ["HEAD"]


def _error(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n\n<Error><Code>{code}</Code>'
        "<Message>reported in a 200 answer</Message><RequestId>r</RequestId></Error>"
    ).encode()


@PATHS
async def test_an_error_in_a_200_answer_is_an_error(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    (tmp_path / "f").write_bytes(b"copied")
    settings = s3.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=2)
    async with Storage(settings) as st:
        await st.upload_file(tmp_path / "f", s3.bucket, s3.key("f"))
        # A transient one (InternalError) is retried: the copy then completes.
        proxy.reset()
        proxy.fail(1, status=200, method="PUT", body=_error("InternalError"))
        info = await st.copy_object(s3.bucket, s3.key("f"), s3.bucket, s3.key("g"))
        assert info.size == 6 and len(_copies(proxy)) == 2
        # As botocore reads them, they count as a 500: retried, then raised, typed, naming
        # the destination.
        proxy.reset()
        ids = {"x-amz-request-id": "REQ-IN-200", "x-amz-id-2": "HOST-IN-200"}
        proxy.fail(10, status=200, method="PUT", body=_error("AccessDenied"), headers=ids)
        with pytest.raises(AccessDeniedError) as denied:
            await st.copy_object(s3.bucket, s3.key("f"), s3.bucket, s3.key("h"))
        assert denied.value.key == s3.key("h") and denied.value.operation == "copy_object"
        # the provider's request ids, as for any other error answer
        assert (denied.value.request_id, denied.value.host_id) == ("REQ-IN-200", "HOST-IN-200")
        assert not await st.object_exists(s3.bucket, s3.key("h"))


@pytest.fixture
def small_multipart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copies over 5 MiB go in parts of 5 MiB (S3's smallest), as 5 GiB ones would."""
    monkeypatch.setattr(_copy, "MULTIPART_COPY_THRESHOLD", 5 * MiB)
    monkeypatch.setattr(_copy, "COPY_PART_SIZE", 5 * MiB)


@PATHS
async def test_multipart_copy_above_the_threshold(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool, small_multipart: None
) -> None:
    data = os.urandom(12 * MiB + 3)
    (tmp_path / "big").write_bytes(data)
    key, dest = s3.key("src/big ü+.bin"), s3.key("dest/big ü+.bin")
    async with Storage(s3.settings(fast_path=fast_path)) as direct:
        client = await direct.get_s3_client()
        await client.put_object(
            Bucket=s3.bucket, Key=key, Body=data, ContentType="video/mp4", Metadata={"tl": "42"}
        )
    async with Storage(s3.settings(endpoint_url=proxy.url, fast_path=fast_path)) as st:
        proxy.reset()
        info = await st.copy_object(s3.bucket, key, s3.bucket, dest)
        seen = proxy.requests
        ranges = [s.headers.get("x-amz-copy-source-range") for s in seen if s.method == "PUT"]
        assert sorted(ranges, key=lambda r: int(str(r)[6:].split("-")[0])) == [
            f"bytes=0-{5 * MiB - 1}",
            f"bytes={5 * MiB}-{10 * MiB - 1}",
            f"bytes={10 * MiB}-{12 * MiB + 2}",
        ]
        assert [s.method for s in seen].count("POST") == 2  # create and complete
        assert not any(s.method == "GET" for s in seen)  # no byte through the client
        assert info.size == len(data) and info.last_modified is not None
        stat = await st.stat_object(s3.bucket, dest)
        assert (stat.size, stat.etag, stat.content_type) == (len(data), info.etag, "video/mp4")
        assert dict(stat.metadata or {}) == {"tl": "42"}
        out = await st.download_file(s3.bucket, dest, tmp_path / "out")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


@PATHS
async def test_a_failed_multipart_copy_is_aborted(
    proxy: FaultProxy, s3: S3Target, tmp_path: Path, fast_path: bool, small_multipart: None
) -> None:
    (tmp_path / "big").write_bytes(os.urandom(11 * MiB))
    key, dest = s3.key("big"), s3.key("copy")
    settings = s3.settings(endpoint_url=proxy.url, fast_path=fast_path, max_attempts=1)
    async with Storage(settings) as st:
        await st.upload_file(tmp_path / "big", s3.bucket, key)
        proxy.reset()
        proxy.fail(1, status=403, code="AccessDenied", method="PUT")
        with pytest.raises(StorageError):
            await st.copy_object(s3.bucket, key, s3.bucket, dest)
        assert any(s.method == "DELETE" and "uploadId=" in s.query for s in proxy.requests)
        assert not await st.object_exists(s3.bucket, dest)
        client = await st.get_s3_client()
        uploads = await client.list_multipart_uploads(Bucket=s3.bucket, Prefix=dest)
        assert not uploads.get("Uploads")


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    sync._portal.stop()
    yield
    sync._portal.stop()


def test_copy_object_on_the_other_surfaces(
    s3: S3Target, tmp_path: Path, fresh_portal: None
) -> None:
    (tmp_path / "f").write_bytes(b"twice")
    made = sync.upload_file(tmp_path / "f", s3.bucket, s3.key("f"))
    assert sync.copy_object(s3.bucket, s3.key("f"), s3.bucket, s3.key("g")).etag == made.etag

    async def main() -> None:
        info = await mpr_storage.copy_object(s3.bucket, s3.key("g"), "mpr-media-out", s3.key("h"))
        assert (info.key, info.size) == (s3.key("h"), 5)

    asyncio.run(main())
    assert sync.object_exists("mpr-media-out", s3.key("h"))


@PATHS
async def test_a_source_replaced_after_the_head_is_not_copied(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS checks x-amz-copy-source-if-match (moto ignores it)."""
    s3 = seaweed
    (tmp_path / "old").write_bytes(b"old version")
    (tmp_path / "new").write_bytes(b"a new version")
    async with Storage(s3.settings(fast_path=fast_path, max_attempts=1)) as st:
        await st.upload_file(tmp_path / "old", s3.bucket, s3.key("src"))
        transport = await st.transport()
        head = transport.head

        async def head_then_replace(bucket: str, key: str, *, operation: str) -> object:
            info = await head(bucket, key, operation=operation)
            await st.upload_file(tmp_path / "new", s3.bucket, s3.key("src"))
            return info

        monkeypatch.setattr(transport, "head", head_then_replace)
        with pytest.raises(StorageError) as refused:
            await st.copy_object(s3.bucket, s3.key("src"), s3.bucket, s3.key("dest"))
        assert refused.value.code == "PreconditionFailed"
        monkeypatch.undo()
        assert not await st.object_exists(s3.bucket, s3.key("dest"))
