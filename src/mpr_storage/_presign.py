"""Presigned URLs and POST policies (SigV4, offline), signed for the endpoint browsers reach."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal
from urllib.parse import quote

from ._botocore_errors import map_botocore_errors
from ._client import BaseStorage
from ._keys import check_bucket_and_key
from ._models import PresignedPost

__all__ = ["MAX_EXPIRES", "content_disposition", "get_presigned_post", "get_presigned_url"]

MAX_EXPIRES = 7 * 24 * 3600  # SigV4's limit
_METHODS = {"GET": "get_object", "PUT": "put_object"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Printable ASCII a quoted filename may hold as is: no quote, backslash, percent (browsers may
# decode it) or slash.
_PLAIN_NAME = re.compile(r"[ !#$&'()*+,\-.0-9:;<=>?@A-Z\[\]^_`a-z{|}~]+")


def _check_expires(expires_in: object, operation: str) -> None:
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not (1 <= expires_in <= MAX_EXPIRES)
    ):
        raise ValueError(
            f"{operation}: expires_in must be 1..{MAX_EXPIRES} seconds, got {expires_in!r}"
        )


def _check_text(value: object, name: str, operation: str) -> str:
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        raise ValueError(
            f"{operation}: {name} must be a non-empty str without control characters, got {value!r}"
        )
    return value


def content_disposition(filename: str) -> str:
    """``Content-Disposition`` for a download saved as ``filename`` (RFC 6266): ``attachment;
    filename="..."``, plus ``filename*=UTF-8''...`` (RFC 5987) when the name is not plain
    ASCII, with an ASCII look-alike as the fallback for older clients."""
    if _PLAIN_NAME.fullmatch(filename):
        return f'attachment; filename="{filename}"'
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = "".join(c if _PLAIN_NAME.fullmatch(c) else "_" for c in ascii_name).strip()
    encoded = quote(filename, safe="!#$&+^`|")
    return f"attachment; filename=\"{fallback or 'download'}\"; filename*=UTF-8''{encoded}"


async def get_presigned_url(
    storage: BaseStorage,
    bucket: str,
    key: str,
    *,
    expires_in: int = 3600,
    method: Literal["GET", "PUT"] = "GET",
    content_type: str | None = None,
    filename: str | None = None,
) -> str:
    """A SigV4 presigned URL for ``GET`` or ``PUT`` of ``key``, computed offline.

    No request is sent: the URL is signed locally, for ``S3_PUBLIC_ENDPOINT_URL`` when set (the
    host browsers reach), otherwise for ``S3_ENDPOINT_URL``. Whether the key exists is not
    checked.

    Args:
        expires_in: seconds the URL stays valid, 1 s to 7 days.
        method: ``"GET"`` to read the object, ``"PUT"`` to write it.
        content_type: for PUT, the ``Content-Type`` the uploader must send (it is signed:
            providers that check it refuse another, e.g. SeaweedFS and AWS with 403); for
            GET, the ``Content-Type`` of the response (``response-content-type``).
        filename: GET only: the response is a download saved under this name
            (``Content-Disposition: attachment``, RFC 6266; non-ASCII names as RFC 5987
            ``filename*`` with an ASCII fallback). Providers that ignore response overrides
            (SeaweedFS) send the object's own headers.

    Raises:
        ValueError: ``method`` is not GET/PUT, ``expires_in`` is outside 1 s .. 7 days,
            ``content_type``/``filename`` is empty or has control characters, or
            ``filename`` is given for PUT.
        InvalidKeyError: the key is empty or too long.
    """
    op = "get_presigned_url"
    check_bucket_and_key(bucket, key, operation=op)
    verb = str(method).upper()
    client_method = _METHODS.get(verb)
    if client_method is None:
        raise ValueError(f"get_presigned_url: method must be 'GET' or 'PUT', got {method!r}")
    _check_expires(expires_in, op)
    params: dict[str, str] = {}  # query parameters, in the order botocore writes them
    headers: dict[str, str] = {}  # headers the request must carry
    boto_params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if filename is not None:
        if verb != "GET":
            raise ValueError("get_presigned_url: filename is for GET (a download's name)")
        disposition = content_disposition(_check_text(filename, "filename", op))
        params["response-content-disposition"] = disposition
        boto_params["ResponseContentDisposition"] = disposition
    if content_type is not None:
        _check_text(content_type, "content_type", op)
        if verb == "GET":
            params["response-content-type"] = content_type
            boto_params["ResponseContentType"] = content_type
        else:
            headers["Content-Type"] = content_type
            boto_params["ContentType"] = content_type
    signer = await storage.presigner()
    if signer is not None:  # ~20x cheaper than botocore's presigner; tests check they agree
        with map_botocore_errors(op, bucket, key):
            signed = await signer.presign(
                verb, bucket, key, expires_in, params=params, headers=headers
            )
        if signed is not None:
            return signed
    client = await storage.presign_client()
    with map_botocore_errors(op, bucket, key):
        url: str = await client.generate_presigned_url(
            client_method, Params=boto_params, ExpiresIn=expires_in
        )
    return url


async def get_presigned_post(
    storage: BaseStorage,
    bucket: str,
    key: str,
    *,
    expires_in: int = 3600,
    max_size: int | None = None,
    content_type: str | None = None,
) -> PresignedPost:
    """A browser upload of ``key`` by HTTP POST (a SigV4 POST policy), computed offline.

    The browser posts ``fields`` as form fields and the file last, as the field ``file``, to
    ``url`` (``multipart/form-data``); the server checks the signed policy. Signed for
    ``S3_PUBLIC_ENDPOINT_URL`` when set, otherwise for ``S3_ENDPOINT_URL``. The same fields
    and policy as botocore's ``generate_presigned_post``.

    Args:
        expires_in: seconds the policy stays valid, 1 s to 7 days.
        max_size: the largest upload accepted, in bytes (``content-length-range``): a larger
            one is refused by providers that check it (AWS, MinIO, SeaweedFS: 400
            ``EntityTooLarge``).
        content_type: the ``Content-Type`` the object gets; the policy requires the form's
            ``Content-Type`` field (given in ``fields``) to be exactly this (another is
            refused with 403 where the policy is checked, e.g. SeaweedFS).

    Raises:
        ValueError: ``expires_in`` is outside 1 s .. 7 days, ``max_size`` is negative, or
            ``content_type`` is empty or has control characters.
        InvalidKeyError: the key is empty or too long.
    """
    op = "get_presigned_post"
    check_bucket_and_key(bucket, key, operation=op)
    _check_expires(expires_in, op)
    fields: dict[str, str] = {}
    conditions: list[Any] = []
    if content_type is not None:
        fields["Content-Type"] = _check_text(content_type, "content_type", op)
        conditions.append({"Content-Type": content_type})
    if max_size is not None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"{op}: max_size must be None or an int >= 0, got {max_size!r}")
        conditions.append(["content-length-range", 0, max_size])
    signer = await storage.presigner()
    if signer is not None:
        # botocore's order: the caller's fields and conditions, then bucket and key.
        ours = [*conditions, {"bucket": bucket}, _key_condition(key)]
        with map_botocore_errors(op, bucket, key):
            signed = await signer.presign_post(bucket, {**fields, "key": key}, ours, expires_in)
        if signed is not None:
            return PresignedPost(*signed)
    client = await storage.presign_client()
    with map_botocore_errors(op, bucket, key):
        post: dict[str, Any] = await client.generate_presigned_post(
            bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )
    return PresignedPost(str(post["url"]), {k: str(v) for k, v in post["fields"].items()})


def _key_condition(key: str) -> Any:
    """The key's condition, as botocore writes it: a key ending in ``${filename}`` is a
    prefix (the browser's file name completes it)."""
    if key.endswith("${filename}"):
        return ["starts-with", "$key", key[: -len("${filename}")]]
    return {"key": key}
