"""The fast transport (``S3_FAST_PATH=1``): each S3 call as one signed aiohttp request.

botocore's per-request pipeline (endpoint rules, event hooks, request objects, response
parsing) costs ~1 ms of CPU per request, and its signer alone ~50 us. Here each call is one
request of :class:`~._http.SignedRequests` (SigV4 in botocore's canonical form, a cached
signing key, one aiohttp session whose pool is sized to the concurrency), parsed by
:mod:`._xml` and retried by the loop both transports share.
"""

from __future__ import annotations

import email.utils
import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar

import aiohttp

from ._body import Body
from ._checksums import digests
from ._config import StorageSettings
from ._errors import error_for_code, request_ids
from ._fast_get import FastGet
from ._http import SignedRequests, escape, query_string
from ._models import ObjectInfo, unquote_etag
from ._payload import CopySource, Part, Payload
from ._sigv4 import UNSIGNED_PAYLOAD
from ._transport import Transport
from ._xml import (
    ListPage,
    error_fields,
    parse_buckets,
    parse_completion,
    parse_copy_result,
    parse_delete_errors,
    parse_list,
    parse_upload_id,
)

__all__ = ["FastTransport"]

T = TypeVar("T")

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_META = "x-amz-meta-"


class FastTransport(Transport):
    """The :class:`~._transport.Transport` on signed aiohttp requests."""

    def __init__(
        self,
        settings: StorageSettings,
        endpoint_url: str,
        credentials: Any,
        http: aiohttp.ClientSession | None,
    ) -> None:
        super().__init__(settings, endpoint_url, credentials)
        self._wire = SignedRequests(settings, endpoint_url, credentials, http)
        # As botocore signs S3 uploads: over HTTPS, an object's body (PutObject, UploadPart)
        # that carries its checksum is sent with an UNSIGNED-PAYLOAD signature (TLS and the
        # checksum protect it; its SHA-256 is not computed); over plain HTTP the signature
        # covers its SHA-256. XML request documents are always signed.
        self.signs_payload = not endpoint_url.lower().startswith("https:")

    def _payload_hash(self, sha256: str | None) -> str:
        return sha256 if sha256 is not None else UNSIGNED_PAYLOAD

    async def _call(
        self,
        parse: Callable[[aiohttp.ClientResponse, bytes], T],
        method: str,
        bucket: str,
        key: str = "",
        *,
        operation: str,
        body: bytes | None = None,
        retry: bool = True,
        **send: Any,
    ) -> T:
        """One request whose answer is read whole and parsed, retried (unless the caller
        retries itself); a ``body`` (an XML document) goes with its Content-MD5 and payload
        hash."""
        if body is not None:
            md5_b64, sha256 = digests(body, sha256=True)  # not an object's body: signed
            send.update(data=body, payload_hash=sha256)
            send["extra"] = {**send.get("extra", {}), "Content-MD5": md5_b64}

        async def attempt() -> T:
            async with self._wire.send(method, bucket, key, operation=operation, **send) as r:
                return parse(r, await r.read())

        return await self.retry(attempt, None) if retry else await attempt()

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
        params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token is not None:
            params["continuation-token"] = token
        if max_keys is not None:
            params["max-keys"] = str(max_keys)
        if start_after is not None:
            params["start-after"] = start_after
        if delimiter is not None:
            params["delimiter"] = delimiter
        return await self._call(
            lambda _, body: parse_list(body, operation=operation, bucket=bucket),
            "GET",
            bucket,
            operation=operation,
            query=query_string(params),
            label=prefix,
        )

    async def head(self, bucket: str, key: str, *, operation: str) -> ObjectInfo:
        return await self._call(
            lambda r, _: _head_info(key, r.headers), "HEAD", bucket, key, operation=operation
        )

    def _get(
        self, where: tuple[str, str, str], headers: dict[str, str], read_ahead: int | None
    ) -> AbstractAsyncContextManager[Body | None]:
        return FastGet(self._wire, where, headers, read_ahead)

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
        header, value = body.checksum
        extra = {"Content-Type": content_type, header: value}
        if if_none_match is not None:
            extra["If-None-Match"] = if_none_match
        return await self._send_body(
            lambda r, _: unquote_etag(r.headers.get("ETag")),
            bucket,
            key,
            body,
            extra,
            operation=operation,
        )

    async def create_multipart(
        self, bucket: str, key: str, *, content_type: str, operation: str
    ) -> str:
        return await self._create_upload(bucket, key, {"Content-Type": content_type}, operation)

    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, body: Payload, *, operation: str
    ) -> str:
        header, value = body.checksum
        return await self._send_body(
            lambda r, _: str(r.headers.get("ETag", "")),
            bucket,
            key,
            body,
            {header: value},
            operation=operation,
            query=query_string({"partNumber": str(number), "uploadId": upload_id}),
        )

    async def _send_body(
        self,
        parse: Callable[[aiohttp.ClientResponse, bytes], T],
        bucket: str,
        key: str,
        body: Payload,
        extra: dict[str, str],
        *,
        operation: str,
        query: str = "",
    ) -> T:
        """One PUT of an object's body, not retried (the caller's loop retries): bytes as
        they are, a stream with its Content-Length (never chunked) from a fresh pass, both
        over 1 MiB after ``Expect: 100-continue``; the signature covers the body's SHA-256
        where :attr:`signs_payload`."""
        if not isinstance(body.content, bytes):
            extra["Content-Length"] = str(body.size)
        return await self._call(
            parse,
            "PUT",
            bucket,
            key,
            operation=operation,
            query=query,
            extra=extra,
            data=body.content,
            payload_hash=self._payload_hash(body.sha256),
            retry=False,
        )

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        operation: str,
    ) -> str:
        xml = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for n, etag in parts
        )
        return await self._call(
            lambda r, answer: parse_completion(
                answer, operation=operation, bucket=bucket, key=key, ids=request_ids(r.headers)
            ),
            "POST",
            bucket,
            key,
            operation=operation,
            query=query_string({"uploadId": upload_id}),
            body=f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode(),
        )

    async def abort_multipart(
        self, bucket: str, key: str, upload_id: str, *, operation: str
    ) -> None:
        await self._call(
            lambda _r, _b: None,
            "DELETE",
            bucket,
            key,
            operation=operation,
            query=query_string({"uploadId": upload_id}),
            ok=(200, 204, 404),
        )

    async def delete_batch(
        self, bucket: str, keys: list[str], *, operation: str
    ) -> list[tuple[str, str, str]]:
        objects = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
        return await self._call(
            lambda _, answer: parse_delete_errors(answer, operation=operation, bucket=bucket),
            "POST",
            bucket,
            operation=operation,
            query="delete=",
            extra={"Content-Type": "application/xml"},
            body=f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode(),
        )

    async def delete_one(self, bucket: str, key: str, *, operation: str) -> None:
        def deleted(r: aiohttp.ClientResponse, answer: bytes) -> None:
            if r.status == 404 and error_fields(answer)[0] == "NoSuchBucket":
                request_id, host_id = request_ids(r.headers)
                raise error_for_code(
                    "NoSuchBucket",
                    "no such bucket",
                    operation=operation,
                    bucket=bucket,
                    request_id=request_id,
                    host_id=host_id,
                )

        await self._call(deleted, "DELETE", bucket, key, operation=operation, ok=(200, 204, 404))

    async def list_buckets(self, *, operation: str = "list_buckets") -> list[str]:
        return await self._call(
            lambda _, body: parse_buckets(body, operation=operation), "GET", "", operation=operation
        )

    async def copy(
        self, source: CopySource, bucket: str, key: str, *, operation: str
    ) -> tuple[str, datetime | None]:
        etag, modified = await self._copy("CopyObjectResult", source, bucket, key, operation)
        return unquote_etag(etag), modified

    async def create_multipart_copy(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
        operation: str,
    ) -> str:
        extra = {f"{_META}{name}": value for name, value in metadata.items()}
        if content_type:
            extra["Content-Type"] = content_type
        return await self._create_upload(bucket, key, extra, operation)

    async def _create_upload(
        self, bucket: str, key: str, extra: dict[str, str], operation: str
    ) -> str:
        """CreateMultipartUpload with these headers (content type, metadata); its upload id."""
        return await self._call(
            lambda _, body: parse_upload_id(body, operation=operation, bucket=bucket),
            "POST",
            bucket,
            key,
            operation=operation,
            query="uploads=",
            extra=extra,
            payload_hash=_EMPTY_SHA256,
        )

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
        query = query_string({"partNumber": str(number), "uploadId": upload_id})
        extra = {"x-amz-copy-source-range": f"bytes={first}-{last}"}
        return (await self._copy("CopyPartResult", source, bucket, key, operation, query, extra))[0]

    async def _copy(
        self,
        result: str,
        source: CopySource,
        bucket: str,
        key: str,
        operation: str,
        query: str = "",
        extra: dict[str, str] | None = None,
    ) -> tuple[str, datetime | None]:
        return await self._call(
            lambda r, answer: parse_copy_result(
                answer,
                result,
                operation=operation,
                bucket=bucket,
                key=key,
                ids=request_ids(r.headers),
            ),
            "PUT",
            bucket,
            key,
            operation=operation,
            query=query,
            extra={**source.headers(), **(extra or {})},
            payload_hash=_EMPTY_SHA256,
        )


def _head_info(key: str, headers: Mapping[str, str]) -> ObjectInfo:
    modified = headers.get("Last-Modified")
    return ObjectInfo(
        key,
        int(headers.get("Content-Length", "0")),
        unquote_etag(headers.get("ETag")),
        email.utils.parsedate_to_datetime(modified) if modified else None,
        headers.get("Content-Type"),
        {
            name[len(_META) :]: value
            for name, value in headers.items()
            if name.lower().startswith(_META)
        },
    )
