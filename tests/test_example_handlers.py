"""The example handlers app (examples/handlers) on both servers and transports: sources with
HTTP range semantics (object_response), a frame-strip window in one LIST request, overlays,
the cache check; and a client leaving mid-body through uvicorn leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from conftest import S3Target
from mpr_storage import Storage
from s3proxy import FaultProxy
from webapp import Uvicorn, asgi_client, load_app

SOURCES = "mpr-media-in"
SIZE = 2 * 1024 * 1024 + 12_345  # three body chunks of at most 1 MiB


@pytest.fixture
async def client(s3: S3Target) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(load_app()) as c:
        yield c


async def _upload(s3: S3Target, tmp_path: Path, bucket: str, key: str, data: bytes) -> Any:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    async with Storage(s3.settings()) as st:
        await st.upload_file(path, bucket, key)
        return await st.stat_object(bucket, key)


async def test_sources_answer_with_http_range_semantics(
    s3: S3Target, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    key = s3.key("clip.webm")
    info = await _upload(s3, tmp_path, SOURCES, key, data)
    etag = f'"{info.etag}"'
    url = f"/sources/{key}"

    whole = await client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == etag
    assert whole.headers["content-length"] == str(SIZE)
    assert whole.headers["content-type"] == "video/webm"
    modified = whole.headers["last-modified"]
    assert modified == format_datetime(
        info.last_modified.astimezone(timezone.utc).replace(microsecond=0), usegmt=True
    )

    async def ranged(header: str, **extra: str) -> httpx.Response:
        return await client.get(url, headers={"range": header, **extra})

    part = await ranged("bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{SIZE}"
    assert part.headers["content-length"] == "100" and part.headers["etag"] == etag
    tail = await ranged(f"bytes={SIZE - 1_500_000}-")  # spans two chunks
    assert tail.status_code == 206 and tail.content == data[-1_500_000:]
    assert tail.headers["content-range"] == f"bytes {SIZE - 1_500_000}-{SIZE - 1}/{SIZE}"
    suffix = await ranged("bytes=-10")
    assert suffix.status_code == 206 and suffix.content == data[-10:]
    past = await ranged(f"bytes=10-{SIZE + 100}")  # cut at the end
    assert past.status_code == 206 and past.content == data[10:]
    assert past.headers["content-range"] == f"bytes 10-{SIZE - 1}/{SIZE}"
    longer = await ranged(f"bytes=-{SIZE + 5}")  # a suffix longer than the object: all of it
    assert longer.status_code == 206 and longer.content == data
    for header in (f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"):
        refused = await ranged(header)
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{SIZE}" and not refused.content
    several = await ranged("bytes=0-1,5-6")  # several ranges: the whole object (RFC 9110)
    assert several.status_code == 200 and several.content == data
    ignored = await ranged("bytes=9-2")  # invalid: ignored
    assert ignored.status_code == 200 and len(ignored.content) == SIZE

    for conditions in ({"if-none-match": etag}, {"if-modified-since": modified}):
        unchanged = await client.get(url, headers=conditions)
        assert unchanged.status_code == 304 and not unchanged.content, conditions
        assert unchanged.headers["etag"] == etag
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    changed = await client.get(url, headers={"if-none-match": '"x"', "if-modified-since": modified})
    assert changed.status_code == 200 and changed.content == data
    assert (await ranged("bytes=0-0", **{"if-none-match": etag})).status_code == 304

    # If-Range: the range while the validator holds, else the whole object.
    for validator in (etag, modified):
        still = await ranged("bytes=5-9", **{"if-range": validator})
        assert still.status_code == 206 and still.content == data[5:10], validator
    for validator in ('"other"', "Mon, 01 Jan 2001 00:00:00 GMT", f"W/{etag}"):
        stale = await ranged("bytes=5-9", **{"if-range": validator})
        assert stale.status_code == 200 and stale.content == data, validator

    head = await client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(SIZE) and head.headers["etag"] == etag
    assert head.headers["content-type"] == "video/webm"
    head_part = await client.head(url, headers={"range": "bytes=-10"})
    assert head_part.status_code == 206 and head_part.content == b""
    assert head_part.headers["content-range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    assert (await client.head(url, headers={"if-none-match": etag})).status_code == 304

    named = await client.get(url, params={"download": "Spiel 1 – Halbzeit.webm"})
    assert named.status_code == 200 and named.content == data
    assert named.headers["content-disposition"] == (
        'attachment; filename="Spiel 1  Halbzeit.webm"; '
        "filename*=UTF-8''Spiel%201%20%E2%80%93%20Halbzeit.webm"
    )

    for method in ("GET", "HEAD"):
        missing = await client.request(method, f"/sources/{s3.key('missing.webm')}")
        assert missing.status_code == 404, method
        missing_range = await client.request(
            method, f"/sources/{s3.key('missing.webm')}", headers={"range": "bytes=5-"}
        )
        assert missing_range.status_code == 404, method


async def test_an_empty_source_is_answered_whole(
    s3: S3Target, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = s3.key("empty.webm")
    path = tmp_path / "empty.webm"
    path.write_bytes(b"")
    async with Storage(s3.settings()) as st:
        await st.upload_file(path, SOURCES, key)
    for headers in ({}, {"range": "bytes=0-"}, {"range": "bytes=-5"}):
        answer = await client.get(f"/sources/{key}", headers=headers)
        assert answer.status_code == 200 and answer.content == b"", headers
        assert answer.headers["content-length"] == "0"


@pytest.fixture
async def proxied_client(
    s3: S3Target, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its storage going through the counting proxy."""
    monkeypatch.setenv("S3_ENDPOINT_URL", proxy.url)
    async with asgi_client(load_app()) as c:
        yield c


