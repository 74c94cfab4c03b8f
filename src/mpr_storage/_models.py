"""Plain data types shared by every layer: what an object is, what a bulk call did, and the
callbacks that report progress."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ._errors import StorageError

__all__ = [
    "BytesCallback",
    "KeySource",
    "ObjectInfo",
    "PresignedPost",
    "ProgressCallback",
    "TransferError",
    "TransferReport",
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


@dataclass
class TransferReport:
    """What a bulk call did.

    Attributes:
        done: keys transferred, in completion order.
        skipped: keys left alone because the destination already had them.
        failed: keys that failed, with the error of each.
        bytes: bytes transferred (skipped keys not counted).
        seconds: wall time of the call.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, StorageError] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no key failed."""
        return not self.failed


class TransferError(StorageError):
    """A bulk transfer finished with failed keys (or gave up); ``report`` has the details."""

    def __init__(
        self, message: str, *, report: TransferReport, operation: str, bucket: str
    ) -> None:
        super().__init__(message, operation=operation, bucket=bucket)
        self.report = report
