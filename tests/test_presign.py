"""Presigned URLs: SigV4, GET and PUT over real HTTP, expiry, the public endpoint."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import Storage


def _fetch(
    url: str, *, data: bytes | None = None, method: str = "GET", host: str | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:  # urllib would send a form content type
        request.add_header("Content-Type", "application/octet-stream")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


async def fetch(url: str, **kw: object) -> tuple[int, bytes]:
    return await anyio.to_thread.run_sync(lambda: _fetch(url, **kw))  # type: ignore[arg-type]


async def test_presigned_get_and_put_over_http(
    storage: Storage, s3: S3Target, tmp_path: Path
) -> None:
    key = s3.key("ünï code/frame 1+2:3.jpg")
    put_url = await storage.get_presigned_url(s3.bucket, key, method="PUT", expires_in=600)
    assert parse_qs(urlsplit(put_url).query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    status, _ = await fetch(put_url, data=b"jpeg bytes", method="PUT")
    assert status == 200
    get_url = await storage.get_presigned_url(s3.bucket, key)
    assert parse_qs(urlsplit(get_url).query)["X-Amz-Expires"] == ["3600"]
    assert await fetch(get_url) == (200, b"jpeg bytes")


async def test_module_level_presign(s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    await mpr_storage.upload_file(tmp_path / "f", s3.bucket, s3.key("f.txt"))
    url = await mpr_storage.get_presigned_url(s3.bucket, s3.key("f.txt"), expires_in=60)
    assert await fetch(url) == (200, b"abc")


async def test_expiry_is_honoured(seaweed: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(tmp_path / "f", seaweed.bucket, seaweed.key("f.txt"))
        url = await st.get_presigned_url(seaweed.bucket, seaweed.key("f.txt"), expires_in=1)
        assert (await fetch(url))[0] == 200
        await asyncio.sleep(2.2)
        assert (await fetch(url))[0] == 403


async def test_signed_for_the_public_endpoint(seaweed: S3Target, tmp_path: Path) -> None:
    public = "http://media.example.test:9000"
    settings = seaweed.settings(public_endpoint_url=public)
    (tmp_path / "f").write_bytes(b"public bytes")
    async with Storage(settings) as st:
        await st.upload_file(tmp_path / "f", seaweed.bucket, seaweed.key("p.jpg"))
        url = await st.get_presigned_url(seaweed.bucket, seaweed.key("p.jpg"))
    assert url.startswith(f"{public}/{seaweed.bucket}/")
    # A browser reaches the public host; a reverse proxy forwards it with that Host header.
    internal = url.replace(public, seaweed.server.endpoint_url)
    assert await fetch(internal, host="media.example.test:9000") == (200, b"public bytes")
    assert (await fetch(internal))[0] == 403  # signed for the public host, not the internal one


async def test_presign_is_offline() -> None:
    settings = mpr_storage.StorageSettings(
        endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b"
    )
    async with Storage(settings) as st:
        url = await st.get_presigned_url("mpr-media-out", "frames/1/000001.jpg")
    assert url.startswith("http://127.0.0.1:9/mpr-media-out/frames/1/000001.jpg?")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "DELETE"}, "method"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": 8 * 86400}, "expires_in"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    settings = mpr_storage.StorageSettings(
        endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b"
    )
    async with Storage(settings) as st:
        with pytest.raises(ValueError, match=match):
            await st.get_presigned_url("b", "k", **kwargs)  # type: ignore[arg-type]
