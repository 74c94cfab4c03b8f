"""Secrets never shown, on both transports: not in the locals of a failed request's frames
(error reporters capture them), and a password in the endpoint or proxy URL not in any
message, traceback or repr."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import (
    AccessDeniedError,
    Storage,
    StorageConnectionError,
    StorageError,
    StorageSettings,
)
from nettools import closed_port
from s3proxy import FaultProxy

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0123456789"
ACCESS_KEY = "AKIAEXAMPLEACCESS01"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
PASSWORD = "pa55w0rd-in-the-url"

Call = Callable[[Storage, S3Target, Path], Awaitable[object]]


async def _get(st: Storage, s3: S3Target, tmp_path: Path) -> object:
    return await st.download_file(s3.bucket, s3.key("a.bin"), tmp_path / "a.bin")


async def _put(st: Storage, s3: S3Target, tmp_path: Path) -> object:
    (tmp_path / "up.bin").write_bytes(b"payload")
    return await st.upload_file(tmp_path / "up.bin", s3.bucket, s3.key("up.bin"))


async def _list(st: Storage, s3: S3Target, tmp_path: Path) -> object:
    return await st.list_objects(s3.bucket, s3.prefix)


CALLS = pytest.mark.parametrize("call", [_get, _put, _list], ids=["get", "put", "list"])


def _signing_keys() -> list[bytes]:
    """The SigV4 signing keys of today (and yesterday, around midnight) for us-east-1."""
    keys = []
    for when in (time.time(), time.time() - 86400):
        key = f"AWS4{SECRET}".encode()
        for part in (time.strftime("%Y%m%d", time.gmtime(when)), "us-east-1", "s3", "aws4_request"):
            key = hmac.digest(key, part.encode(), hashlib.sha256)
        keys.append(key)
    return keys


def _everything_shown(exc: BaseException) -> str:
    """What an error reporter would see: the message, the chained errors and every frame's
    locals."""
    captured = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return "".join(captured.format())


def _assert_no_secret(text: str) -> None:
    assert TOKEN not in text
    assert SECRET not in text
    assert "Signature=" not in text  # a signed Authorization header: replayable for minutes
    for key in _signing_keys():
        assert repr(key) not in text and key.hex() not in text


@pytest.fixture
def front(seaweed: S3Target) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.server.endpoint_url) as p:
        yield p


def _settings(s3: S3Target, endpoint: str, fast_path: bool) -> StorageSettings:
    return s3.settings(
        endpoint_url=endpoint,
        fast_path=fast_path,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        session_token=TOKEN,
        max_attempts=1,
    )


@PATHS
@CALLS
async def test_a_server_error_leaves_no_secret_in_frame_locals(
    seaweed: S3Target, front: FaultProxy, tmp_path: Path, fast_path: bool, call: Call
) -> None:
    front.fail(5, status=500, code="InternalError", method=None, target="any")
    async with Storage(_settings(seaweed, front.url, fast_path)) as st:
        with pytest.raises(StorageError) as caught:
            await call(st, seaweed, tmp_path)
    assert caught.value.status == 500
    _assert_no_secret(_everything_shown(caught.value))


@PATHS
@CALLS
async def test_refused_credentials_leave_no_secret_in_frame_locals(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, call: Call
) -> None:
    endpoint = seaweed.server.endpoint_url  # SeaweedFS knows neither the key nor the token
    async with Storage(_settings(seaweed, endpoint, fast_path)) as st:
        with pytest.raises(AccessDeniedError) as caught:
            await call(st, seaweed, tmp_path)
    _assert_no_secret(_everything_shown(caught.value))


@PATHS
@CALLS
async def test_a_connection_error_leaves_no_secret_in_frame_locals(
    seaweed: S3Target, tmp_path: Path, fast_path: bool, call: Call
) -> None:
    # raised deep inside aiohttp (and botocore): their frames held the signed headers
    endpoint = f"http://127.0.0.1:{closed_port()}"
    async with Storage(_settings(seaweed, endpoint, fast_path)) as st:
        with pytest.raises(StorageConnectionError) as caught:
            await call(st, seaweed, tmp_path)
    _assert_no_secret(_everything_shown(caught.value))


def test_settings_repr_hides_the_endpoint_password() -> None:
    settings = StorageSettings(
        endpoint_url=f"http://minio:{PASSWORD}@127.0.0.1:9000",
        public_endpoint_url=f"https://web:{PASSWORD}@media.example.com/s3",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        session_token=TOKEN,
    )
    shown = repr(settings)
    assert PASSWORD not in shown and SECRET not in shown and TOKEN not in shown
    assert "http://***@127.0.0.1:9000" in shown and "https://***@media.example.com/s3" in shown
    assert settings.endpoint_url == f"http://minio:{PASSWORD}@127.0.0.1:9000"  # kept as given


def test_a_bad_endpoint_message_hides_its_password() -> None:
    with pytest.raises(StorageError) as caught:
        StorageSettings(endpoint_url=f"http//minio:{PASSWORD}@127.0.0.1:9000")
    assert "S3_ENDPOINT_URL" in str(caught.value) and PASSWORD not in str(caught.value)


@PATHS
async def test_an_unreachable_endpoint_with_a_password_never_shows_it(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    settings = s3.settings(  # no local of this frame holds the password either
        endpoint_url=f"http://minio:{PASSWORD}@127.0.0.1:{closed_port()}",
        fast_path=fast_path,
        max_attempts=1,
    )
    async with Storage(settings) as st:
        with pytest.raises(StorageConnectionError) as caught:
            await _get(st, s3, tmp_path)
    assert "http://***@127.0.0.1:" in str(caught.value)
    shown = _everything_shown(caught.value)
    assert PASSWORD not in shown
    assert base64.b64encode(f"minio:{PASSWORD}".encode()).decode() not in shown


@PATHS
async def test_a_working_endpoint_with_a_password_works_the_same_on_both_paths(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    # S3 requests are signed: the userinfo is never sent (aiohttp refuses it next to a
    # signature's Authorization header), on either path.
    host = s3.server.endpoint_url.removeprefix("http://")
    settings = s3.settings(endpoint_url=f"http://minio:{PASSWORD}@{host}", fast_path=fast_path)
    async with Storage(settings) as st:
        await _put(st, s3, tmp_path)
        assert [o.key for o in await st.list_objects(s3.bucket, s3.prefix)] == [s3.key("up.bin")]


@PATHS
async def test_an_unreachable_proxy_with_a_password_never_shows_it(
    s3: S3Target, tmp_path: Path, fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://user:{PASSWORD}@127.0.0.1:{closed_port()}")
    async with Storage(s3.settings(fast_path=fast_path, max_attempts=1)) as st:
        with pytest.raises(StorageConnectionError) as caught:
            await _get(st, s3, tmp_path)
    shown = _everything_shown(caught.value)
    assert PASSWORD not in shown
    assert base64.b64encode(f"user:{PASSWORD}".encode()).decode() not in shown


@PATHS
async def test_a_body_cut_short_leaves_no_secret_in_frame_locals(
    seaweed: S3Target, front: FaultProxy, tmp_path: Path, fast_path: bool
) -> None:
    # a guard (clean before too): a failure while the body is read, with the server's own
    # keys (it refuses others)
    (tmp_path / "big.bin").write_bytes(b"x" * (2 * 1024 * 1024))
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(tmp_path / "big.bin", seaweed.bucket, seaweed.key("big.bin"))
    front.cut(10, after_bytes=0)  # headers, then nothing: a resume would not get further
    settings = seaweed.settings(endpoint_url=front.url, fast_path=fast_path, max_attempts=1)
    async with Storage(settings) as st:
        with pytest.raises(StorageConnectionError) as caught:
            await st.download_file(seaweed.bucket, seaweed.key("big.bin"), tmp_path / "out.bin")
    shown = _everything_shown(caught.value)
    assert settings.secret_access_key and settings.secret_access_key not in shown
    assert "Signature=" not in shown
