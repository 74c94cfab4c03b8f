"""SigV4 signing for S3 (headers and presigned query strings) in botocore's canonical form,
without its per-request objects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from botocore.credentials import ReadOnlyCredentials

__all__ = ["UNSIGNED_PAYLOAD", "SigV4"]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_ISO8601 = "%Y-%m-%dT%H:%M:%SZ"  # a POST policy's expiration, as botocore writes it


class SigV4:
    """S3 SigV4 header signing in botocore's canonical form (``S3SigV4Auth``: path signed as
    sent, headers trimmed and sorted), without its per-request objects: the timestamp is built
    once a second and the signing key once a day. tests/test_http.py checks every signature
    against botocore's signer."""

    def __init__(
        self, credentials: ReadOnlyCredentials, region: str, *, clock_offset: float = 0.0
    ) -> None:
        self.credentials = credentials
        self.region = region
        self.clock_offset = clock_offset
        self._access_key = credentials.access_key
        self._secret = credentials.secret_key
        self._token = credentials.token
        self._second = -1
        self._amz_date = ""
        self._day = ""
        self._keyed = hmac.new(b"", digestmod=hashlib.sha256)  # the day's signing key

    def _clock(self) -> tuple[str, str]:
        second = int(time.time() + self.clock_offset)
        if second != self._second:
            self._second = second
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            day = self._amz_date[:8]
            if day != self._day:
                key = hmac.digest(f"AWS4{self._secret}".encode(), day.encode(), "sha256")
                for part in (self.region, "s3", "aws4_request"):
                    key = hmac.digest(key, part.encode(), "sha256")
                self._day, self._keyed = day, hmac.new(key, digestmod=hashlib.sha256)
        return self._amz_date, self._day

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        payload_hash: str,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The request's headers: ``extra``, ``Host``, ``X-Amz-*`` and ``Authorization``.

        ``path`` and ``query`` as sent: percent-encoded, query parameters sorted."""
        amz_date, day = self._clock()
        signed = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        if self._token:
            signed["x-amz-security-token"] = self._token
        if extra:
            for name, value in extra.items():
                signed[name.lower()] = " ".join(value.split())
        names = sorted(signed)
        canonical = "\n".join(
            [method, path, query, *[f"{n}:{signed[n]}" for n in names], "", ";".join(names)]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        digest = hashlib.sha256(f"{canonical}\n{payload_hash}".encode()).hexdigest()
        signature = self._signature(amz_date, scope, digest)
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return signed

    def presign(
        self,
        method: str,
        host: str,
        path: str,
        expires: int,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """The query string of a presigned URL (``X-Amz-*`` parameters and the signature) as
        botocore's ``S3SigV4QueryAuth`` writes it: ``host`` (and ``headers``, which the
        request must then carry) signed, payload unsigned; ``params`` (e.g.
        ``response-content-type``) come first and are signed too.

        ``path`` as sent: percent-encoded."""
        amz_date, day = self._clock()
        scope = f"{day}/{self.region}/s3/aws4_request"
        signed = {"host": host}
        for name, value in (headers or {}).items():
            signed[name.lower()] = " ".join(value.split())
        names = sorted(signed)
        auth = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self._access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(expires),
            "X-Amz-SignedHeaders": ";".join(names),
        }
        if self._token is not None:  # as botocore's query signer has it
            auth["X-Amz-Security-Token"] = self._token
        every = {**(params or {}), **auth}
        query = "&".join(f"{_q(k)}={_q(v)}" for k, v in every.items())
        canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(every.items()))
        canonical_headers = "".join(f"{n}:{signed[n]}\n" for n in names)
        canonical = (
            f"{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{';'.join(names)}\n"
            f"{UNSIGNED_PAYLOAD}"
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return f"{query}&X-Amz-Signature={self._signature(amz_date, scope, digest)}"

    def post_policy(
        self, fields: dict[str, str], conditions: list[Any], expires: int
    ) -> dict[str, str]:
        """The form fields of a browser POST upload as botocore's ``S3SigV4PostAuth`` writes
        them: ``fields``, then the ``x-amz-*`` ones, the base64 policy (``conditions`` and
        the signing ones, expiring in ``expires`` seconds) and its signature."""
        amz_date, day = self._clock()
        scope = f"{day}/{self.region}/s3/aws4_request"
        expiration = time.strftime(_ISO8601, time.gmtime(self._second + expires))
        credential = f"{self._access_key}/{scope}"
        signing = {
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": credential,
            "x-amz-date": amz_date,
        }
        if self._token is not None:
            signing["x-amz-security-token"] = self._token
        policy = {
            "expiration": expiration,
            "conditions": [*conditions, *({k: v} for k, v in signing.items())],
        }
        encoded = base64.b64encode(json.dumps(policy).encode("utf-8")).decode("ascii")
        mac = self._keyed.copy()
        mac.update(encoded.encode())
        return {**fields, **signing, "policy": encoded, "x-amz-signature": mac.hexdigest()}

    def _signature(self, amz_date: str, scope: str, digest: str) -> str:
        """The signature of a canonical request's ``digest``, with the day's signing key (a
        pre-keyed HMAC, copied: cheaper than keying a new one for every request)."""
        mac = self._keyed.copy()
        mac.update(f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode())
        return mac.hexdigest()


def _q(text: str) -> str:
    return quote(text, safe="-_.~")
