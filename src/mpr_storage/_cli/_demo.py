"""``demo``: the MPR job end to end on a throw-away embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import anyio
from rich import box
from rich.table import Table

from .. import ObjectInfo, Storage, StorageSettings
from .. import _server as _srv
from ._base import (
    EXIT_OK,
    CliError,
    Context,
    per_second,
    plural,
    run,
    signals_ignored,
    size,
    terminate_as_interrupt,
)
from ._progress import Bar, ByteBar, summary
from ._serve import (
    buckets_from_env,
    create_buckets,
    port_free,
    print_exports,
    resolve_kind,
    serve_until_interrupted,
    start_server,
)


@dataclass
class _Step:
    name: str
    objects: int
    nbytes: int
    seconds: float
    note: str = ""
    rate: bool = True  # whether objects/s means something for this step


_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _write_fake_video(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(_MP4_HEAD)
        f.write(os.urandom(max(0, size - len(_MP4_HEAD))))


def _write_fake_frames(folder: Path, count: int) -> int:
    """``frame_000001.jpg``...: JPEG markers around random bytes, 8-32 KiB each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count)
    total = 0
    for i in range(1, count + 1):
        body = rng.randbytes(rng.randint(8 * 1024, 32 * 1024))
        data = _JPEG_HEAD + body + b"\xff\xd9"
        (folder / f"frame_{i:06d}.jpg").write_bytes(data)
        total += len(data)
    return total


def _same_files(src: Path, dst: Path) -> bool:
    """Every file of ``src`` is in ``dst`` with the same bytes, and nothing else is (but the
    library's manifest)."""
    names = sorted(p.name for p in src.iterdir())
    got = sorted(p.name for p in dst.iterdir() if not p.name.startswith(".mpr-"))
    if names != got:
        return False
    return all((src / n).read_bytes() == (dst / n).read_bytes() for n in names)


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.read_bytes() == data


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


class _Timer:
    def __enter__(self) -> _Timer:
        self.started = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


async def _demo_job(
    ctx: Context, settings: StorageSettings, steps: list[_Step], work: Path
) -> None:
    """What MPR does with its storage, on the demo server, step by step."""
    a = ctx.args
    bucket_in, bucket_out = settings.bucket_in, settings.bucket_out
    source_key = f"chunks/{date.today().isoformat()}/match-01.mp4"
    timeline = f"tl-demo-{uuid.uuid4().hex[:8]}"
    video = work / "match-01.mp4"
    await asyncio.to_thread(_write_fake_video, video, a.video_mib * 1024 * 1024)
    video_bytes = await anyio.Path(video).read_bytes()
    storage: Storage
    async with Storage(settings) as storage:
        s = storage
        # SeaweedFS allocates its first volumes on the first write (seconds): count that as
        # part of starting the server, not as the upload's time.
        with _Timer() as t:
            warm = work / "warm-up"
            await anyio.Path(warm).write_bytes(b"")
            for bucket in (bucket_in, bucket_out):
                await s.upload_file(warm, bucket, ".mpr-demo-warm-up")
                await s.delete_objects(bucket, [".mpr-demo-warm-up"])
        steps[0].seconds += t.seconds

        # 1. A user uploads a source chunk (the chunker UI does this in MPR).
        with ByteBar(ctx, "upload source chunk") as bar, _Timer() as t:
            info = await s.upload_file(video, bucket_in, source_key, on_progress=bar)
        steps.append(_Step("upload chunk", 1, info.size, t.seconds, "upload_file"))
        ctx.say(f"1. uploaded a source chunk -> s3://{bucket_in}/{source_key}")

        # 2. extract_frames: fetch the chunk, extract its frames, push the frame cache.
        with _Timer() as t:
            local = await s.download_to_temp(bucket_in, source_key)
            try:
                same = await asyncio.to_thread(_same_bytes, local, video_bytes)
            finally:
                await anyio.Path(local).unlink(missing_ok=True)
        if not same:
            raise CliError("demo: the downloaded source chunk differs from the upload")
        steps.append(_Step("fetch chunk", 1, info.size, t.seconds, "download_to_temp"))
        frames = work / "extracted"
        await asyncio.to_thread(_write_fake_frames, frames, a.frames)
        with Bar(ctx, "upload_frames") as bar:
            pushed = await s.upload_frames(timeline, frames, bucket=bucket_out, on_progress=bar)
        steps.append(
            _Step("push frames", len(pushed.done), pushed.bytes, pushed.seconds, "upload_frames")
        )
        ctx.say(
            f"2. extract_frames fetched the chunk and pushed its frame cache -> "
            f"s3://{bucket_out}/frames/{timeline}/: {summary(pushed)}"
        )

        # 3. A replay prefetches the cache; the next replay finds every frame in place.
        replay = work / "replay"
        with Bar(ctx, "replay 1: prefetch_frames") as bar:
            first = await s.prefetch_frames(timeline, replay, bucket=bucket_out, on_progress=bar)
        if not await asyncio.to_thread(_same_files, frames, replay):
            raise CliError("demo: the prefetched frames differ from the extracted ones")
        steps.append(
            _Step("replay 1 prefetch", len(first.done), first.bytes, first.seconds, "all fetched")
        )
        ctx.say(f"3. replay 1 prefetched the frame cache: {summary(first)}")
        with Bar(ctx, "replay 2: prefetch_frames") as bar:
            second = await s.prefetch_frames(timeline, replay, bucket=bucket_out, on_progress=bar)
        if second.done or len(second.skipped) != a.frames:
            raise CliError(
                f"demo: replay 2 fetched {len(second.done)} frames again instead of skipping"
            )
        steps.append(
            _Step(
                "replay 2 prefetch",
                len(second.done),
                second.bytes,
                second.seconds,
                f"{len(second.skipped)} skipped",
            )
        )
        ctx.say(f"4. replay 2 skipped all {len(second.skipped)} frames: no GET at all")

        # 4. A browser gets a presigned URL to the source chunk.
        with _Timer() as t:
            url = await s.get_presigned_url(bucket_in, source_key, expires_in=600)
            body = await asyncio.to_thread(_http_get, url)
        if body != video_bytes:
            raise CliError("demo: the presigned URL returned different bytes")
        steps.append(_Step("presigned GET", 1, len(body), t.seconds, "urllib, bytes ok"))
        ctx.say("5. a presigned URL (valid 10 min) fetched over plain HTTP gives the same bytes:")
        ctx.say(f"   {url}")

        # 5. What is in the buckets now.
        listed = 0
        ctx.say("6. the buckets now:")
        with _Timer() as t:
            for bucket in (bucket_in, bucket_out):
                objects = await s.list_objects(bucket)
                listed += len(objects)
                _show_bucket(ctx, bucket, objects)
        steps.append(_Step("list buckets", listed, 0, t.seconds, "list_objects"))


