"""Frame caches: a timeline's frames under `frames/{timeline_id}/`, pushed once, read often."""

from __future__ import annotations

import os

from . import _downloads, _uploads
from ._client import BaseStorage
from ._errors import InvalidKeyError, ObjectNotFoundError, TransferReport
from ._listing import iter_objects
from ._models import ProgressCallback

__all__ = ["frame_cache_exists", "frame_cache_prefix", "prefetch_frames", "upload_frames"]


def frame_cache_prefix(timeline_id: str) -> str:
    """The key prefix of a timeline's frame cache: ``"frames/{timeline_id}/"``.

    Raises:
        InvalidKeyError: the id is empty or contains ``/`` (it must name one folder).
    """
    text = str(timeline_id)
    if not text or "/" in text or text in (".", "..") or "\x00" in text:
        raise InvalidKeyError(
            f"timeline id must be a non-empty name without '/', got {timeline_id!r}",
            operation="frame_cache_prefix",
        )
    return f"frames/{text}/"


async def frame_cache_exists(
    storage: BaseStorage, timeline_id: str, *, bucket: str | None = None
) -> bool:
    """Whether the timeline has a frame cache (one LIST of at most one key).

    Args:
        bucket: defaults to ``BUCKET_OUT``.

    Raises:
        InvalidKeyError: the timeline id is empty or contains ``/``.
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    bucket = bucket or storage.settings.bucket_out
    prefix = frame_cache_prefix(timeline_id)
    transport = await storage.transport()
    page = await transport.list_page(
        bucket, prefix, None, max_keys=1, operation="frame_cache_exists"
    )
    return bool(page.objects)


async def upload_frames(
    storage: BaseStorage,
    timeline_id: str,
    src_dir: str | os.PathLike[str],
    *,
    bucket: str | None = None,
    concurrency: int | None = None,
    skip_existing: bool = False,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Push a timeline's frames (every file under ``src_dir``) to its frame cache.

    The same transfer as :func:`upload_many` with ``prefix=frame_cache_prefix(timeline_id)``
    (its guarantees and memory bound hold).

    Args:
        bucket: defaults to ``BUCKET_OUT``.
        skip_existing: leave frames already uploaded, compared as in :func:`upload_many`.
        concurrency, on_progress, raise_on_error: as for :func:`upload_many`.

    Returns:
        The :class:`TransferReport`.

    Raises:
        InvalidKeyError: the timeline id is empty or contains ``/``.
        NotADirectoryError: ``src_dir`` is not a directory.
        TransferError: some frames failed (after every other frame was tried); ``.report``
            tells which.
    """
    return await _uploads.upload_many(
        storage,
        src_dir,
        bucket or storage.settings.bucket_out,
        frame_cache_prefix(timeline_id),
        concurrency=concurrency,
        skip_existing=skip_existing,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )


async def prefetch_frames(
    storage: BaseStorage,
    timeline_id: str,
    dest_dir: str | os.PathLike[str],
    *,
    bucket: str | None = None,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Fetch a timeline's whole frame cache into ``dest_dir`` (``frame_000001.jpg`` ...).

    The listing streams into :func:`download_many` with ``skip_existing=True``, so the same
    guarantees hold: every frame is written atomically, a cancelled prefetch leaves only
    complete frames, and a frame is kept only when the manifest says the local file is the one
    written for this bucket and key (size, mtime) and the listing still shows the ETag it had:
    a second prefetch of an unchanged cache makes no GET at all. Two processes may prefetch
    into one directory at once. Memory: at most ``concurrency x 1 MiB`` of frame data in flight,
    one listing page, whatever the number of frames.

    Args:
        bucket: defaults to ``BUCKET_OUT``.
        concurrency, on_progress, raise_on_error: as for :func:`download_many`.

    Returns:
        The :class:`TransferReport`.

    Raises:
        ObjectNotFoundError: the timeline has no frame cache (``dest_dir`` is not created).
        InvalidKeyError: the timeline id is empty or contains ``/``.
        TransferError: some frames failed (after every other frame was tried); ``.report``
            tells which.
        BucketNotFoundError, AccessDeniedError, StorageConnectionError: as for
            :func:`list_objects`.
    """
    bucket = bucket or storage.settings.bucket_out
    prefix = frame_cache_prefix(timeline_id)
    report = await _downloads.download_many(
        storage,
        bucket,
        iter_objects(storage, bucket, prefix),
        dest_dir,
        prefix=prefix,
        concurrency=concurrency,
        skip_existing=True,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )
    if not (report.done or report.skipped or report.failed):
        # A replay on an empty cache would silently run on no frames.
        raise ObjectNotFoundError(
            f"no frame cache for timeline {timeline_id!r} (run extract_frames first)",
            operation="prefetch_frames",
            bucket=bucket,
            key=prefix,
        )
    return report
