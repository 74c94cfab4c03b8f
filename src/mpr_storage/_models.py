"""Plain data types shared by every layer: what an object is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["BytesCallback", "ObjectInfo"]

BytesCallback = Callable[[int, int | None], object]
"""``on_progress(done_bytes, total_bytes)`` of a single-object transfer; may be a coroutine
function. ``total_bytes`` is ``None`` only when the server does not say how long a body is."""


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
