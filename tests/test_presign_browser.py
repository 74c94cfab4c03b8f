"""What browsers do with presigned URLs and POST policies, against the servers that enforce
it: SeaweedFS checks a PUT's signed content type and a POST's size limit, moto honours
response-content-disposition. Each through our presigner and through botocore's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

import mpr_storage
from conftest import S3Target
from mpr_storage import PresignedPost, Storage, sync
from mpr_storage._presign import content_disposition


@pytest.fixture(params=["ours", "botocore"])
def presigner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Our offline signer, or botocore's presigner (where ours declines)."""
    if request.param == "botocore":

        async def declined(self: Storage) -> None:
            return None

        monkeypatch.setattr(Storage, "presigner", declined)
    return str(request.param)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def _put(http: aiohttp.ClientSession, url: str, data: bytes, content_type: str) -> int:
    async with http.put(url, data=data, headers={"Content-Type": content_type}) as r:
        await r.read()
        return r.status


async def test_a_presigned_put_requires_its_signed_content_type(
    seaweed: S3Target, presigner: str, http: aiohttp.ClientSession
) -> None:
    key = seaweed.key("overlays/ü 1.json")
    async with Storage(seaweed.settings()) as st:
        url = await st.get_presigned_url(
            seaweed.bucket, key, method="PUT", content_type="application/json"
        )
        assert await _put(http, url, b'{"a": 1}', "image/jpeg") == 403
        assert not await st.object_exists(seaweed.bucket, key)
        assert await _put(http, url, b'{"a": 1}', "application/json") == 200
        info = await st.stat_object(seaweed.bucket, key)
    assert (info.size, info.content_type) == (8, "application/json")


@pytest.mark.parametrize(
    "filename", ["match 01.mp4", "Spiel ü 1:0 – Halbzeit.mp4", 'a "quoted" 100%.mp4']
)
async def test_a_presigned_get_names_the_download(
    s3: S3Target,
    presigner: str,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    filename: str,
) -> None:
    (tmp_path / "f").write_bytes(b"video bytes")
    key = s3.key("sources/clip.mp4")
    async with Storage(s3.settings()) as st:
        await st.upload_file(tmp_path / "f", s3.bucket, key, content_type="video/mp4")
        url = await st.get_presigned_url(
            s3.bucket, key, content_type="application/octet-stream", filename=filename
        )
        plain = await st.get_presigned_url(s3.bucket, key)
    async with http.get(url) as r:
        assert (r.status, await r.read()) == (200, b"video bytes")
        disposition = r.headers.get("Content-Disposition")
        content_type = r.headers.get("Content-Type")
    async with http.get(plain) as r:
        assert r.status == 200 and "Content-Disposition" not in r.headers
        assert r.headers["Content-Type"] == "video/mp4"
    if s3.kind == "moto":  # SeaweedFS ignores response overrides: the URL works all the same
        assert disposition == content_disposition(filename)
        assert content_type == "application/octet-stream"


def test_content_disposition_quotes_as_rfc_6266_says() -> None:
    assert content_disposition("a.mp4") == 'attachment; filename="a.mp4"'
    assert content_disposition("Spiel ü.mp4") == (
        "attachment; filename=\"Spiel u.mp4\"; filename*=UTF-8''Spiel%20%C3%BC.mp4"
    )
    assert content_disposition('a "b"\\c/d%e.txt') == (
        "attachment; filename=\"a _b__c_d_e.txt\"; filename*=UTF-8''a%20%22b%22%5Cc%2Fd%25e.txt"
    )
    assert content_disposition("日本.mp4").startswith('attachment; filename=".mp4"; filename*=')
    assert content_disposition("日本").startswith('attachment; filename="download"; filename*=')
    # The same header on mpr_storage.web's answers (download_name=).
    assert content_disposition("Spiel 1 – Halbzeit.mp4") == (
        'attachment; filename="Spiel 1  Halbzeit.mp4"; '
        "filename*=UTF-8''Spiel%201%20%E2%80%93%20Halbzeit.mp4"
    )
    assert content_disposition('a"b.txt') == (
        "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filename": "a.mp4", "method": "PUT"}, "filename"),
        ({"filename": ""}, "filename"),
        ({"filename": "a\r\nSet-Cookie: x"}, "filename"),
        ({"content_type": "text/plain\r\nX: y"}, "content_type"),
    ],
)
async def test_bad_overrides_are_refused(kwargs: dict[str, object], match: str) -> None:
    settings = mpr_storage.StorageSettings(
        endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b"
    )
    async with Storage(settings) as st:
        with pytest.raises(ValueError, match=match):
            await st.get_presigned_url("b", "k", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_size"):
            await st.get_presigned_post("b", "k", max_size=-1)


async def _post(http: aiohttp.ClientSession, post: PresignedPost, data: bytes) -> tuple[int, str]:
    form = aiohttp.FormData()
    for name, value in post.fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="chunk.mp4", content_type="video/mp4")
    async with http.post(post.url, data=form) as r:
        return r.status, await r.text()


async def test_a_presigned_post_uploads(
    s3: S3Target, presigner: str, http: aiohttp.ClientSession
) -> None:
    key = s3.key("uploads/chunk 1+ü.mp4")
    async with Storage(s3.settings()) as st:
        post = await st.get_presigned_post(
            s3.bucket, key, expires_in=600, max_size=1000, content_type="video/mp4"
        )
        assert isinstance(post, PresignedPost) and post.fields["key"] == key
        assert post.fields["Content-Type"] == "video/mp4"
        status, _ = await _post(http, post, b"v" * 1000)
        assert status in (200, 201, 204)
        info = await st.stat_object(s3.bucket, key)
    assert (info.size, info.content_type) == (1000, "video/mp4")


async def test_a_presigned_post_refuses_an_upload_over_max_size(
    seaweed: S3Target, presigner: str, http: aiohttp.ClientSession
) -> None:
    key = seaweed.key("uploads/big.mp4")
    async with Storage(seaweed.settings()) as st:
        post = await st.get_presigned_post(seaweed.bucket, key, max_size=1000)
        status, answer = await _post(http, post, b"v" * 1001)
        assert status == 400 and "EntityTooLarge" in answer
        assert not await st.object_exists(seaweed.bucket, key)
        status, _ = await _post(http, post, b"v" * 999)
        assert status in (200, 201, 204)
        assert (await st.stat_object(seaweed.bucket, key)).size == 999


@pytest.fixture
def fresh_portal() -> Iterator[None]:
    sync._portal.stop()
    yield
    sync._portal.stop()


def test_presigned_post_on_the_other_surfaces(s3: S3Target, fresh_portal: None) -> None:
    post = sync.get_presigned_post(s3.bucket, s3.key("a.bin"), max_size=10)
    assert post.url.endswith(f"/{s3.bucket}") and "policy" in post.fields

    async def main() -> PresignedPost:
        return await mpr_storage.get_presigned_post(s3.bucket, s3.key("a.bin"))

    assert asyncio.run(main()).fields["key"] == s3.key("a.bin")


async def test_a_presigned_post_holds_to_its_content_type(
    seaweed: S3Target, presigner: str, http: aiohttp.ClientSession
) -> None:
    key = seaweed.key("uploads/typed.mp4")
    async with Storage(seaweed.settings()) as st:
        post = await st.get_presigned_post(seaweed.bucket, key, content_type="video/mp4")
        other = PresignedPost(post.url, {**post.fields, "Content-Type": "text/html"})
        status, answer = await _post(http, other, b"<script>")
        assert status == 403, answer
        assert not await st.object_exists(seaweed.bucket, key)
