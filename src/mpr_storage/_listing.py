"""Listings: objects under a prefix (page by page, or a window), one level of prefixes, buckets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from ._client import BaseStorage
from ._keys import check_bucket
from ._models import ObjectInfo

__all__ = ["iter_objects", "list_buckets", "list_objects", "list_prefixes"]

_PAGE = 1000  # ListObjectsV2's largest page


def _suffix_filter(suffixes: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if suffixes is None:
        return None
    items = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    return tuple(s.lower() for s in items)


async def iter_objects(
    storage: BaseStorage,
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
    start_after: str | None = None,
    limit: int | None = None,
) -> AsyncIterator[ObjectInfo]:
    """Iterate over the objects under ``prefix``, page by page, in key order.

    One LIST request per page of up to 1000 objects; only the current page is held in memory.
    A failed page is retried from its own continuation token, so no object is repeated. A
    window (``start_after`` and ``limit``) is read from where it starts: ``limit`` keys up to
    1000 cost one request (without ``suffixes``), not a listing of what comes before.

    Args:
        bucket: the bucket.
        prefix: only keys starting with this.
        suffixes: only keys ending with one of these (case-insensitive), e.g. ``(".jpg", ".png")``.
        start_after: only keys after this one (in key order; it need not exist).
        limit: at most this many objects (those matching ``suffixes``); ``None``: all.

    Raises:
        ValueError: ``limit`` is negative.
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the bucket name is empty or contains ``/``.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="list_objects")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"list_objects: limit must be None or an int >= 0, got {limit!r}")
    wanted = _suffix_filter(suffixes)
    if limit == 0:
        return
    transport = await storage.transport()
    token: str | None = None
    left = limit
    while True:  # page by page: a failed page is retried from its own continuation token
        # The window's first page starts after ``start_after``; the next ones from their token.
        page = await transport.list_page(
            bucket,
            prefix,
            token,
            max_keys=None if left is None or wanted is not None else min(left, _PAGE),
            start_after=start_after if token is None else None,
        )
        for obj in page.objects:
            if wanted is None or obj.key.lower().endswith(wanted):
                yield obj
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
        token = page.next_token
        if token is None:
            return


async def list_objects(
    storage: BaseStorage,
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
    start_after: str | None = None,
    limit: int | None = None,
) -> list[ObjectInfo]:
    """All objects under ``prefix`` (every page), or a window of them, in key order.

    The whole listing is held in memory; use :func:`iter_objects` to stream a large one. A
    window of ``limit`` keys after ``start_after`` (e.g. 200 frames of a timeline's cache)
    costs one LIST request when ``limit`` is at most 1000 and no ``suffixes`` are given.

    Args:
        bucket: the bucket.
        prefix: only keys starting with this.
        suffixes: only keys ending with one of these (case-insensitive), e.g. ``(".jpg", ".png")``.
        start_after: only keys after this one (in key order; it need not exist).
        limit: at most this many objects (those matching ``suffixes``); ``None``: all.

    Raises:
        ValueError: ``limit`` is negative.
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the bucket name is empty or contains ``/``.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    objects = iter_objects(
        storage, bucket, prefix, suffixes=suffixes, start_after=start_after, limit=limit
    )
    return [obj async for obj in objects]


async def list_prefixes(
    storage: BaseStorage, bucket: str, prefix: str = "", *, delimiter: str = "/"
) -> list[str]:
    """The common prefixes one level below ``prefix``, sorted: the "directories" of a
    listing (``list_prefixes(bucket, "frames/")`` -> ``["frames/tl-1/", "frames/tl-2/"]``).

    Every page of a delimited listing is read; the objects directly under ``prefix`` are not
    returned (use :func:`list_objects`).

    Args:
        bucket: the bucket.
        prefix: the level to list (a prefix ending in ``delimiter``, or ``""`` for the top).
        delimiter: what separates levels in the keys.

    Raises:
        ValueError: ``delimiter`` is empty.
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the bucket name is empty or contains ``/``.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="list_prefixes")
    if not isinstance(delimiter, str) or not delimiter:
        raise ValueError(f"list_prefixes: delimiter must be a non-empty str, got {delimiter!r}")
    transport = await storage.transport()
    found: set[str] = set()
    token: str | None = None
    while True:
        page = await transport.list_page(
            bucket, prefix, token, delimiter=delimiter, operation="list_prefixes"
        )
        found.update(page.prefixes)
        token = page.next_token
        if token is None:
            return sorted(found)


async def list_buckets(storage: BaseStorage) -> list[str]:
    """The names of the buckets the credentials can see, sorted.

    Raises:
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    transport = await storage.transport()
    return sorted(await transport.list_buckets())