async def test_a_frame_strip_window_is_one_list_request(
    s3: S3Target, proxy: FaultProxy, proxied_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    timeline = s3.prefix.strip("/")
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in range(30):
        (frames / f"frame_{n:04d}.jpg").write_bytes(b"jpeg %d" % n)
    async with Storage(s3.settings()) as st:
        await st.upload_frames(timeline, frames)
    prefix = f"frames/{timeline}/"

    proxy.reset()
    answer = await proxied_client.get(
        f"/frames/{timeline}", params={"after": "frame_0009.jpg", "limit": 10}
    )
    assert answer.status_code == 200
    window = answer.json()
    keys = [frame["key"] for frame in window["frames"]]
    assert keys == [f"{prefix}frame_{n:04d}.jpg" for n in range(10, 20)]
    assert window["next"] == keys[-1]
    assert proxy.count() == proxy.count(lists_only=True) == 1
    assert "max-keys=10" in proxy.requests[0].query

    # The URLs are presigned GETs the browser fetches from the store itself.
    async with httpx.AsyncClient() as browser:
        fetched = await browser.get(window["frames"][0]["url"])
    assert fetched.status_code == 200 and fetched.content == b"jpeg 10"

    proxy.reset()
    last = await proxied_client.get(f"/frames/{timeline}", params={"after": window["next"]})
    assert [f["key"] for f in last.json()["frames"]] == [
        f"{prefix}frame_{n:04d}.jpg" for n in range(20, 30)
    ]
    assert last.json()["next"] is None and proxy.count() == 1
    assert (await proxied_client.get(f"/frames/{timeline}", params={"limit": 0})).status_code == 422

    assert (await proxied_client.get(f"/frames/{timeline}/cached")).json() == {
        "timeline": timeline,
        "cached": True,
    }
    other = await proxied_client.get(f"/frames/{timeline}-none/cached")
    assert other.status_code == 200 and other.json()["cached"] is False


async def test_overlays_are_put_and_read(s3: S3Target, client: httpx.AsyncClient) -> None:
    job = s3.prefix.strip("/")
    overlay = json.dumps({"boxes": [[1, 2, 3, 4]]}).encode()
    url = f"/overlays/{job}/frame_0001.json"
    stored = await client.put(url, content=overlay, headers={"content-type": "application/json"})
    assert stored.status_code == 201 and stored.json()["size"] == len(overlay)

    read = await client.get(url)
    assert read.status_code == 200 and read.content == overlay
    assert read.headers["content-type"] == "application/json"

    refused = await client.put(url, content=b"{}", params={"create_only": "true"})
    assert refused.status_code == 409
    assert (await client.get(url)).content == overlay  # untouched
    replaced = await client.put(url, content=b"{}")
    assert replaced.status_code == 201 and (await client.get(url)).content == b"{}"

    assert (await client.get(f"/overlays/{job}/missing.json")).status_code == 404


def _store_connections(port: int) -> list[tuple[str, int]]:
    """This process's TCP connections to ``port``: ``(state, bytes received and not yet
    read)`` each, from /proc/net/tcp{,6} matched against this process's sockets (a store in
    this process, moto, also holds the other ends: those are not counted)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in ours and int(fields[2].rpartition(":")[2], 16) == port:
                found.append((fields[3], int(fields[4].partition(":")[2], 16)))
    return found


def _released(port: int) -> bool:
    """No connection to the store holds an unread body (an abandoned one always does: the
    object is far larger than the socket buffers), and none was closed by the store and left
    open here (CLOSE_WAIT); idle connections its pools keep alive are no leak."""
    return all(state == "01" and unread == 0 for state, unread in _store_connections(port))


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc")
async def test_a_client_leaving_mid_body_leaves_nothing_behind(
    s3: S3Target, tmp_path: Path
) -> None:
    size = 48 * 1024 * 1024  # far more than the socket buffers between store and client
    key = s3.key("long.webm")
    await _upload(s3, tmp_path, SOURCES, key, os.urandom(size))
    store_port = int(s3.server.endpoint_url.rpartition(":")[2].strip("/"))

    with Uvicorn(load_app()) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            warm = await http.get(f"/sources/{key}", headers={"range": "bytes=0-9"})
            assert warm.status_code == 206
        assert _released(store_port)

        for _ in range(3):
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                request = f"GET /sources/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                await stream.send(request.encode())
                received = 0
                while received < 256 * 1024:
                    received += len(await stream.receive())
            # Gone mid-body: the handler closes the object's body (its connection to the
            # store) as soon as uvicorn tells it the client left.
            # Released for half a second on end: a body still being read shows nothing
            # unread at moments (drained between two chunks), never for ten looks in a row.
            calm = 0
            for _ in range(600):  # up to 30 s on a busy machine: the test fails after
                calm = calm + 1 if _released(store_port) else 0
                if calm >= 10:
                    break
                await anyio.sleep(0.05)
            assert _released(store_port), _store_connections(store_port)
