"""S3's XML answers, read without depending on their namespace (AWS's, GCS's or none)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from botocore.utils import parse_timestamp

from ._errors import StorageError, error_for_code
from ._models import ObjectInfo, unquote_etag

__all__ = [
    "ListPage",
    "error_fields",
    "parse_buckets",
    "parse_completion",
    "parse_copy_result",
    "parse_delete_errors",
    "parse_list",
    "parse_time",
    "parse_upload_id",
]

_CODE = re.compile(rb"<(?:\w+:)?Code>([^<]{1,100})</")
_MESSAGE = re.compile(rb"<(?:\w+:)?Message>([^<]{0,500})</")
_REGION = re.compile(rb"<(?:\w+:)?Region>([^<]{1,64})</")


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing and the token of the next (``None`` after the last); with a
    delimiter, also the page's common prefixes."""

    objects: list[ObjectInfo]
    next_token: str | None
    prefixes: list[str] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _root(body: bytes, what: str, operation: str, bucket: str | None) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise StorageError(
            f"the server's answer is not the XML {what} S3 sends ({len(body)} bytes)",
            operation=operation,
            bucket=bucket,
            code="InvalidResponse",
        ) from None


def _children(element: ElementTree.Element) -> Iterator[tuple[str, ElementTree.Element]]:
    for child in element:
        yield _local(child.tag), child


def parse_time(text: str | None) -> datetime | None:
    """S3's ``2025-04-15T10:20:30.000Z`` (Python 3.10's fromisoformat needs the offset); any
    other form (SeaweedFS answers a copy with nanoseconds, which 3.10 refuses) as botocore
    reads timestamps."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        parsed: datetime = parse_timestamp(text)
    except (ValueError, TypeError, OverflowError):
        return None
    return parsed


def parse_list(body: bytes, *, operation: str, bucket: str) -> ListPage:
    """A ``ListObjectsV2`` page. Keys are URL-decoded only when the answer echoes
    ``EncodingType=url``, as botocore decodes them."""
    root = _root(body, "listing", operation, bucket)
    rows: list[tuple[str, int, str, str | None]] = []
    fields: dict[str, str] = {}
    prefixes: list[str] = []
    for name, child in _children(root):
        if name == "Contents":
            item = {n: (c.text or "") for n, c in _children(child)}
            try:
                size = int(item.get("Size", "0"))
            except ValueError:
                size = -1
            rows.append((item.get("Key", ""), size, item.get("ETag", ""), item.get("LastModified")))
        elif name == "CommonPrefixes":
            prefixes.extend(c.text or "" for n, c in _children(child) if n == "Prefix")
        elif len(child) == 0:
            fields[name] = child.text or ""
    decode = fields.get("EncodingType", "").lower() == "url"
    objects = [
        ObjectInfo(unquote_plus(key) if decode else key, size, unquote_etag(etag), parse_time(when))
        for key, size, etag, when in rows
    ]
    token = fields.get("NextContinuationToken") or None
    if fields.get("IsTruncated", "").lower() != "true":
        token = None
    if decode:
        prefixes = [unquote_plus(p) for p in prefixes]
    return ListPage(objects, token, prefixes)


def parse_buckets(body: bytes, *, operation: str) -> list[str]:
    """The bucket names of a ``ListBuckets`` answer."""
    root = _root(body, "bucket list", operation, None)
    names: list[str] = []
    for name, child in _children(root):
        if name == "Buckets":
            for _, bucket in _children(child):
                names.extend(c.text or "" for n, c in _children(bucket) if n == "Name")
    return names


def parse_delete_errors(body: bytes, *, operation: str, bucket: str) -> list[tuple[str, str, str]]:
    """``(key, code, message)`` of each key a ``DeleteObjects`` answer says it did not delete."""
    root = _root(body, "delete result", operation, bucket)
    errors = []
    for name, child in _children(root):
        if name == "Error":
            item = {n: (c.text or "") for n, c in _children(child)}
            errors.append((item.get("Key", ""), item.get("Code", ""), item.get("Message", "")))
    return errors


def parse_upload_id(body: bytes, *, operation: str, bucket: str) -> str:
    """The ``UploadId`` of a ``CreateMultipartUpload`` answer."""
    root = _root(body, "multipart upload", operation, bucket)
    for name, child in _children(root):
        if name == "UploadId" and child.text:
            return child.text
    raise StorageError(
        "the server's answer has no UploadId",
        operation=operation,
        bucket=bucket,
        code="InvalidResponse",
    )


def find_etag(body: bytes) -> str:
    """The ``ETag`` of a ``CompleteMultipartUpload`` answer ("" if none)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ""
    for name, child in _children(root):
        if name == "ETag":
            return unquote_etag(child.text)
    return ""


def error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """``(code, message, region)`` of an S3 error body, whatever its namespace."""
    found = [pattern.search(body) for pattern in (_CODE, _MESSAGE, _REGION)]
    code, message, region = (m.group(1).decode("utf-8", "replace") if m else None for m in found)
    return code, message, region


def parse_copy_result(
    body: bytes,
    result: str,
    *,
    operation: str,
    bucket: str,
    key: str,
    ids: tuple[str | None, str | None] = (None, None),
) -> tuple[str, datetime | None]:
    """``(etag, last_modified)`` of a ``CopyObject`` (``result``: ``CopyObjectResult``) or
    ``UploadPartCopy`` (``CopyPartResult``) answer. S3 may answer 200 and report a failure in
    the body: that raises our error for its code, as a 500 (retried), as botocore reads it,
    with the answer's request IDs (``ids``)."""
    _raise_reported(body, result, operation=operation, bucket=bucket, key=key, ids=ids)
    root = _root(body, "copy result", operation, bucket)
    fields = {name: child.text or "" for name, child in _children(root)}
    if not fields.get("ETag"):
        raise StorageError(
            "the server's copy answer has no ETag",
            operation=operation,
            bucket=bucket,
            key=key,
            code="InvalidResponse",
        )
    return fields["ETag"], parse_time(fields.get("LastModified"))


def parse_completion(
    body: bytes,
    *,
    operation: str,
    bucket: str,
    key: str,
    ids: tuple[str | None, str | None] = (None, None),
) -> str:
    """The ETag of a ``CompleteMultipartUpload`` answer ("" if none). S3 may answer 200 and
    report a failure in the body: that raises our error for its code as a 500 (retried, as
    botocore retries it), with the answer's request IDs (``ids``)."""
    _raise_reported(
        body,
        "CompleteMultipartUploadResult",
        operation=operation,
        bucket=bucket,
        key=key,
        ids=ids,
    )
    return find_etag(body)


def _raise_reported(
    body: bytes,
    result: str,
    *,
    operation: str,
    bucket: str,
    key: str,
    ids: tuple[str | None, str | None],
) -> None:
    """Raise our error for a failure reported in the body of a 200 answer (an error document,
    not the ``result`` element) as a 500, retried: botocore turns such an answer into a 500
    before its retry handler reads it, whatever the code."""
    code, message, _region = error_fields(body)
    if code is not None and result.encode() not in body:
        raise error_for_code(
            code,
            message or code,
            operation=operation,
            bucket=bucket,
            key=key,
            status=500,
            request_id=ids[0],
            host_id=ids[1],
        )
