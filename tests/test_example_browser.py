"""A real browser (Debian's chromium, driven by Playwright) plays a source video from the
example app under uvicorn and seeks it past the middle: the app answers with 206 ranges and
the video plays on from the seek point. Skips, saying why, without chromium, ffmpeg or
Playwright (.ci/run installs the first two with apt-get where it can)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from conftest import S3Target
from mpr_storage import Storage
from webapp import Uvicorn, load_app

pytestmark = [pytest.mark.one_transport, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Nothing but loopback: no background services, no DNS (every name fails to resolve), and
# whatever still tries an address goes to a dead proxy (Chromium never proxies loopback).
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
]
MIN_SIZE = 20 * 1024 * 1024  # so a seek past the middle asks for a later range
PLAYER = "/__player"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


@pytest.fixture(scope="session")
def webm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30 s VP8 WebM of about 30 MiB (noise makes the encoder spend the bitrate), made once
    per test session in a few seconds."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("no ffmpeg to make the test video (Debian: apt-get install ffmpeg)")
    path = tmp_path_factory.mktemp("video") / "testsrc.webm"
    # fmt: off
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "30",
        "-vf", "noise=alls=100:allf=t",
        "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
        "-b:v", "8M", "-minrate", "8M", "-maxrate", "8M", "-bufsize", "8M",
        "-an", str(path),
    ]
    # fmt: on
    subprocess.run(command, check=True, timeout=100)
    assert path.stat().st_size > MIN_SIZE
    return path


class Recorder:
    """ASGI middleware noting each answer as ``(path, Range header, status)``; it also serves
    the player page, so the page and the video share the app's origin."""

    def __init__(self, app: ASGI, video_url: str) -> None:
        self.app = app
        self.video_url = video_url
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == PLAYER:
            page = f'<!doctype html><video id="v" muted preload="auto" src="{self.video_url}">'
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})  # fmt: skip
            await send({"type": "http.response.body", "body": page.encode()})
            return None
        asked = dict(scope["headers"]).get(b"range", b"").decode()

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["path"], asked, message["status"]))
            await send(message)

        return await self.app(scope, receive, noting)


def _range_start(header: str) -> int:
    first = header.partition("=")[2].partition("-")[0]
    return int(first) if first.strip().isdigit() else 0


async def test_a_browser_plays_and_seeks_a_source_video(seaweed: S3Target, webm: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("no chromium browser (Debian: apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the Python package playwright is not installed")
    key = seaweed.key("match.webm")
    size = webm.stat().st_size
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(webm, "mpr-media-in", key)

    recorder = Recorder(load_app(), f"/sources/{key}")
    with Uvicorn(recorder) as server:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(server.url + PLAYER)
                video = "document.getElementById('v')"
                await page.wait_for_function(f"{video}.readyState >= 1", timeout=60_000)
                duration = await page.evaluate(f"{video}.duration")
                assert duration > 20
                await page.evaluate(f"{video}.play()")
                await page.wait_for_function(f"{video}.currentTime > 0.5", timeout=60_000)

                before_seek = len(recorder.seen)
                target = duration * 0.7
                await page.evaluate(f"{video}.currentTime = {target}")
                await page.wait_for_function(
                    f"{video}.currentTime > {target + 1} && !{video}.paused", timeout=60_000
                )
                error = await page.evaluate(f"{video}.error && {video}.error.message")
            finally:
                await browser.close()
    assert error is None
    sources = [s for s in recorder.seen if s[0] == f"/sources/{key}"]
    assert sources and all(status in (200, 206) for _, _, status in sources), recorder.seen
    assert any(status == 206 for _, _, status in sources), recorder.seen
    # The seek fetched from past the middle of the file, by a range, not from the start (nor
    # is it only the index at the end, which the browser may also fetch).
    after_seek = [s for s in recorder.seen[before_seek:] if s[0] == f"/sources/{key}"]
    assert any(
        status == 206 and size // 2 < _range_start(asked) < size * 0.9
        for _, asked, status in after_seek
    ), (size, recorder.seen)
