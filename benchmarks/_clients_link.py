"""The clients only the provider-link scenarios compare with (run by ``_clients.py``): boto3's
managed transfers, obstore fetching 16 ranges at once, and the AWS CRT's S3 client."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from _clients import Client, Obstore, _rel


class Obstore16(Obstore):
    """obstore fetching a large object as 16 byte ranges at once (``get_range_async``), each
    written with ``pwrite`` at its offset into one preallocated file: what s3transfer and the
    CRT do, with obstore's Rust HTTP stack."""

    RANGES = 16

    async def large(self) -> tuple[int, int]:
        meta = await self.obs.head_async(self.store, self.spec["key"])
        size = int(meta["size"])
        part = -(-size // self.RANGES)
        fd = os.open(self.spec["dest"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)

            async def one(start: int) -> int:
                end = min(size, start + part)
                data = await self.obs.get_range_async(
                    self.store, self.spec["key"], start=start, end=end
                )
                view = memoryview(data)
                written = 0
                while written < len(view):
                    written += os.pwrite(fd, view[written:], start + written)
                return len(view)

            sizes = await asyncio.gather(*(one(start) for start in range(0, size, part)))
        finally:
            os.close(fd)
        return 1, sum(sizes)


class Boto3(Client):
    """boto3's managed transfers (s3transfer: 8 MiB parts on 10 threads), the calls
    mpr_storage's ``download_file`` / ``upload_file`` replace; blocking, in the timed work."""

    async def setup(self) -> None:
        import boto3
        from botocore.config import Config

        spec = self.spec
        self.s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=spec["endpoint"],
            aws_access_key_id=spec["access_key"],
            aws_secret_access_key=spec["secret_key"],
            region_name=spec["region"],
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )  # TLS: AWS_CA_BUNDLE from the environment, as botocore reads it

    async def close(self) -> None:
        self.s3.close()

    async def large(self) -> tuple[int, int]:
        self.s3.download_file(self.bucket, self.spec["key"], self.spec["dest"])
        return 1, os.path.getsize(self.spec["dest"])

    async def large_up(self) -> tuple[int, int]:
        self.s3.upload_file(self.spec["src_file"], self.bucket, self.spec["key"])
        return 1, os.path.getsize(self.spec["src_file"])


class AwsCrt(Client):
    """The AWS CRT's S3 client (``awscrt.s3``, C): it splits large objects into parts on many
    connections itself. It reaches a custom endpoint through the request's Host header (boto3's
    own CRT path always goes to AWS). Path-style requests; the LIST of the prefetch is signed
    ``ListObjectsV2`` pages through the same client."""

    async def setup(self) -> None:
        from urllib.parse import urlsplit

        from awscrt import auth, io, s3

        spec = self.spec
        self.crt = s3
        url = urlsplit(spec["endpoint"])
        self.host = url.netloc
        https = url.scheme == "https"
        tls_mode = s3.S3RequestTlsMode.ENABLED if https else s3.S3RequestTlsMode.DISABLED
        tls = None
        ca = os.environ.get("AWS_CA_BUNDLE")
        if url.scheme == "https":
            options = io.TlsContextOptions()
            if ca:
                options.override_default_trust_store_from_path(None, ca)
            tls = io.ClientTlsContext(options).new_connection_options()
        credentials = auth.AwsCredentialsProvider.new_static(spec["access_key"], spec["secret_key"])
        self.client = s3.S3Client(
            region=spec["region"],
            tls_mode=tls_mode,
            tls_connection_options=tls,
            signing_config=s3.create_default_s3_signing_config(
                region=spec["region"], credential_provider=credentials
            ),
            part_size=8 * 1024 * 1024,
            throughput_target_gbps=10.0,
        )

    async def close(self) -> None:
        del self.client  # the native client shuts down when its last reference goes

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Start one meta request; returns its ``finished_future`` (concurrent.futures)."""
        from awscrt.http import HttpHeaders, HttpRequest

        headers = HttpHeaders([("Host", self.host)])
        if "send_filepath" in kwargs:
            headers.add("Content-Length", str(os.path.getsize(kwargs["send_filepath"])))
        request = HttpRequest(method, path, headers)
        meta = self.client.make_request(request=request, **kwargs)
        return meta.finished_future

    async def _wait(self, futures: list[Any]) -> None:
        for future in futures:
            await asyncio.wrap_future(future)

    def _path(self, key: str) -> str:
        from urllib.parse import quote

        return f"/{self.bucket}/{quote(key, safe='/~')}"

    async def large(self) -> tuple[int, int]:
        future = self._request(
            "GET",
            self._path(self.spec["key"]),
            type=self.crt.S3RequestType.GET_OBJECT,
            recv_filepath=self.spec["dest"],
        )
        await self._wait([future])
        return 1, os.path.getsize(self.spec["dest"])

    async def large_up(self) -> tuple[int, int]:
        future = self._request(
            "PUT",
            self._path(self.spec["key"]),
            type=self.crt.S3RequestType.PUT_OBJECT,
            send_filepath=self.spec["src_file"],
        )
        await self._wait([future])
        return 1, os.path.getsize(self.spec["src_file"])

    async def _list(self, prefix: str) -> list[str]:
        import xml.etree.ElementTree as ET
        from urllib.parse import urlencode

        keys: list[str] = []
        token = ""
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            body = bytearray()
            future = self._request(
                "GET",
                f"/{self.bucket}?{urlencode(query)}",
                type=self.crt.S3RequestType.DEFAULT,
                operation_name="ListObjectsV2",
                on_body=lambda chunk, offset, body=body, **kw: body.extend(chunk),
            )
            await self._wait([future])
            root = ET.fromstring(bytes(body))
            keys += [c.findtext(f"{ns}Key") or "" for c in root.iter(f"{ns}Contents")]
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return keys

    async def prefetch(self) -> tuple[int, int]:
        prefix, dest = self.spec["prefix"], self.spec["dest"]
        keys = await self._list(prefix)
        os.makedirs(dest, exist_ok=True)
        paths = [os.path.join(dest, _rel(key, prefix)) for key in keys]
        # The CRT schedules its requests itself (connections from its throughput target).
        futures = [
            self._request(
                "GET", self._path(key), type=self.crt.S3RequestType.GET_OBJECT, recv_filepath=path
            )
            for key, path in zip(keys, paths, strict=True)
        ]
        await self._wait(futures)
        return len(keys), sum(os.path.getsize(p) for p in paths)
