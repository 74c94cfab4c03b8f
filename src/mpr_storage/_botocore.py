"""The botocore transport (``S3_FAST_PATH=0``): every request through one aiobotocore client.

The client's own retries are off (one attempt per call): the retry loop both transports share
retries instead, so that a failure is classified, waited on and reported the same way on both
paths. botocore still does the rest: credentials, proxies, CA bundle, region redirects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from ._config import StorageSettings
from ._errors import StorageError, map_errors
from ._files import LocalIO, digests
from ._models import ObjectInfo, unquote_etag
from ._transport import (
    Body,
    ByteProgress,
    CopySource,
    Part,
    Throttle,
    Transport,
    Upload,
)
from ._xml import ListPage

__all__ = ["BotocoreTransport"]

T = TypeVar("T")
_CHECKSUM_PARAMS = {"Content-MD5": "ContentMD5", "x-amz-checksum-crc32": "ChecksumCRC32"}
_READ_SIZE = 64 * 1024  # botocore body reads, gathered into blocks by AtomicFile.write_all


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

    signs_payload = False  # botocore hashes what it signs itself

    async def _call(
        self,
        where: tuple[str, str | None, str | None],
        call: Callable[[], Awaitable[T]],
        on_throttle: Throttle | None = None,
    ) -> T:
        async def attempt() -> T:
            with map_errors(*where, endpoint=self.endpoint_url):
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
        bucket: str,
        key: str,
        operation: str,
        if_none_match: str | None,
        read_ahead: int | None,  # aiobotocore's sessions keep aiohttp's default
    ) -> AsyncIterator[Body | None]:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_none_match:
            kwargs["IfNoneMatch"] = f'"{if_none_match}"'
        with map_errors(operation, bucket, key, endpoint=self.endpoint_url):
            try:
                response = await self._client.get_object(**kwargs)
            except Exception as exc:  # botocore answers 304 with a ClientError
                if _status(exc) != 304:
                    raise
                response = None
            if response is None:
                yield None
                return
            stream = response["Body"]
            async with stream:
                yield Body(
                    int(response["ContentLength"]),
                    unquote_etag(response.get("ETag")),
                    stream.read,
                    partial(stream.iter_chunks, _READ_SIZE),
                )

    async def _put(
        self,
        bucket: str,
        key: str,
        body: Upload,
        *,
        io: LocalIO,
        operation: str,
        progress: ByteProgress | None,
    ) -> str:
        content: Any = body.data
        if content is None:  # botocore reads (and, to sign it, hashes) the file in chunks
            os.lseek(body.fd, 0, os.SEEK_SET)
            content = open(body.fd, "rb", closefd=False)  # noqa: ASYNC230 - wraps an open fd
        try:
            with map_errors(operation, bucket, key, endpoint=self.endpoint_url):
                response = await self._client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=content,
                    ContentType=body.content_type,
                    **{_CHECKSUM_PARAMS[body.checksum[0]]: body.checksum[1]},
                    ContentLength=body.size,
                )
        finally:
            if body.data is None:
                content.close()
        if body.data is None and progress is not None:
            await progress.add(body.size)
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

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, *, operation: str
    ) -> str:
        md5, _ = digests(data, sha256=False)
        response = await self._call(
            (operation, bucket, key),
            partial(
                self._client.upload_part,
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=md5,
            ),
        )
        return str(response["ETag"])

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
