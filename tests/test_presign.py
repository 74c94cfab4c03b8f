"""Presigned URLs: SigV4, GET and PUT over real HTTP, expiry, the public endpoint."""

from __future__ import annotations

import datetime
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from botocore import auth as botocore_auth

import mpr_storage
from conftest import S3Target
from mpr_storage import Storage, _sigv4
from mpr_storage._presign import content_disposition


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


async def test_expiry_is_honoured(
    seaweed: S3Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """URLs signed ten seconds ago: one valid for a minute works, one valid for five seconds
    is refused (the signing clock is set back, not slept through)."""
    (tmp_path / "f").write_bytes(b"abc")
    then = float(int(time.time()) - 10)
    monkeypatch.setattr(_sigv4, "time", _FrozenTime(then))
    when = datetime.datetime.fromtimestamp(then, datetime.timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: when)
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(tmp_path / "f", seaweed.bucket, seaweed.key("f.txt"))
        valid = await st.get_presigned_url(seaweed.bucket, seaweed.key("f.txt"), expires_in=60)
        expired = await st.get_presigned_url(seaweed.bucket, seaweed.key("f.txt"), expires_in=5)
    assert await fetch(valid) == (200, b"abc")
    assert (await fetch(expired))[0] == 403


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


class _FrozenTime:
    """``time`` for the signer, stopped at ``now``."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.gmtime = time.gmtime
        self.strftime = time.strftime

    def time(self) -> float:
        return self.now


@pytest.fixture
def python_signers(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own (pure Python) query signer, the one ours mirrors: with awscrt installed
    botocore presigns with CRT's, which orders the same parameters differently and reads its
    own clock."""
    monkeypatch.setitem(botocore_auth.AUTH_TYPE_MAPS, "s3v4-query", botocore_auth.S3SigV4QueryAuth)


# (method, content_type, filename): the response overrides of a GET, a PUT's signed type
VARIANTS = [
    ("GET", None, None),
    ("PUT", None, None),
    ("GET", "video/mp4", None),
    ("GET", None, "match 01.mp4"),
    ("GET", "text/plain; charset=utf-8", 'Spiel "ü" 1/2 100%.txt'),
    ("PUT", "video/mp4", None),
]


@pytest.mark.parametrize(
    ("endpoint", "public", "style"),
    [
        ("http://127.0.0.1:9", None, "path"),
        ("http://127.0.0.1:9", None, "virtual"),  # an IP endpoint: path style all the same
        ("http://127.0.0.1:9", "http://media.example.test:9000", "path"),
        ("http://127.0.0.1:9", "https://media.example.test", "virtual"),
        ("https://s3.example.com:8443/base", None, "path"),
    ],
)
@pytest.mark.parametrize("token", [None, "session/token+="])
async def test_every_url_equals_botocores(
    endpoint: str,
    public: str | None,
    style: str,
    token: str | None,
    monkeypatch: pytest.MonkeyPatch,
    python_signers: None,
) -> None:
    """Our offline signer writes the very URL botocore's presigner writes for the same time,
    response overrides and signed content types included."""
    settings = mpr_storage.StorageSettings(
        endpoint_url=endpoint,
        public_endpoint_url=public,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token=token,
        region="eu-west-3",
        addressing_style=style,  # type: ignore[arg-type]
    )
    now = float(int(time.time()))
    monkeypatch.setattr(_sigv4, "time", _FrozenTime(now))
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: when)
    keys = ["frames/1/000001.jpg", "ünï code/frame 1+2:3.jpg", "a//b/./c~d", "q'\"<>#?[]@!$()*,;="]
    signed_here = 0
    async with Storage(settings) as st:
        botocore_client = await st.presign_client()
        signer = await st.presigner()
        assert signer is not None
        for key in keys:
            for method, content_type, filename in VARIANTS:
                for bucket in ("mpr-media-out", "dotted.bucket"):
                    ours = await st.get_presigned_url(
                        bucket,
                        key,
                        method=method,  # type: ignore[arg-type]
                        expires_in=900,
                        content_type=content_type,
                        filename=filename,
                    )
                    params = {"Bucket": bucket, "Key": key}
                    if filename is not None:
                        disposition = content_disposition(filename)
                        params["ResponseContentDisposition"] = disposition
                    if content_type is not None:
                        name = "ResponseContentType" if method == "GET" else "ContentType"
                        params[name] = content_type
                    operation = "get_object" if method == "GET" else "put_object"
                    theirs = await botocore_client.generate_presigned_url(
                        operation, Params=params, ExpiresIn=900
                    )
                    assert ours == theirs
                    if content_type is None and filename is None:
                        direct = await signer.presign(method, bucket, key, 900)
                        if direct is not None:  # botocore decides the cases this one declines
                            assert direct == theirs
                            signed_here += 1
    ip_virtual = style == "virtual" and public is None  # botocore's own rules decide those
    assert signed_here == 0 if ip_virtual else signed_here >= len(keys) * 2


@pytest.mark.parametrize(
    ("endpoint", "public", "style"),
    [
        ("http://127.0.0.1:9", None, "path"),
        ("http://127.0.0.1:9", "https://media.example.test", "virtual"),
        ("https://s3.example.com:8443/base", None, "path"),
    ],
)
@pytest.mark.parametrize("token", [None, "session/token+="])
async def test_every_post_policy_equals_botocores(
    endpoint: str,
    public: str | None,
    style: str,
    token: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our POST policies are botocore's ``generate_presigned_post``, field for field."""
    from aiobotocore import signers as aio_signers

    settings = mpr_storage.StorageSettings(
        endpoint_url=endpoint,
        public_endpoint_url=public,
        access_key_id="AKIDEXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token=token,
        region="eu-west-3",
        addressing_style=style,  # type: ignore[arg-type]
    )
    now = float(int(time.time()))
    monkeypatch.setattr(_sigv4, "time", _FrozenTime(now))
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: when)
    monkeypatch.setattr(aio_signers, "get_current_datetime", lambda: when)
    async with Storage(settings) as st:
        client = await st.presign_client()
        signer = await st.presigner()
        assert signer is not None
        for key in ["uploads/a.mp4", "ünï code/x+y 1.mp4", "uploads/${filename}"]:
            for max_size, content_type in ((None, None), (5_000_000, "video/mp4")):
                ours = await st.get_presigned_post(
                    "mpr-media-in", key, max_size=max_size, content_type=content_type
                )
                fields: dict[str, str] = {}
                conditions: list[object] = []
                if content_type:
                    fields["Content-Type"] = content_type
                    conditions.append({"Content-Type": content_type})
                if max_size is not None:
                    conditions.append(["content-length-range", 0, max_size])
                theirs = await client.generate_presigned_post(
                    "mpr-media-in", key, Fields=fields, Conditions=conditions, ExpiresIn=3600
                )
                assert ours.url == theirs["url"]
                assert list(ours.fields.items()) == list(theirs["fields"].items())
