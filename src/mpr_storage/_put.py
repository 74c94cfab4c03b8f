"""Uploads of one file: one checked PUT or a multipart upload of parts read at their offsets
(files are read, hashed and counted here; the transport only sends the bodies)."""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from stat import S_ISDIR

import anyio

from ._checksums import CHECKSUM_HEADERS, hash_fd, part_size_for
from ._client import BaseStorage
from ._errors import LocalFileError
from ._files import LocalIO, PreadReader, fd_chunks, open_regular, read_fd
from ._keys import check_bucket_and_key
from ._models import BytesCallback, ObjectInfo
from ._payload import Payload
from ._progress import ByteProgress
from ._sizes import SMALL_BODY
from ._transport import Throttle, Transport

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "guess_content_type",
    "put_opened",
    "put_parts",
    "upload_file",
]


def guess_content_type(name: str) -> str:
    """The MIME type for a file or key name (``application/octet-stream`` if unknown), as
    :func:`mimetypes.guess_type` gives it; looked up once per ending (the last two suffixes,
    all it reads: ``.tar.gz`` is a gzipped tar), not once per frame."""
    if ":" not in name:  # else mimetypes reads a URL scheme: ask it about the whole name
        name = name[name.rfind("/") + 1 :]
        start = len(name) - len(name.lstrip("."))  # leading dots start no suffix
        last = name.rfind(".", start)
        if last > start:
            before = name.rfind(".", start, last)
            name = "x" + name[before if before > start else last :]
    return _guess_type(name)


@functools.lru_cache(maxsize=128)
def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


