"""The sizes behind a transfer's memory bound, S3's part limits, and the bound they give."""

from __future__ import annotations

__all__ = [
    "BODY_CHUNK",
    "BULK_READ_AHEAD",
    "HELD_PER_PART",
    "HELD_PER_TRANSFER",
    "MAX_CONCURRENCY",
    "MAX_PARTS",
    "MIN_PART",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "PART_CONCURRENCY",
    "RANGE_CONCURRENCY",
    "RANGE_PART_SIZE",
    "READ_AHEAD_HELD",
    "SMALL_BODY",
    "STREAM_CHUNK",
    "WRITE_BLOCK",
    "KiB",
    "MiB",
    "memory_bound",
]

KiB = 1024
MiB = 1024 * KiB

# --- what one transfer holds ------------------------------------------------------------------

SMALL_BODY = MiB
"""Bodies and files up to this are read whole, and written or sent in one call."""

STREAM_CHUNK = 256 * KiB
"""A streamed body moves in blocks of this size: a file read (with what the socket still holds,
at most 512 KiB per upload), or a response written in a bulk transfer (with what the HTTP
client reads ahead meanwhile, under 1 MiB per download: see :data:`BULK_READ_AHEAD`)."""

BULK_READ_AHEAD = 64 * KiB
"""The ``read_ahead`` of bulk transfers. aiohttp stops reading a response's socket once it
holds more than twice this, so it holds at most ~384 KiB (with one socket read of 256 KiB)
of a body whose previous block waits for a slow disk: with that block, under 1 MiB per
transfer. Its default (256 KiB, so up to 768 KiB) broke the bound of ``concurrency x 1 MiB``
when writes go to worker threads; one stream alone reads ~10% faster with it, which is why
single downloads keep it. The fast path only: aiobotocore's sessions keep aiohttp's default."""

_SOCKET_READ = 256 * KiB  # asyncio's largest read of a socket

READ_AHEAD_HELD = 2 * BULK_READ_AHEAD + _SOCKET_READ
"""What the HTTP client holds at most of a bulk download's body beside the block being written
(384 KiB)."""

HELD_PER_TRANSFER = SMALL_BODY
"""Object or file data one transfer of a bulk call holds at most (1 MiB): a body read whole,
or a streamed block with what is read ahead of it."""

HELD_PER_PART = 2 * STREAM_CHUNK
"""File data one multipart part in flight holds at most (512 KiB): the block being read, and
the one the socket still holds. A part is hashed in a first pass, then streamed from the file:
never held whole, whatever its size."""

WRITE_BLOCK = MiB
"""The largest write of a streamed download: one call per MiB, on the event loop while the
disk keeps up (~5% faster for one stream than 256 KiB writes). Bulk transfers and ranges write
:data:`STREAM_CHUNK` blocks, which keeps their memory bound."""

BODY_CHUNK = MiB
"""The largest chunk a GET's :class:`~._body.Body` yields: the pieces as they arrive, at most
this each."""

# --- defaults of the settings that multiply them (read from the environment in _config) -----

MAX_CONCURRENCY = 64  # S3_MAX_CONCURRENCY: transfers of a bulk call in flight
MULTIPART_THRESHOLD = 16 * MiB  # S3_MULTIPART_THRESHOLD
MULTIPART_CHUNKSIZE = 8 * MiB  # S3_MULTIPART_CHUNKSIZE: a part (streamed, never held whole)
PART_CONCURRENCY = 10  # S3_PART_CONCURRENCY: parts in flight at once
RANGE_PART_SIZE = 8 * MiB  # S3_RANGE_PART_SIZE
RANGE_CONCURRENCY = 16  # S3_RANGE_CONCURRENCY: connections per downloaded object
RANGE_STREAM_RATE = 400 * MiB  # S3_RANGE_STREAM_RATE: bytes/s of one connection that is enough

# --- S3's limits on multipart uploads ---------------------------------------------------------

MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
MIN_PART = 5 * MiB  # S3's minimum size of every part but the last


def memory_bound(
    concurrency: int = MAX_CONCURRENCY, *, part_concurrency: int = PART_CONCURRENCY
) -> int:
    """The bytes of object or file data a bulk call holds at most (README, "Memory a transfer
    uses"): ``concurrency`` transfers of :data:`HELD_PER_TRANSFER`, plus, where files are large
    enough for multipart uploads, ``part_concurrency`` parts of :data:`HELD_PER_PART` in
    flight. 69 MiB with the defaults."""
    return concurrency * HELD_PER_TRANSFER + part_concurrency * HELD_PER_PART
