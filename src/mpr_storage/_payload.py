"""What a write sends: a body (:class:`Payload`, :data:`Chunks`), or another object's bytes
for a server-side copy (:class:`CopySource`, :data:`Part`)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Chunks", "CopySource", "Part", "Payload"]

Chunks = Callable[[], AsyncIterator[bytes]]
"""A streamed request body: each call starts a fresh pass over it, from its first byte."""


@dataclass(frozen=True, slots=True)
class Payload:
    """A request body to PUT, with the digests its sender computed (as the transport's
    :attr:`~._transport.Transport.upload_checksum`, :attr:`~._transport.Transport.part_checksum` and
    :attr:`~._transport.Transport.signs_payload` ask).

    ``content`` is the bytes, or :data:`Chunks`: a factory of the body's chunks, called once
    per attempt, so a retried request reads the body again from its start. A streamed body
    may also offer ``blocking``: a factory of a blocking, seekable reader of the same bytes,
    for a transport whose client hashes a body synchronously before it sends the chunks
    (botocore, to sign its SHA-256 over plain HTTP), and ``failed``: asked after an attempt
    failed, the error to raise at once if the body's source, not the wire, failed it (a file
    that changed or could not be read: retrying would read it again), else ``None``."""

    size: int
    checksum: tuple[str, str]  # the header (Content-MD5 or x-amz-checksum-crc32) and its value
    sha256: str | None  # None: the transport does not sign the payload's hash
    content: bytes | Chunks
    blocking: Callable[[], io.IOBase] | None = None
    failed: Callable[[], Awaitable[Exception | None]] | None = None


Part = tuple[int, int, int]
"""A part of a multipart copy: ``(number, first, last)``, its byte range inclusive."""


@dataclass(frozen=True, slots=True)
class CopySource:
    """The object a copy reads: ``bucket``, ``key`` and the ``etag`` it must still have (a
    copy condition: a source replaced meanwhile is refused with 412), if any."""

    bucket: str
    key: str
    etag: str | None = None

    def headers(self) -> dict[str, str]:
        """``x-amz-copy-source`` as botocore writes it (``bucket/key`` percent-encoded, ``/``
        kept) and ``x-amz-copy-source-if-match``."""
        found = {"x-amz-copy-source": quote(f"{self.bucket}/{self.key}", safe="-._~/")}
        if self.etag:
            found["x-amz-copy-source-if-match"] = f'"{self.etag}"'
        return found