async def upload_file(
    storage: BaseStorage,
    src: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    on_progress: BytesCallback | None = None,
) -> ObjectInfo:
    """Upload the file ``src`` to ``key`` (boto3's argument order) and describe the object.

    The file is opened once. Under ``S3_MULTIPART_THRESHOLD`` bytes it goes up in one streamed
    PUT whose checksum (CRC-32 or Content-MD5, as the provider's profile says) the server
    checks; a larger one in parts of ``S3_MULTIPART_CHUNKSIZE`` bytes, read at their offsets
    and sent ``S3_PART_CONCURRENCY`` (10) at once, each over its own connection, each hashed
    then streamed from the file: ~512 KiB per part in flight, never a whole part (~5 MiB with
    the defaults). A failed or cancelled multipart upload is aborted, so no half-written
    object remains; an existing object is replaced only when the upload completes. A file
    that changes size while it is uploaded fails the upload.

    Args:
        content_type: defaults to a guess from the key's extension.
        on_progress: ``on_progress(done_bytes, total_bytes)`` as for :func:`download_file`; a
            multipart upload reports each part once it is sent, a single PUT as it streams.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        IsADirectoryError: ``src`` is a directory.
        LocalFileError: ``src`` changed size while it was uploaded, or could not be read.
        BucketNotFoundError: the bucket does not exist (where the provider does not create it).
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    op = "upload_file"
    check_bucket_and_key(bucket, key, operation=op)
    path = Path(src)
    stat = await anyio.Path(path).stat()  # FileNotFoundError for a missing file
    if S_ISDIR(stat.st_mode):
        raise IsADirectoryError(f"upload_file s3://{bucket}/{key}: {path} is a directory")
    content_type = content_type or guess_content_type(key)
    transport = await storage.transport()
    settings = storage.settings
    progress = ByteProgress(on_progress)
    io = LocalIO()
    # Opened once and read as it is opened (one trip for a small file): the size sent is the
    # opened file's.
    opened = partial(open_regular, path, read_up_to=SMALL_BODY)
    fd, size, data = await io.run(opened, SMALL_BODY)
    try:
        if size < settings.multipart_threshold:
            etag = await put_opened(
                transport,
                bucket,
                key,
                fd,
                size,
                data,
                content_type=content_type,
                io=io,
                operation=op,
                path=path,
                progress=progress,
            )
        else:
            progress.start(size)
            etag = await put_parts(
                transport,
                bucket,
                key,
                fd,
                size,
                part_size=part_size_for(size, settings.multipart_chunksize),
                content_type=content_type,
                io=io,
                operation=op,
                slots=anyio.CapacityLimiter(settings.part_concurrency),
                progress=progress,
                path=path,
            )
    finally:
        os.close(fd)
    await progress.finish()
    return ObjectInfo(key, size, etag)


async def put_opened(
    transport: Transport,
    bucket: str,
    key: str,
    fd: int,
    size: int,
    data: bytes | None,
    *,
    content_type: str,
    io: LocalIO,
    operation: str,
    path: str | os.PathLike[str],
    progress: ByteProgress | None = None,
    on_throttle: Throttle | None = None,
) -> str:
    """One PutObject of the open file's first ``size`` bytes; the ETag back. Up to 1 MiB
    (``data``: read already) it is sent as bytes; a larger file is hashed in one pass, then
    streamed from the file in 256 KiB reads at their offsets, each attempt from its first
    byte (``progress`` starts again with it); a transport whose client hashes a body itself
    reads it once more through a :class:`~._files.PreadReader` to sign it. A file that fails
    a read or changes size meanwhile fails the PUT at once, not retried."""
    if data is None and size <= SMALL_BODY:
        data = await io.run(partial(read_fd, fd, size), size)
    if data is not None:
        if progress is not None:
            progress.start(size)
        etag = await transport.put(
            bucket,
            key,
            data,
            content_type=content_type,
            operation=operation,
            on_throttle=on_throttle,
        )
        if progress is not None:
            await progress.add(size)
        return etag
    kind, sign = transport.upload_checksum, transport.signs_payload
    hashed = partial(hash_fd, fd, size, checksum=kind, sha256=sign)
    value, sha256 = await io.run(hashed, size)
    blame = partial(_changed, path=path, operation=operation, bucket=bucket, key=key)
    sent = _FileBody(fd, size, io, blame=blame, progress=progress)
    blocking = partial(PreadReader, fd, size)
    checksum = (CHECKSUM_HEADERS[kind], value)
    payload = Payload(size, checksum, sha256, sent.chunks, blocking, sent.failed)
    if progress is not None:
        progress.start(size)
    put = partial(transport.put, content_type=content_type, operation=operation)
    return await put(bucket, key, payload, on_throttle=on_throttle)


async def put_parts(
    transport: Transport,
    bucket: str,
    key: str,
    fd: int,
    size: int,
    *,
    part_size: int,
    content_type: str,
    io: LocalIO,
    operation: str,
    slots: anyio.CapacityLimiter,
    path: Path,
    progress: ByteProgress | None = None,
    on_throttle: Throttle | None = None,
) -> str:
    """A multipart upload of the open file's ``size`` bytes in ``part_size`` parts; the ETag
    back. Each part takes one of ``slots`` (shared by the large files of a bulk call), is
    hashed in one worker-thread call that reads it with ``pread`` at its offset, then sent as
    it is read again from the file in 256 KiB chunks (or through a
    :class:`~._files.PreadReader` where the transport's client reads bodies itself); a
    retry reads it again, and a part changed meanwhile fails its checksum on the server. So
    a part is never held whole: at most ``slots.total_tokens`` x ~512 KiB of parts are in
    memory (a part held as bytes was copied once more on its way to the socket: ~2 x part
    size each, 200 MiB at the defaults). ``progress`` counts each part once it is sent.
    The first failure cancels the other parts; any failure or cancellation aborts the
    upload (shielded), so no part is left behind."""
    upload_id = await transport.create_multipart(
        bucket, key, content_type=content_type, operation=operation
    )
    count = -(-size // part_size)
    etags = [""] * count
    kind, sign = transport.part_checksum, transport.signs_payload
    header = CHECKSUM_HEADERS[kind]
    held: set[object] = set()  # slots taken for parts; all given back, whatever happens

    def release(token: object) -> None:
        if token in held:
            held.discard(token)
            slots.release_on_behalf_of(token)

    changed = partial(_changed, path=path, operation=operation, bucket=bucket, key=key)

    async def send(number: int, token: object) -> None:
        try:
            offset = (number - 1) * part_size
            n = min(part_size, size - offset)
            try:
                hashed = partial(hash_fd, fd, n, checksum=kind, sha256=sign, offset=offset)
                value, sha256 = await io.run(hashed, n)
            except OSError as exc:
                raise changed(exc) from exc
            sent = _FileBody(fd, n, io, blame=changed, offset=offset, whole=size)
            blocking = partial(PreadReader, fd, n, start=offset)
            payload = Payload(n, (header, value), sha256, sent.chunks, blocking, sent.failed)
            etags[number - 1] = await transport.upload_part(
                bucket,
                key,
                upload_id,
                number,
                payload,
                operation=operation,
                on_throttle=on_throttle,
            )
        finally:
            release(token)
        if progress is not None:
            await progress.add(n)

    try:
        try:
            async with anyio.create_task_group() as tg:
                for number in range(1, count + 1):
                    token = object()
                    await slots.acquire_on_behalf_of(token)
                    held.add(token)
                    tg.start_soon(send, number, token)
        except BaseExceptionGroup as group:
            failure = _first_failure(group)
            if failure is None:
                raise
            raise failure from None
        finally:
            for token in list(held):  # a part cancelled before it started
                release(token)
        if (await io.run(partial(os.fstat, fd), 0)).st_size != size:
            raise changed(None)  # it grew: what was sent is not the file
        return await transport.complete_multipart(
            bucket, key, upload_id, list(enumerate(etags, 1)), operation=operation
        )
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await transport.abort_multipart(bucket, key, upload_id, operation=operation)
        raise


def _changed(
    exc: OSError | None, path: str | os.PathLike[str], operation: str, bucket: str, key: str
) -> LocalFileError:
    """The error of an upload whose file failed it: changed size, or a failing disk."""
    reason = "file changed size while it was uploaded"
    if exc is not None and exc.errno:  # a failing disk, not a changed file
        reason = exc.strerror or str(exc)
    return LocalFileError(reason, path=path, operation=operation, bucket=bucket, key=key)


class _FileBody:
    """A body streamed from ``size`` bytes of the open file ``fd`` at ``offset`` (a fresh pass
    per attempt, counted in ``progress``) that can tell whether the file, not the wire,
    failed the request that sent it: ``blame`` makes that error, which is not retried."""

    def __init__(
        self,
        fd: int,
        size: int,
        io: LocalIO,
        *,
        blame: Callable[[OSError | None], LocalFileError],
        offset: int = 0,
        whole: int | None = None,
        progress: ByteProgress | None = None,
    ) -> None:
        self._fd, self._size, self._io, self._offset = fd, size, io, offset
        self._whole = size if whole is None else whole  # the file's size when it was opened
        self._blame = blame
        self._progress = progress
        self._unread: OSError | None = None  # a read that failed while the body was sent

    async def chunks(self) -> AsyncIterator[bytes]:
        progress = self._progress
        if progress is not None:
            progress.start(self._size)
        try:
            async for chunk in fd_chunks(self._fd, self._size, self._io, offset=self._offset):
                if progress is not None:
                    await progress.add(len(chunk))
                yield chunk
        except OSError as exc:
            self._unread = exc
            raise

    async def failed(self) -> LocalFileError | None:
        """The file's error, if a read of it failed while the body was sent or it changed size
        (read by the transport's client, whose errors are its own); ``None`` if the file is
        as it was."""
        if self._unread is not None:
            return self._blame(self._unread)
        if (await self._io.run(partial(os.fstat, self._fd), 0)).st_size != self._whole:
            return self._blame(None)
        return None


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The error that failed a multipart upload (the other parts were cancelled because of
    it), or ``None`` when the group holds only cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    failures = [e for e in group.exceptions if not isinstance(e, cancelled)]
    if not failures:
        return None
    first = failures[0]
    return _first_failure(first) if isinstance(first, BaseExceptionGroup) else first
