"""The botocore transport (``S3_FAST_PATH=0``): every request through one aiobotocore client.

The client's own retries are off (one attempt per call): the retry loop both transports share
retries instead, so that a failure is classified, waited on and reported the same way on both
paths. botocore still does the rest: credentials, proxies, CA bundle, region redirects.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from ._body import Body, refused_get
from ._botocore_errors import map_botocore_errors
from ._config import StorageSettings
from ._errors import StorageError
from ._models import ObjectInfo, unquote_etag
from ._payload import Chunks, CopySource, Part, Payload
from ._transport import Throttle, Transport
from ._xml import ListPage

__all__ = ["BotocoreTransport"]

T = TypeVar("T")
_CHECKSUM_PARAMS = {"Content-MD5": "ContentMD5", "x-amz-checksum-crc32": "ChecksumCRC32"}
_READ_SIZE = 64 * 1024  # a body's pieces: gathered into blocks by the writer
_GET_PARAMS = {"Range": "Range", "If-Match": "IfMatch", "If-None-Match": "IfNoneMatch"}


class BotocoreTransport(Transport):
    """S3 requests through an aiobotocore client created with ``total_max_attempts=1``."""

    def __init__(
        self, settings: StorageSettings, endpoint_url: str, credentials: Any, client: Any
    ) -> None:
        super().__init__(settings, endpoint_url, credentials)
        self._client = client
        # With a Content-MD5, botocore sends a PUT over HTTPS UNSIGNED-PAYLOAD; with a CRC-32
        # it did not compute itself it would hash and sign the body as well.
        self.upload_checksum = "md5"
        # Over plain HTTP botocore signs a body's SHA-256, which it reads synchronously.
        self._reads_bodies = not endpoint_url.lower().startswith("https:")

    signs_payload = False  # botocore hashes what it signs itself

    async def _call(
        self,
        where: tuple[str, str | None, str | None],
        call: Callable[[], Awaitable[T]],
        on_throttle: Throttle | None = None,
    ) -> T:
        async def attempt() -> T:
            with map_botocore_errors(*where, endpoint=self.endpoint_url):
                return await call()

        return await self.retry(attempt, on_throttle)

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        token: str | None,
        *,
        max_keys: int | None = None,
        operation: str = "list_objects",
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> ListPage:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token is not None:
            kwargs["ContinuationToken"] = token
        if max_keys is not None:
            kwargs["MaxKeys"] = max_keys
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        if delimiter is not None:
            kwargs["Delimiter"] = delimiter
        page = await self._call(
            (operation, bucket, prefix or None),
            partial(self._client.list_objects_v2, **kwargs),
        )
        objects = [
            ObjectInfo(
                item["Key"],
                int(item["Size"]),
                unquote_etag(item.get("ETag")),
                item.get("LastModified"),
            )
            for item in page.get("Contents", ())
        ]
        next_token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        prefixes = [str(p["Prefix"]) for p in page.get("CommonPrefixes", ()) if "Prefix" in p]
        return ListPage(objects, next_token or None, prefixes)

    async def head(self, bucket: str, key: str, *, operation: str) -> ObjectInfo:
        found = await self._call(
            (operation, bucket, key), partial(self._client.head_object, Bucket=bucket, Key=key)
        )
        return ObjectInfo(
            key,
            int(found.get("ContentLength", 0)),
            unquote_etag(found.get("ETag")),
            found.get("LastModified"),
            found.get("ContentType"),
            dict(found.get("Metadata") or {}),
        )

    @contextlib.asynccontextmanager
    async def _get(
        self,
        where: tuple[str, str, str],
        headers: dict[str, str],
        read_ahead: int | None,  # aiobotocore's sessions keep aiohttp's default
    ) -> AsyncIterator[Body | None]:
        operation, bucket, key = where
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        kwargs.update((_GET_PARAMS[name], value) for name, value in headers.items())
        with map_botocore_errors(operation, bucket, key, endpoint=self.endpoint_url):
            try:
                response = await self._client.get_object(**kwargs)
            except Exception as exc:  # botocore answers 304, 412 and 416 with a ClientError
                status = _status(exc)
                if status not in (304, 412, 416):
                    raise
                if status != 304:
                    answer = getattr(exc, "response", {}).get("ResponseMetadata", {})
                    raise refused_get(status, answer.get("HTTPHeaders") or {}, where) from exc
                response = None
            if response is None:
                yield None
                return
            stream = response["Body"]
            meta = response["ResponseMetadata"]
            async with stream:
                read = partial(_read, stream, where)
                yield Body(meta["HTTPStatusCode"], meta["HTTPHeaders"], read, where)

    async def _put(
        self,
        bucket: str,
        key: str,
        body: Payload,
        *,
        content_type: str,
        operation: str,
        if_none_match: str | None,
    ) -> str:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ContentType": content_type}
        if if_none_match is not None:
            kwargs["IfNoneMatch"] = if_none_match
        with map_botocore_errors(operation, bucket, key, endpoint=self.endpoint_url):
            async with self._body(body, operation) as params:
                response = await self._client.put_object(**kwargs, **params)
        return unquote_etag(response.get("ETag"))

    async def create_multipart(
        self, bucket: str, key: str, *, content_type: str, operation: str
    ) -> str:
        response = await self._call(
            (operation, bucket, key),
            partial(
                self._client.create_multipart_upload,
                Bucket=bucket,
                Key=key,
                ContentType=content_type,
            ),
        )
        return str(response["UploadId"])

    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, body: Payload, *, operation: str
    ) -> str:
        where = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        with map_botocore_errors(operation, bucket, key, endpoint=self.endpoint_url):
            async with self._body(body, operation) as params:
                response = await self._client.upload_part(**where, **params)
        return str(response["ETag"])

    @contextlib.asynccontextmanager
    async def _body(self, body: Payload, operation: str) -> AsyncIterator[dict[str, Any]]:
        """The body parameters of a PutObject or UploadPart: bytes as they are (botocore
        hashes what it signs), a stream with its length and checksum: over HTTPS as
        :class:`_Streamed` (sent as it is read, UNSIGNED-PAYLOAD), over plain HTTP as
        :class:`_Signed` (botocore reads its blocking reader to sign its SHA-256, then it is
        sent as it is read, like over HTTPS)."""
        content: Any = body.content
        reader = None
        if not isinstance(content, bytes):
            if not self._reads_bodies:
                content = _Streamed(content)
            elif body.blocking is not None:
                reader = body.blocking()
                content = _Signed(content, reader)
            else:
                raise StorageError(
                    "botocore signs a body sent over plain HTTP by reading it synchronously; "
                    "this one can only be streamed: use S3_FAST_PATH=1 or an https endpoint",
                    operation=operation,
                )
        header, value = body.checksum
        try:
            yield {"Body": content, "ContentLength": body.size, _CHECKSUM_PARAMS[header]: value}
        finally:
            if reader is not None:
                reader.close()

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        operation: str,
    ) -> str:
        response = await self._call(
            (operation, bucket, key),
            partial(
                self._client.complete_multipart_upload,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            ),
        )
        return unquote_etag(response.get("ETag"))

    async def abort_multipart(
        self, bucket: str, key: str, upload_id: str, *, operation: str
    ) -> None:
        try:
            await self._call(
                (operation, bucket, key),
                partial(
                    self._client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id
                ),
            )
        except StorageError as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise

    async def delete_batch(
        self, bucket: str, keys: list[str], *, operation: str
    ) -> list[tuple[str, str, str]]:
        response = await self._call(
            (operation, bucket, keys[0] if len(keys) == 1 else None),
            partial(
                self._client.delete_objects,
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            ),
        )
        return [
            (str(e.get("Key", "")), str(e.get("Code", "")), str(e.get("Message", "")))
            for e in response.get("Errors") or ()
        ]

    async def delete_one(self, bucket: str, key: str, *, operation: str) -> None:
        try:
            await self._call(
                (operation, bucket, key),
                partial(self._client.delete_object, Bucket=bucket, Key=key),
            )
        except FileNotFoundError:  # GCS answers 404 for a missing key; S3 deletes nothing
            pass

    async def list_buckets(self, *, operation: str = "list_buckets") -> list[str]:
        response = await self._call((operation, None, None), self._client.list_buckets)
        return [str(b["Name"]) for b in response.get("Buckets", ())]

    async def copy(
        self, source: CopySource, bucket: str, key: str, *, operation: str
    ) -> tuple[str, datetime | None]:
        response = await self._call(
            (operation, bucket, key),  # botocore raises a 200 answer's error itself
            partial(self._client.copy_object, Bucket=bucket, Key=key, **_copy_params(source)),
        )
        result = response.get("CopyObjectResult") or {}
        return unquote_etag(result.get("ETag")), result.get("LastModified")

    async def create_multipart_copy(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
        operation: str,
    ) -> str:
        kwargs: dict[str, Any] = {"Metadata": dict(metadata)}
        if content_type:
            kwargs["ContentType"] = content_type
        response = await self._call(
            (operation, bucket, key),
            partial(self._client.create_multipart_upload, Bucket=bucket, Key=key, **kwargs),
        )
        return str(response["UploadId"])

    async def upload_part_copy(
        self,
        source: CopySource,
        bucket: str,
        key: str,
        upload_id: str,
        part: Part,
        *,
        operation: str,
    ) -> str:
        number, first, last = part
        response = await self._call(
            (operation, bucket, key),
            partial(
                self._client.upload_part_copy,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySourceRange=f"bytes={first}-{last}",
                **_copy_params(source),
            ),
        )
        return str((response.get("CopyPartResult") or {}).get("ETag", ""))


async def _read(stream: Any, where: tuple[str, str, str], n: int) -> bytes:
    """A piece of the body (``n`` > 0: at most 64 KiB, as aiohttp holds at most twice what is
    asked), or all of the rest (``n`` < 0); botocore's and aiohttp's errors as ours."""
    with map_botocore_errors(*where):
        return bytes(await stream.read(_READ_SIZE if n > 0 else None))


class _Streamed:
    """A streamed body as botocore and aiohttp take it: ``read`` (an attribute botocore's
    parameter check wants of a stream; async, as aiobotocore's chunked-checksum wrapper reads
    it), ``seek``/``tell`` at its start (what botocore's CRT signer wants of a body it does
    not read), and async iteration (what aiohttp sends). Each request makes a fresh one, so
    a retry reads the body from its start."""

    def __init__(self, chunks: Chunks) -> None:
        self._chunks = chunks()
        self._held = b""
        self._started = False

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only to the start, before anything was read (botocore rewinds a body it sends
        again; its retries are off: ours make a fresh body)."""
        if (offset, whence) != (0, 0) or self._started:
            raise OSError(0, "a streamed body is read once")
        return 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._started = True
        return self._chunks

    async def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes (all of the rest for ``None``); ``b""`` at the end."""
        self._started = True
        while size is None or len(self._held) < size:
            chunk = await anext(self._chunks, b"")
            if not chunk:
                break
            self._held += chunk
        cut = len(self._held) if size is None else size
        out, self._held = self._held[:cut], self._held[cut:]
        return out


class _Signed:
    """A streamed body botocore signs over plain HTTP: its signer reads ``reader``
    synchronously (``read``, ``seek``, ``tell``) to hash it; aiohttp then sends the chunks,
    as it sends a :class:`_Streamed` (async iteration). Not an ``io.IOBase``: aiohttp reads
    one of those in its executor's threads, whose heaps (one per thread) kept the blocks, and
    64 uploads at once peaked at 51-77 MiB instead of 28-34."""

    def __init__(self, chunks: Chunks, reader: io.IOBase) -> None:
        self._chunks = chunks
        self.read = reader.read
        self.seek = reader.seek
        self.tell = reader.tell

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()


def _copy_params(source: CopySource) -> dict[str, Any]:
    params: dict[str, Any] = {"CopySource": {"Bucket": source.bucket, "Key": source.key}}
    if source.etag:
        params["CopySourceIfMatch"] = f'"{source.etag}"'
    return params


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None
