"""Presigned URLs and browser POST policies for one store, signed offline (no request sent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ._http import SignedRequests

__all__ = ["Presigner"]


class Presigner(SignedRequests):
    """The signer of :class:`~._http.SignedRequests` (credentials, regions remembered per
    bucket, addressing) writing presigned URLs and POST policies instead of sending requests;
    built without a session."""

    async def presign(
        self,
        method: str,
        bucket: str,
        key: str,
        expires: int,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        """A presigned URL for ``method`` on ``key``, signed offline (no request is sent);
        ``params``: more query parameters, ``headers``: headers the request must carry (both
        signed). ``None`` where botocore's rules for virtual-host addressing are not mirrored
        here (a bucket name with dots, an IP-address endpoint): its presigner decides those."""
        if self._declines(bucket):
            return None
        where = ("get_presigned_url", bucket, key)
        signer = await self._signer(self._regions.get(bucket, self._region), where)
        assert signer is not None  # only built where there are credentials
        host, base = self._locate(bucket)
        path = base + quote(key, safe="/~")
        query = signer.presign(method, host, path, expires, params=params, headers=headers)
        return f"{self._scheme}://{host}{path}?{query}"

    async def presign_post(
        self, bucket: str, fields: dict[str, str], conditions: list[Any], expires: int
    ) -> tuple[str, dict[str, str]] | None:
        """The URL and form fields of a browser POST upload to ``bucket`` (a SigV4 POST
        policy of ``conditions``), signed offline; ``None`` where :meth:`presign` declines."""
        if self._declines(bucket):
            return None
        signer = await self._signer(
            self._regions.get(bucket, self._region), ("get_presigned_post", bucket, None)
        )
        assert signer is not None  # only built where there are credentials
        host, base = self._locate(bucket)
        url = f"{self._scheme}://{host}{base.rstrip('/') if base != '/' else base}"
        return url, signer.post_policy(fields, conditions, expires)

    def _declines(self, bucket: str) -> bool:
        """Whether virtual-host addressing is asked for but not used for this bucket."""
        return self.settings.url_style == "virtual" and not self._virtual_host(bucket)
