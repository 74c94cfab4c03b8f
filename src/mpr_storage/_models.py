"""Plain data types shared by every layer: what an object is, what a bulk call takes, and the
callbacks that report progress."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "BytesCallback",
    "KeySource",
    "ObjectInfo",
    "PresignedPost",
    "ProgressCallback",
    "unquote_etag",
]

BytesCallback = Callable[[int, int | None], object]
"""``on_progress(done_bytes, total_bytes)`` of a single-object transfer; may be a coroutine
function. ``total_bytes`` is ``None`` only when the server does not say how long a body is."""


def unquote_etag(value: object) -> str:
    """An ETag as :class:`ObjectInfo` keeps it: without its quotes (S3 sends ``"..."``)."""
    return str(value or "").strip('"')


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing, a HEAD (:func:`mpr_storage.stat_object`) or an upload describes
    it."""

    key: str
    size: int
    etag: str
    """The ETag without its quotes (an MD5 hex digest for single-part uploads)."""
    last_modified: datetime | None = None
    content_type: str | None = None
    """The object's ``Content-Type`` (known from a HEAD, not from a listing)."""
    metadata: Mapping[str, str] | None = field(default=None, compare=False)
    """User metadata (``x-amz-meta-*``, names without the prefix), known from a HEAD."""


@dataclass(frozen=True, slots=True)
class PresignedPost:
    """A browser upload by HTTP POST (an HTML form, or ``FormData`` in JavaScript): send
    ``fields`` as form fields, then the file as the last field, named ``file``, to ``url``."""

    url: str
    fields: dict[str, str]
    """The form fields, ``key`` and ``policy`` (with its signature) among them."""


KeySource = Iterable[str | ObjectInfo] | AsyncIterable[str | ObjectInfo]
"""What ``download_many`` takes: keys or :class:`ObjectInfo`, sync or async."""

ProgressCallback = Callable[[int, int | None, int], object]
"""``on_progress(done_objects, total_objects, done_bytes)``; may also be a coroutine function.
``total_objects`` is ``None`` while the keys are still being listed, then the final count (it
never changes once known)."""
