"""Presigned URLs (SigV4, offline), signed for the endpoint browsers reach."""

from __future__ import annotations

from typing import Literal

from ._client import BaseStorage
from ._errors import map_errors
from ._keys import check_bucket, check_key

__all__ = ["MAX_EXPIRES", "get_presigned_url"]

MAX_EXPIRES = 7 * 24 * 3600  # SigV4's limit
_METHODS = {"GET": "get_object", "PUT": "put_object"}


async def get_presigned_url(
    storage: BaseStorage,
    bucket: str,
    key: str,
    *,
    expires_in: int = 3600,
    method: Literal["GET", "PUT"] = "GET",
) -> str:
    """A SigV4 presigned URL for ``GET`` or ``PUT`` of ``key``, computed offline.

    No request is sent: the URL is signed locally, for ``S3_PUBLIC_ENDPOINT_URL`` when set (the
    host browsers reach), otherwise for ``S3_ENDPOINT_URL``. Whether the key exists is not
    checked.

    Args:
        expires_in: seconds the URL stays valid, 1 s to 7 days.
        method: ``"GET"`` to read the object, ``"PUT"`` to write it.

    Raises:
        ValueError: ``method`` is not GET/PUT or ``expires_in`` is outside 1 s .. 7 days.
        InvalidKeyError: the key is empty or too long.
    """
    check_bucket(bucket, operation="get_presigned_url")
    check_key(key, operation="get_presigned_url", bucket=bucket)
    verb = str(method).upper()
    client_method = _METHODS.get(verb)
    if client_method is None:
        raise ValueError(f"get_presigned_url: method must be 'GET' or 'PUT', got {method!r}")
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not (1 <= expires_in <= MAX_EXPIRES)
    ):
        raise ValueError(
            f"get_presigned_url: expires_in must be 1..{MAX_EXPIRES} seconds, got {expires_in!r}"
        )
    signer = await storage.presigner()
    if signer is not None:  # ~20x cheaper than botocore's presigner; tests check they agree
        with map_errors("get_presigned_url", bucket, key):
            signed = await signer.presign(verb, bucket, key, expires_in)
        if signed is not None:
            return signed
    client = await storage.presign_client()
    with map_errors("get_presigned_url", bucket, key):
        url: str = await client.generate_presigned_url(
            client_method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )
    return url
