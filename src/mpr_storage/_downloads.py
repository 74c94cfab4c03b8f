"""Bulk downloads: bounded, streaming, atomic, resumable, with skip decisions that are never
wrong (see :mod:`._manifest`). Uploads live in :mod:`._uploads`."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio

from ._checksums import is_md5_etag, part_size_for, same_content
from ._client import BaseStorage
from ._concurrency import check_concurrency
from ._engine import Engine
from ._errors import LocalFileError, StorageError, TransferReport
from ._fetch import fetch_file
from ._keys import KeyMapper, check_bucket, check_key, check_key_iterable
from ._leftovers import remove_stale_temps
from ._manifest import MANIFEST_NAME, Entry, Manifest
from ._models import KeySource, ObjectInfo, ProgressCallback
from ._premade import MakerIO
from ._ranges import Ranges
from ._sizes import BULK_READ_AHEAD, STREAM_CHUNK

__all__ = [
    "MANIFEST_NAME",
    "KeySource",
    "ProgressCallback",
    "TransferReport",
    "download_many",
]

_PLAN_BATCH = 256


@dataclass(frozen=True, slots=True)
class _Get:
    """One GET to make: into ``path``; conditional on ``if_none_match`` (an ETag) if set."""

    path: Path
    info: ObjectInfo | None
    if_none_match: str | None = None


@dataclass(frozen=True, slots=True)
class _Marker:
    """A key ending in ``/`` given by name: a HEAD tells an empty directory marker (skipped)
    from an object with content (which no file can hold under that name: it fails)."""

    path: Path


_Plan = _Get | _Marker | StorageError | None  # None: keep the local file


@dataclass
class _Sweep:
    """When the call started (a temp file is only removed if it is older), and the
    directories whose stale temp files it removed (each once), with the names each had then:
    ``None`` where they could not be told (an empty or unreadable directory; a missing one
    had none)."""

    started: float = field(default_factory=time.time)
    listed: dict[str, set[str] | None] = field(default_factory=dict)


def _key_of(item: str | ObjectInfo) -> str:
    return item.key if isinstance(item, ObjectInfo) else item


def _validate_keys(mapper: KeyMapper, items: list[str | ObjectInfo], bucket: str) -> None:
    """Blocking: every key of an explicit list is safe, else :class:`InvalidKeyError` (before
    anything is fetched or written). Local trouble (:class:`LocalFileError`) stays per key, as
    do keys ending in ``/`` (directory markers, see :func:`_marker`)."""
    for item in items:
        key = check_key(_key_of(item), operation="download_many", bucket=bucket)
        if not key.endswith("/"):
            with contextlib.suppress(LocalFileError):
                mapper.check(key)


def _plan_downloads(
    mapper: KeyMapper,
    manifest: Manifest,
    bucket: str,
    batch: list[str | ObjectInfo],
    skip_existing: bool,
    part_size: int,
    sweep: _Sweep,
) -> list[tuple[str, _Plan]]:
    """Blocking, one thread hop per batch: map each key to its path (checked, nothing created)
    and decide whether the local file can be kept. Each directory met is swept once of the
    temp files that killed runs left in it."""
    plans: list[tuple[str, _Plan]] = []
    for item in batch:
        info = item if isinstance(item, ObjectInfo) else None
        key = _key_of(item)
        try:
            check_key(key, operation="download_many", bucket=bucket)
            if key.endswith("/"):
                plans.append((key, _marker(mapper, key, info, bucket)))
                continue
            path = mapper.check(key)
            if path.name == MANIFEST_NAME:
                raise _local_error(
                    f"the name {MANIFEST_NAME} is reserved for the download manifest: the "
                    "object is not written (download it under another prefix or name)",
                    path,
                    bucket,
                    key,
                )
            parent = os.path.dirname(path)  # a string: no Path hashed per key
            if parent not in sweep.listed:
                sweep.listed[parent] = _sweep(mapper, manifest, key, parent, sweep.started)
            plan: _Plan
            listed = sweep.listed[parent]
            if listed is not None and path.name not in listed:
                # Not there when the call began: nothing to keep, and no lstat. Each syscall
                # this thread makes while the loop is busy with bodies hands the GIL over and
                # back (a 2,000-frame replay into a removed cache: ~3,500 hand-overs, ~8% of
                # its time).
                plan = _Get(path, info)
            else:
                plan = _decide(path, key, info, mapper, manifest, bucket, part_size, skip_existing)
        except StorageError as exc:
            plans.append((key, exc))
            continue
        plans.append((key, plan))
    return plans


def _marker(mapper: KeyMapper, key: str, info: ObjectInfo | None, bucket: str) -> _Plan:
    """A key ending in ``/``: an empty one is a directory marker (skipped); one with content
    fails, listed at once, given by name after a HEAD (see :class:`_Marker`)."""
    rel = mapper.relative(key).rstrip("/")
    path = mapper.root.joinpath(*rel.split("/")) if rel else mapper.root
    if info is None:
        return _Marker(path)
    return None if _is_empty(info) else _not_a_file(info, path, bucket)


_EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def _is_empty(info: ObjectInfo) -> bool:
    """No content: 0 bytes, and no MD5 ETag of a non-empty body (SeaweedFS lists an object
    ``dir/`` that was written with content as 0 bytes, with its content's MD5)."""
    return info.size == 0 and not (is_md5_etag(info.etag) and info.etag != _EMPTY_MD5)


def _not_a_file(info: ObjectInfo, path: Path, bucket: str) -> LocalFileError:
    has = f"has {info.size} bytes" if info.size else f"has content (ETag {info.etag})"
    return _local_error(
        f"the object {has} but its key ends in '/', which names a directory, not a file: "
        "not written (only empty directory markers are skipped)",
        path,
        bucket,
        info.key,
    )


def _sweep(
    mapper: KeyMapper, manifest: Manifest, key: str, directory: str, before: float
) -> set[str] | None:
    """Remove the temp files killed runs left in ``directory`` (never a file the manifest
    records as a downloaded object, whatever its name); the names it has (see :class:`_Sweep`)."""
    rel_dir = mapper.relative(key).rpartition("/")[0]

    def recorded(name: str) -> bool:
        return manifest.get(f"{rel_dir}/{name}" if rel_dir else name) is not None

    names: set[str] = set()
    remove_stale_temps(directory, before=before, keep=recorded, seen=names)
    return names if names or not os.path.lexists(directory) else None  # None: lstat each


def _decide(
    path: Path,
    key: str,
    info: ObjectInfo | None,
    mapper: KeyMapper,
    manifest: Manifest,
    bucket: str,
    part_size: int,
    skip_existing: bool,
) -> _Plan:
    """Keep the local file (``None``) only when the manifest entry (same bucket and key) still
    describes it (size, mtime) and the remote object is still the one fetched: the listing's
    ETag, or, for a key given by name, a conditional GET (planned here)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _Get(path, info)
    except OSError as exc:
        raise _local_error(f"cannot inspect the file: {exc.strerror}", path, bucket, key) from exc
    if stat.S_ISDIR(st.st_mode):
        raise _local_error("a directory stands where the file goes", path, bucket, key)
    if not skip_existing or not stat.S_ISREG(st.st_mode):
        return _Get(path, info)  # a symlink or special file is replaced, never followed
    rel = mapper.relative(key)
    entry = manifest.get(rel)
    trusted = (
        entry is not None and entry.bucket == bucket and entry.key == key and entry.matches_file(st)
    )
    if info is None:
        etag = entry.etag if trusted and entry is not None and entry.etag else None
        return _Get(path, None, etag)
    if st.st_size != info.size or not info.etag:
        return _Get(path, info)
    if trusted and entry is not None and entry.etag == info.etag:
        return None
    try:  # changed since we wrote it, or not written by us: compare the content itself
        # parts as our uploads cut them: the configured size, grown under 10,000 parts
        same = same_content(path, st.st_size, info.etag, part_size_for(st.st_size, part_size))
    except OSError:
        same = False
    if not same:
        return _Get(path, info)
    manifest.record(rel, Entry(bucket, key, st.st_size, info.etag, st.st_mtime_ns))
    return None


def _local_error(message: str, path: Path, bucket: str, key: str) -> LocalFileError:
    return LocalFileError(message, path=path, operation="download_many", bucket=bucket, key=key)


def _missing_dirs(dest_dir: str | os.PathLike[str]) -> list[Path]:
    """``dest_dir`` and its ancestors that do not exist yet, deepest first."""
    dest = Path(os.path.abspath(dest_dir))
    missing: list[Path] = []
    for path in (dest, *dest.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for path in dirs:  # deepest first; a directory with anything in it stays
        with contextlib.suppress(OSError):
            os.rmdir(path)


async def download_many(
    storage: BaseStorage,
    bucket: str,
    keys: KeySource,
    dest_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    concurrency: int | None = None,
    skip_existing: bool = True,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Download many keys concurrently into ``dest_dir``; key ``k`` goes to
    ``dest_dir / k.removeprefix(prefix)``.

    One GET per object and no HEAD; keys stream from ``keys`` (an iterable or async iterable of
    keys or :class:`ObjectInfo`, e.g. :func:`iter_objects`), each started as soon as it arrives,
    into at most ``concurrency`` workers (default ``S3_MAX_CONCURRENCY``; never more than the
    keys waiting). Every file is written to a temp file and renamed into place when complete
    (where creating a file is slow, an unnamed file that a helper process made ahead, named once
    written: see ``_premade``), so cancelling leaves only complete files. Transient failures
    are retried with backoff, and throttling lowers the concurrency. Directories are created
    only once an object's body arrives; a call that fails removes the ones it created and left
    empty.

    Memory: a body up to 1 MiB is read whole, a larger one streams in 256 KiB pieces, so a
    call holds at most ``concurrency x 1 MiB`` of object data, whatever the sizes; keys are
    planned as they arrive, up to 256 at a time. Objects over ``S3_RANGE_PART_SIZE`` go as
    byte ranges (see :func:`download_file`), each range taking one of the ``concurrency``
    connections.

    Keys ending in ``/`` are directory markers: an empty one is skipped, one with content is a
    per-key :class:`LocalFileError` (a HEAD tells them apart for a key given by name). A key
    that would map to a file named ``.mpr-manifest.json`` (in any directory) is a per-key
    :class:`LocalFileError`: that name is reserved for the manifest. Temp files that killed
    runs left in a directory a key maps to are removed (see ``_leftovers.remove_stale_temps``).

    Args:
        prefix: removed from each key to make its path under ``dest_dir``.
        skip_existing: keep a local file only when it provably has the object's content: the
            ``.mpr-manifest.json`` sidecar records, per file written, the bucket, the key, the
            size, the ETag and the file's mtime after the write. A file is kept when that entry
            still matches the file (size, mtime) and the remote object (same bucket and key;
            the listing's ETag, or for keys given by name a conditional GET answering 304,
            which has no body). Otherwise the content itself is compared (MD5 ETag, or the
            multipart ETag recomputed with ``S3_MULTIPART_CHUNKSIZE``) or the object fetched
            again. A second pass over an unchanged listing makes no GET at all. Processes
            sharing a directory merge their entries under a lock.
        on_progress: ``on_progress(done_objects, total_objects, done_bytes)``, a function or a
            coroutine function, called at most every 0.1 s and once at the end with the totals;
            ``total_objects`` is ``None`` while ``keys`` is still being read (a listing), then
            the final count, which never changes once known. It is also called every 0.1 s
            while no key moves (a key source that waits).
        raise_on_error: when False, return the report instead of raising ``TransferError``.

    Returns:
        The :class:`TransferReport` (``done``, ``skipped``, ``failed``, ``bytes``, ``seconds``):
        every key received is in exactly one of ``done``, ``skipped`` and ``failed``, also when
        the call gave up (the keys it did not finish are in ``failed`` with a
        :class:`StorageError` saying so), so ``failed`` is the exact retry list. An explicit
        list is received whole; a stream up to what it yielded before the call gave up.

    Raises:
        InvalidKeyError: ``keys`` is an explicit list (not an async iterable) and one of its keys
            is unsafe (``../``, absolute, leaving ``dest_dir`` through a symlink): raised before
            any GET or write. Keys streamed from an async iterable (e.g. :func:`iter_objects`)
            are reported per key in ``failed`` instead.
        TypeError: ``keys`` is a single ``str``/``bytes``.
        ValueError: ``concurrency`` is not a positive integer.
        TransferError: some keys failed (after every other key was tried), or the call gave up
            after keys kept failing at the endpoint (every key received is still in
            ``.report``). Local problems (a file
            where a directory is needed, a directory where the file goes) are per-key
            :class:`LocalFileError`, never an abort of the other keys.
        StorageConnectionError, ThrottledError: the listing feeding ``keys`` failed.
    """
    check_bucket(bucket, operation="download_many")
    check_key_iterable(keys, operation="download_many", bucket=bucket)
    settings = storage.settings
    concurrency = check_concurrency(
        settings.max_concurrency if concurrency is None else concurrency
    )
    mapper = KeyMapper(dest_dir, prefix, operation="download_many", bucket=bucket)
    if not isinstance(keys, AsyncIterable):  # an explicit list: every key safe before any GET
        keys = list(keys)
        await anyio.to_thread.run_sync(_validate_keys, mapper, keys, bucket)
    created = await anyio.to_thread.run_sync(_missing_dirs, dest_dir)  # none created up front
    manifest = await anyio.to_thread.run_sync(Manifest.load, mapper.root)
    transport = await storage.transport()
    io = MakerIO()
    engine: Engine[_Get | _Marker] = Engine(
        operation="download_many",
        bucket=bucket,
        concurrency=concurrency,
        on_progress=on_progress,
    )
    part_size = settings.multipart_chunksize

    sweep = _Sweep()

    async def produce(send: Callable[[tuple[str, _Get | _Marker]], Awaitable[None]]) -> None:
        if isinstance(keys, list):  # an explicit list: its length is the total from the start
            engine.progress.total = len(keys)
        async for batch in engine.batches(keys, _PLAN_BATCH):
            engine.progress.seen += len(batch)
            plans = await anyio.to_thread.run_sync(
                _plan_downloads, mapper, manifest, bucket, batch, skip_existing, part_size, sweep
            )
            for key, plan in plans:
                if plan is None:
                    await engine.skip(key)
                elif isinstance(plan, StorageError):
                    await engine.fail(key, plan)
                else:
                    await send((key, plan))
        engine.progress.total = engine.progress.seen  # the listing is over: now it is known

    ranges = Ranges.from_settings(settings)

    async def work(key: str, get: _Get) -> int | None:
        got = await fetch_file(
            transport,
            bucket,
            key,
            get.path,
            io=io,
            operation="download_many",
            prepare=None if mapper.ready(get.path) else partial(mapper.prepare, key),
            if_none_match=get.if_none_match,
            size_hint=get.info.size if get.info is not None else None,
            on_throttle=engine.limit.throttled,
            read_ahead=BULK_READ_AHEAD,
            block=STREAM_CHUNK,
            ranges=ranges,
            slots=engine.limit,
        )
        if got is None:  # 304: the object still has the ETag of the file we wrote
            return None
        manifest.record(mapper.relative(key), Entry(bucket, key, got.size, got.etag, got.mtime_ns))
        return got.size

    async def check_marker(key: str, marker: _Marker) -> int | None:
        info = await transport.head(bucket, key, operation="download_many")
        if not _is_empty(info):
            raise _not_a_file(info, marker.path, bucket)
        return None  # an empty directory marker: nothing to write

    async def dispatch(key: str, item: _Get | _Marker) -> int | None:
        if isinstance(item, _Marker):
            return await check_marker(key, item)
        return await work(key, item)

    clean = False
    try:
        await engine.run(produce, dispatch)
        clean = not engine.report.failed
    finally:
        with anyio.CancelScope(shield=True):
            await io.aclose()  # a helper reaped, the files it made and nobody took freed
            with contextlib.suppress(OSError):
                await anyio.to_thread.run_sync(manifest.save)
            if not clean:  # nothing left behind by a transfer that failed before writing
                await anyio.to_thread.run_sync(_remove_empty, created)
    return engine.finish(raise_on_error)