def _show_bucket(ctx: Context, bucket: str, objects: list[ObjectInfo], shown: int = 3) -> None:
    total = sum(o.size for o in objects)
    ctx.say(f"   s3://{bucket}: {plural(len(objects), 'object')}, {size(total)}")
    for o in objects[:shown]:
        ctx.say(f"     {size(o.size):>10}  {o.key}")
    if len(objects) > shown:
        ctx.say(f"     {'':>10}  ... {len(objects) - shown} more")


def _summary_table(steps: list[_Step], total_seconds: float) -> Table:
    table = Table(
        title=f"summary: demo done in {total_seconds:.1f} s",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
    )
    table.add_column("step", no_wrap=True)
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("objects/s", justify="right")
    table.add_column("note", no_wrap=True)
    for step in steps:
        rate = per_second(step.objects, step.seconds)
        table.add_row(
            step.name,
            str(step.objects),
            size(step.nbytes),
            f"{step.seconds:.2f}",
            f"{rate:.0f}" if step.rate and step.objects else "-",
            step.note,
        )
    return table


def cmd_demo(ctx: Context) -> int:
    """Run the MPR job end to end on a throw-away embedded server."""
    a = ctx.args
    started = time.monotonic()
    kind = resolve_kind(ctx, a.kind)
    bucket_in, bucket_out = buckets_from_env()
    if a.port and not port_free(a.port):
        raise CliError(f"port {a.port} on 127.0.0.1 is in use; pass another --port (0 = any)")
    # Throw-away data: no need to wait for SeaweedFS's slow graceful shutdown.
    server = _srv.LocalS3Server(kind=kind, port=a.port, stop_timeout=0.5)
    steps: list[_Step] = []
    with terminate_as_interrupt():
        ctx.say(f"starting a throw-away {kind} S3 server on 127.0.0.1 ...")
        try:
            with _Timer() as t:
                start_server(ctx, server)
                create_buckets(server, bucket_in, bucket_out)
            steps.append(_Step("start server", 2, 0, t.seconds, kind, rate=False))
            ctx.say(f"{kind} S3 server on {server.endpoint_url} ({t.seconds:.1f} s)")
            settings = StorageSettings.from_env(
                server.env(bucket_in=bucket_in, bucket_out=bucket_out)
            )
            with tempfile.TemporaryDirectory(prefix="mpr-demo-") as work:
                run(_demo_job(ctx, settings, steps, Path(work)))
            ctx.console.print(_summary_table(steps, time.monotonic() - started))
            if a.keep:
                ctx.say("the server keeps running (--keep); use it from another shell with:")
                print_exports(server, bucket_in, bucket_out)
                with contextlib.suppress(KeyboardInterrupt):
                    ctx.say("Press Ctrl-C to stop.")  # inside: a signal right after it is fine
                    serve_until_interrupted(server)
        finally:
            with signals_ignored():
                server.stop()
    ctx.say(f"server stopped; {time.monotonic() - started:.1f} s in all.")
    return EXIT_OK
