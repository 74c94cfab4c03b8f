"""The bulk hot path: object GET/PUT signed with botocore's SigV4 signer, sent with aiohttp.

botocore's per-request pipeline (endpoint rules, event hooks, request objects, response
parsing) costs ~1 ms of CPU per request; signing is a small part of it. For the many small
requests of a frame-cache transfer we keep botocore's credentials, configuration and signer,
and send the requests on one aiohttp session whose pool is sized to the concurrency.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from yarl import URL

from ._client import BaseStorage
from ._errors import StorageError, error_for_code, map_errors

__all__ = ["UNSIGNED_PAYLOAD", "FastS3"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class _Signer(S3SigV4Auth):  # type: ignore[misc]  # botocore ships no types
    # The payload hash is computed by the caller (in a worker thread for uploads), not here.
    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_hash"])


class FastS3:
    """Signs and sends single-object requests for one storage; create with :meth:`open`."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint_url: str,
        region: str,
        credentials: ReadOnlyCredentials,
        *,
        virtual_host: bool,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._http = http
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._base = parts.path.rstrip("/")
        self._virtual = virtual_host
        self._signer = _Signer(credentials, "s3", region)

    @classmethod
    async def open(cls, storage: BaseStorage) -> FastS3 | None:
        """The fast path for ``storage``, or ``None`` where it can't be used (anonymous
        access: requests must then go through botocore)."""
        client = await storage.client()
        creds = await storage.credentials()
        if creds is None:
            return None
        settings = storage.settings
        return cls(
            await storage.http_session(),
            client.meta.endpoint_url,
            settings.signing_region,
            creds,
            virtual_host=settings.url_style == "virtual",
        )

    def bucket_url(self, bucket: str) -> str:
        """The bucket's URL (virtual-host style where configured and the name allows it)."""
        if self._virtual and _DNS_BUCKET.match(bucket):
            return f"{self._scheme}://{bucket}.{self._netloc}{self._base}/"
        return f"{self._scheme}://{self._netloc}{self._base}/{bucket}/"

    def url(self, bucket: str, key: str) -> str:
        """An object's URL, percent-encoded exactly as it is signed."""
        return self.bucket_url(bucket) + quote(key, safe="/~")

    def sign(
        self, method: str, url: str, payload_hash: str, headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The headers (``Authorization``, ``X-Amz-*`` and ``headers``) for one request."""
        request = AWSRequest(method=method, url=url, headers=headers or {})
        request.context["payload_hash"] = payload_hash
        self._signer.add_auth(request)
        return dict(request.headers.items())

    async def list(self, bucket: str, prefix: str) -> AsyncIterator[tuple[str, int, str, str]]:
        """ListObjectsV2, every page: ``(key, size, etag, last_modified)`` in key order."""
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if token is not None:
                params["continuation-token"] = token
            query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
            url = f"{self.bucket_url(bucket)}?{query}"
            headers = self.sign("GET", url, UNSIGNED_PAYLOAD)
            with map_errors("list_objects", bucket, prefix or None):
                async with self._http.get(URL(url, encoded=True), headers=headers) as response:
                    body = await response.read()
                if response.status != 200:
                    raise _error(response.status, body, "list_objects", bucket, None)
            root = ElementTree.fromstring(body)
            for item in root.iterfind(f"{_NS}Contents"):
                yield (
                    unquote_plus(item.findtext(f"{_NS}Key", "")),  # as botocore decodes it
                    int(item.findtext(f"{_NS}Size", "0")),
                    item.findtext(f"{_NS}ETag", "").strip('"'),
                    item.findtext(f"{_NS}LastModified", ""),
                )
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    @asynccontextmanager
    async def get(self, bucket: str, key: str, *, operation: str) -> AsyncIterator[Any]:
        """GET ``key``; yields the aiohttp response (status 200) for the caller to read."""
        url = self.url(bucket, key)
        headers = self.sign("GET", url, UNSIGNED_PAYLOAD)
        with map_errors(operation, bucket, key):
            async with self._http.get(URL(url, encoded=True), headers=headers) as response:
                if response.status != 200:
                    raise _error(response.status, await response.read(), operation, bucket, key)
                yield response

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        md5_b64: str,
        sha256_hex: str,
        operation: str,
    ) -> str:
        """PUT ``data`` to ``key`` (integrity-checked with Content-MD5); returns the ETag."""
        url = self.url(bucket, key)
        headers = self.sign(
            "PUT",
            url,
            sha256_hex,
            {"Content-Type": content_type, "Content-MD5": md5_b64},
        )
        with map_errors(operation, bucket, key):
            async with self._http.put(URL(url, encoded=True), data=data, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    raise _error(r.status, body, operation, bucket, key)
                return r.headers.get("ETag", "").strip('"')


def _error(status: int, body: bytes, operation: str, bucket: str, key: str | None) -> StorageError:
    match = _CODE.search(body)
    if match:
        code = match.group(1).decode("utf-8", "replace")
    elif status == 404:
        code = "NoSuchKey" if key else "NoSuchBucket"
    else:
        code = str(status)
    found = _MESSAGE.search(body)
    message = found.group(1).decode("utf-8", "replace") if found else f"HTTP {status}"
    return error_for_code(code, message, operation=operation, bucket=bucket, key=key)
