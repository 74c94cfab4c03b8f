"""Checksums: the digests a request carries, S3's multipart ETags, and the part size they follow."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

try:  # zlib-ng's CRC-32 folds with carry-less multiplies: ~1 us per 64 KiB, zlib's ~18 us
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - a platform without its wheel: the same CRC, slower
    from zlib import crc32

from ._config import Checksum
from ._sizes import MAX_PARTS, MIN_PART, STREAM_CHUNK, MiB

__all__ = [
    "CHECKSUM_HEADERS",
    "digests",
    "hash_fd",
    "is_md5_etag",
    "md5_file",
    "multipart_etag",
    "part_size_for",
    "same_content",
]

CHECKSUM_HEADERS: dict[Checksum, str] = {"md5": "Content-MD5", "crc32": "x-amz-checksum-crc32"}
"""The request header that carries each kind of checksum."""


class _Sum(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    """CRC-32 (zlib's polynomial) behind hashlib's ``update``/``digest``, big-endian as S3
    wants it."""

    def __init__(self, data: bytes | memoryview = b"") -> None:
        self._crc = crc32(data)

    def update(self, data: bytes | memoryview) -> None:
        self._crc = crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


def _new_sum(checksum: Checksum, data: bytes = b"") -> _Sum:
    return hashlib.md5(data, usedforsecurity=False) if checksum == "md5" else _Crc32(data)


def hash_fd(
    fd: int, size: int, *, checksum: Checksum, sha256: bool, offset: int = 0
) -> tuple[str, str | None]:
    """Blocking, streaming: :func:`digests` of the file's ``size`` bytes from ``offset`` (read
    with ``pread``: the file's position is left alone, so other readers of ``fd`` are not
    moved)."""
    check = _new_sum(checksum)
    sha = hashlib.sha256() if sha256 else None
    buffer = bytearray(STREAM_CHUNK)  # one buffer, reused: no allocation churn
    view = memoryview(buffer)
    size += offset
    while offset < size:
        n = os.preadv(fd, [view[: min(STREAM_CHUNK, size - offset)]], offset)
        if not n:
            raise OSError(0, "file shrank while it was read")
        check.update(view[:n])
        if sha is not None:
            sha.update(view[:n])
        offset += n
    b64 = base64.b64encode(check.digest()).decode("ascii")
    return b64, sha.hexdigest() if sha is not None else None


def digests(data: bytes, *, checksum: Checksum = "md5", sha256: bool) -> tuple[str, str | None]:
    """``(the checksum in base64, as its header wants it; SHA-256 in hex, or None without
    sha256)`` of ``data``."""
    b64 = base64.b64encode(_new_sum(checksum, data).digest()).decode("ascii")
    return b64, hashlib.sha256(data).hexdigest() if sha256 else None


# --- multipart ETags and the part size -------------------------------------------------------

_PART_STEP = MiB  # a part grown to stay within MAX_PARTS is a whole number of these

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-([0-9]{1,5})$")
_CHUNK = MiB  # a read of a file hashed for a skip decision


def part_size_for(size: int, configured: int, *, max_parts: int | None = None) -> int:
    """The part size for a ``size``-byte multipart upload: ``configured`` (at least 5 MiB) when
    it needs at most ``max_parts`` (S3's 10,000) parts, else the smallest whole number of MiB
    that does."""
    limit = MAX_PARTS if max_parts is None else max_parts
    part = max(configured, MIN_PART)
    if -(-size // part) <= limit:
        return part
    needed = -(-size // limit)
    return -(-needed // _PART_STEP) * _PART_STEP


def md5_file(path: Path | int) -> str:
    """Blocking: the hex MD5 of a file (a path, or an open descriptor read from its start)."""
    return _digests(path, 0)[0]


def multipart_etag(path: Path | int, part_size: int) -> str:
    """Blocking: the ETag S3 gives a multipart upload of the file in ``part_size`` parts."""
    return _digests(path, part_size)[1]


def _digests(source: Path | int, part_size: int) -> tuple[str, str]:
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    with _opened(source) as fd:
        while chunk := os.read(fd, _CHUNK):
            whole.update(chunk)
            if not part_size:
                continue
            view = memoryview(chunk)
            while view:
                take = min(len(view), part_size - in_part)
                part.update(view[:take])
                in_part += take
                view = view[take:]
                if in_part == part_size:
                    parts.append(part.digest())
                    part, in_part = hashlib.md5(usedforsecurity=False), 0
    if in_part:
        parts.append(part.digest())
    combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return whole.hexdigest(), f"{combined}-{len(parts)}"


@contextlib.contextmanager
def _opened(source: Path | int) -> Iterator[int]:
    if isinstance(source, int):
        os.lseek(source, 0, os.SEEK_SET)
        yield source
        return
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        yield fd
    finally:
        os.close(fd)


def same_content(source: Path | int, size: int, etag: str, part_size: int) -> bool:
    """Blocking: whether the local file has the content an object of ETag ``etag`` has.

    An MD5 ETag is compared with the file's MD5; a multipart ETag (``<md5>-<parts>``) with the
    one a multipart upload in ``part_size`` parts would give. Any other ETag (SSE-KMS, SSE-C)
    says nothing about the content: ``False``.
    """
    if _MD5_ETAG.match(etag):
        return md5_file(source) == etag
    found = _MULTIPART_ETAG.match(etag)
    if found is None or part_size <= 0 or -(-size // part_size) != int(found.group(1)):
        return False
    return multipart_etag(source, part_size) == etag


def is_md5_etag(etag: str) -> bool:
    """Whether ``etag`` is a plain MD5 (``same_content`` compares it with the file's)."""
    return bool(_MD5_ETAG.match(etag))
