"""Object commands: ls, get, put, presign."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import anyio

from .. import ObjectNotFoundError, Storage
from ._base import (
    EXIT_OK,
    S3_SCHEME,
    CliError,
    Context,
    UsageError,
    bucket_key,
    is_url,
    iso,
    parse_s3_url,
    per_second,
    safe,
    size,
    when,
)
from ._progress import Bar, ByteBar, summary

# --- ls -------------------------------------------------------------------------------------


async def cmd_ls(ctx: Context, s: Storage) -> int:
    """List buckets, or the objects under a prefix."""
    a = ctx.args
    if a.bucket is None or a.bucket == S3_SCHEME:
        if a.prefix:
            raise UsageError("PREFIX needs a BUCKET")
        return await _ls_buckets(ctx, s)
    if is_url(a.bucket):
        if a.prefix:
            raise UsageError("give either BUCKET PREFIX or s3://BUCKET/PREFIX, not both")
        bucket, prefix = parse_s3_url(a.bucket)
    else:
        bucket, prefix = a.bucket, a.prefix or ""
    if a.json:
        objects = [
            {
                "key": o.key,
                "size": o.size,
                "etag": o.etag,
                "last_modified": iso(o.last_modified),
            }
            async for o in s.iter_objects(bucket, prefix)
        ]
        print(json.dumps(objects, indent=2))
        return EXIT_OK
    count = total = 0
    async for o in s.iter_objects(bucket, prefix):
        count += 1
        total += o.size
        if a.long:
            print(f"{when(o.last_modified)}  {o.size:>13}  {safe(o.etag):<34}  {safe(o.key)}")
        else:
            print(f"{when(o.last_modified)}  {size(o.size):>10}  {safe(o.key)}")
    if a.long:
        print(f"{count} object{'s' * (count != 1)}, {total} bytes ({size(total)})")
    return EXIT_OK


async def _ls_buckets(ctx: Context, s: Storage) -> int:
    buckets = await s.list_buckets()
    usage: list[tuple[int, int]] = []
    if ctx.args.long:

        async def measure(bucket: str) -> tuple[int, int]:
            count = total = 0
            async for o in s.iter_objects(bucket):
                count += 1
                total += o.size
            return count, total

        usage = list(await asyncio.gather(*(measure(name) for name in buckets)))
    if ctx.args.json:
        rows: list[dict[str, Any]] = []
        for i, name in enumerate(buckets):
            row: dict[str, Any] = {"name": name}
            if usage:
                row["objects"], row["bytes"] = usage[i]
            rows.append(row)
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for i, name in enumerate(buckets):
        if usage:
            count, total = usage[i]
            print(f"{count:>9} objects  {size(total):>10}  {safe(name)}")
        else:
            print(safe(name))
    return EXIT_OK


# --- get / put ------------------------------------------------------------------------------


def _writable_parent(command: str, dest: Path) -> None:
    """A clear error when a parent of ``dest`` is a file (not a bare ``[Errno 17]``)."""
    for parent in dest.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise CliError(f"{command}: cannot write {dest}: {parent} is not a directory")
            return


async def cmd_get(ctx: Context, s: Storage) -> int:
    """Download one object, or every object under a prefix ending in '/'."""
    a = ctx.args
    bucket, key, consumed = bucket_key(a.bucket, a.key)
    dest_arg = a.dest if consumed else a.key
    if not consumed and a.dest is not None:
        raise UsageError("too many arguments: s3://BUCKET/KEY [DEST]")
    if key == "" or key.endswith("/"):
        return await _get_prefix(ctx, s, bucket, key, dest_arg)
    where = f"s3://{bucket}/{key}"
    if dest_arg == "-":
        try:
            path = await s.download_to_temp(bucket, key)
        except ObjectNotFoundError as exc:
            raise await _missing(s, bucket, key, exc) from None
        try:
            await asyncio.to_thread(_copy_to_stdout, path)
        finally:
            await anyio.Path(path).unlink(missing_ok=True)
        return EXIT_OK
    name = PurePosixPath(key).name
    if dest_arg is None:
        dest = Path(name)
    elif dest_arg.endswith(("/", os.sep)) or await anyio.Path(dest_arg).is_dir():
        dest = Path(dest_arg) / name
    else:
        dest = Path(dest_arg)
    _writable_parent(f"get {where}", dest)
    started = time.monotonic()
    try:
        with ByteBar(ctx, f"get {key}") as bar:
            path = await s.download_file(bucket, key, dest, on_progress=bar)
    except ObjectNotFoundError as exc:
        raise await _missing(s, bucket, key, exc) from None
    seconds = time.monotonic() - started
    nbytes = (await anyio.Path(path).stat()).st_size
    ctx.say(
        f"downloaded {where} -> {path} ({size(nbytes)} in {seconds:.2f} s, "
        f"{size(per_second(nbytes, seconds))}/s)"
    )
    return EXIT_OK


async def _missing(s: Storage, bucket: str, key: str, exc: ObjectNotFoundError) -> Exception:
    """The error for a missing ``key``: with a hint when ``key/`` is a prefix with objects."""
    async for _ in s.iter_objects(bucket, key + "/"):
        return CliError(
            safe(
                f"get s3://{bucket}/{key}: no such key, but the prefix s3://{bucket}/{key}/ "
                f"holds objects: get s3://{bucket}/{key}/ fetches them"
            )
        )
    return exc


def _copy_to_stdout(path: Path) -> None:
    sys.stdout.flush()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1024 * 1024)
    sys.stdout.buffer.flush()


async def _get_prefix(
    ctx: Context, s: Storage, bucket: str, prefix: str, dest_arg: str | None
) -> int:
    dest = Path(dest_arg or PurePosixPath(prefix.rstrip("/")).name or bucket)
    where = f"s3://{bucket}/{prefix}"
    _writable_parent(f"get {where}", dest / "x")
    with Bar(ctx, f"get {where}") as bar:
        report = await s.download_many(
            bucket, s.iter_objects(bucket, prefix), dest, prefix=prefix, on_progress=bar
        )
    if not (report.done or report.skipped):
        raise CliError(f"get {where}: no objects under this prefix")
    ctx.say(f"downloaded {where} -> {dest}: {summary(report)}")
    return EXIT_OK


async def cmd_put(ctx: Context, s: Storage) -> int:
    """Upload a file, or a directory tree under a prefix."""
    a = ctx.args
    src = Path(a.src)
    if is_url(a.bucket):
        if a.key is not None:
            raise UsageError("too many arguments: SRC s3://BUCKET/KEY")
        bucket, key = parse_s3_url(a.bucket)
    else:
        bucket, key = a.bucket, a.key or ""
    if await anyio.Path(src).is_dir():
        prefix = key if key == "" or key.endswith("/") else key + "/"
        where = f"s3://{bucket}/{prefix}"
        with Bar(ctx, f"put {where}") as bar:
            report = await s.upload_many(src, bucket, prefix, on_progress=bar)
        if not (report.done or report.skipped):
            raise CliError(f"put {src}: no files to upload")
        ctx.say(f"uploaded {src} -> {where}: {summary(report)}")
        return EXIT_OK
    if not await anyio.Path(src).is_file():
        raise CliError(f"put {src}: no such file or directory")
    if key == "" or key.endswith("/"):
        key += src.name
    started = time.monotonic()
    with ByteBar(ctx, f"put {key}") as bar:
        info = await s.upload_file(src, bucket, key, content_type=a.content_type, on_progress=bar)
    seconds = time.monotonic() - started
    ctx.say(
        f"uploaded {src} -> s3://{bucket}/{info.key} ({size(info.size)} in {seconds:.2f} s, "
        f"{size(per_second(info.size, seconds))}/s, etag {info.etag})"
    )
    return EXIT_OK


# --- presign --------------------------------------------------------------------------------


async def cmd_presign(ctx: Context, s: Storage) -> int:
    """Print a presigned GET (or PUT) URL."""
    a = ctx.args
    bucket, key, consumed = bucket_key(a.bucket, a.key)
    if not consumed and a.key is not None:
        raise UsageError("too many arguments: s3://BUCKET/KEY")
    if not key:
        raise UsageError("a presigned URL needs a KEY")
    url = await s.get_presigned_url(
        bucket, key, expires_in=a.expires, method="PUT" if a.put else "GET"
    )
    print(url)
    return EXIT_OK
