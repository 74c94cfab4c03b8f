"""The exception tree, with the report a bulk call's error carries, and what an S3 answer means.

    StorageError
    ├── ObjectNotFoundError      (also FileNotFoundError)   key missing
    ├── BucketNotFoundError                                 bucket missing
    ├── AccessDeniedError        (also PermissionError)     403, bad credentials, bad signature
    ├── InvalidKeyError          (also ValueError)          empty, unsafe or over-long key
    ├── InvalidRangeError        (also ValueError)          a byte range outside the object (416)
    ├── PreconditionFailedError                             If-Match no longer holds (412)
    ├── ConfigError                                         bad or missing settings
    ├── StorageConnectionError   (also ConnectionError)     endpoint unreachable after retries
    │   └── StorageTimeoutError  (also TimeoutError)        connect/read timed out after retries
    ├── ThrottledError                                      still throttled after retries
    ├── ObjectExistsError        (also FileExistsError)     a create-only write found the key
    ├── LocalFileError           (also OSError)             a local file or directory is unusable
    └── TransferError                                       a bulk call had failures (.report)

Every message names the operation, the bucket and the key; none ever contains a secret. An S3
error code becomes one of these here (:func:`error_for_code`, for both transports); each
transport translates its HTTP client's exceptions on the boundary of :mod:`._error_map`
(:mod:`._aiohttp_errors`, :mod:`._botocore_errors`).
"""

from __future__ import annotations

import email.utils
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "NO_CREDENTIALS",
    "REFRESH_CODES",
    "REGION_CODES",
    "THROTTLING_CODES",
    "AccessDeniedError",
    "BucketNotFoundError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidRangeError",
    "LocalFileError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "PreconditionFailedError",
    "StorageConnectionError",
    "StorageError",
    "StorageTimeoutError",
    "ThrottledError",
    "TransferError",
    "TransferReport",
    "error_for_code",
    "redact_url",
    "request_ids",
    "retry_after_seconds",
]


class StorageError(Exception):
    """Root of every error this library raises.

    Attributes:
        operation: what was being done (``"download_file"``, ``"list_objects"`` ...).
        bucket: the bucket involved, if any.
        key: the object key involved, if any.
        code: the S3 error code (``"NoSuchKey"``, ``"SlowDown"`` ...) or HTTP status, if any.
        status: the HTTP status of the answer, if there was one.
        retry_after: seconds the server asked to wait (``Retry-After``), if it did.
        request_id: the provider's request ID (``x-amz-request-id``; GCS:
            ``x-guploader-uploadid``), if the server answered: its support asks for it.
        host_id: the provider's extended request ID (``x-amz-id-2``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        host_id: str | None = None,
    ) -> None:
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.code = code
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id
        self.host_id = host_id
        text = _describe(message, operation, bucket, key)
        super().__init__(f"{text} (request id {request_id})" if request_id else text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep attributes when an error crosses a process boundary (multiprocessing, pickling).
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[StorageError], args: tuple[Any, ...], state: dict[str, Any]) -> StorageError:
    err = cls.__new__(cls, *args)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


def _describe(message: str, operation: str | None, bucket: str | None, key: str | None) -> str:
    if operation is None:
        return message
    target = f"s3://{bucket}/{key}" if bucket and key else f"s3://{bucket}" if bucket else ""
    return f"{operation} {target}: {message}" if target else f"{operation}: {message}"


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """The key does not exist in the bucket."""


class BucketNotFoundError(StorageError):
    """The bucket does not exist."""


class AccessDeniedError(StorageError, PermissionError):
    """The server refused the credentials or the signature, or the caller lacks permission."""


class InvalidKeyError(StorageError, ValueError):
    """The key is empty, too long, or would map to a path outside the destination."""


class InvalidRangeError(StorageError, ValueError):
    """The byte range asked for is outside the object (HTTP 416). ``size``: the object's size,
    from the answer's ``Content-Range: bytes */size``, if the server said."""

    def __init__(self, message: str, *, size: int | None = None, **where: Any) -> None:
        super().__init__(message, **where)
        self.size = size


class PreconditionFailedError(StorageError):
    """A condition of the request no longer holds (HTTP 412): the object was replaced since
    the ETag it was pinned to (``If-Match``) was read. Code ``PreconditionFailed``."""


class ConfigError(StorageError):
    """A setting is missing or invalid; the message names the variable."""


class StorageConnectionError(StorageError, ConnectionError):
    """The endpoint could not be reached (after retries)."""


class StorageTimeoutError(StorageConnectionError, TimeoutError):
    """Connecting to or reading from the endpoint timed out (after retries)."""


class ThrottledError(StorageError):
    """The server kept answering SlowDown/503 after every retry."""


class ObjectExistsError(StorageError, FileExistsError):
    """A create-only write (``If-None-Match: *``) found the key: the object there is left
    untouched."""


class LocalFileError(StorageError, OSError):
    """A local file or directory of a transfer is unusable: a file where a directory is needed,
    an unreadable file or directory, a special file (FIFO, device), a dangling symlink, a name
    that is not UTF-8. ``path`` is the local path; ``errno`` the OS error number, if any."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str],
        operation: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        errno: int | None = None,
    ) -> None:
        self.path = os.fsdecode(path)
        shown = os.fsencode(self.path).decode("utf-8", "backslashreplace")
        text = f"{message} ({shown})" if shown else message
        super().__init__(text, operation=operation, bucket=bucket, key=key)
        self.errno = errno
        self.filename = self.path

    def __str__(self) -> str:  # our message, not OSError's "[Errno n] strerror: filename"
        return str(self.args[0]) if self.args else ""


@dataclass
class TransferReport:
    """What a bulk call did: what its :class:`TransferError` carries, and what it returns
    with ``raise_on_error=False``.

    Attributes:
        done: keys transferred, in completion order.
        skipped: keys left alone because the destination already had them.
        failed: keys that failed, with the error of each.
        bytes: bytes transferred (skipped keys not counted).
        seconds: wall time of the call.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, StorageError] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no key failed."""
        return not self.failed


class TransferError(StorageError):
    """A bulk transfer finished with failed keys (or gave up); ``report`` has the details."""

    def __init__(
        self, message: str, *, report: TransferReport, operation: str, bucket: str
    ) -> None:
        super().__init__(message, operation=operation, bucket=bucket)
        self.report = report


#: Answers that mean "these credentials (or this clock) are stale": refresh and retry once.
REFRESH_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "RequestExpired",
        "RequestTimeTooSkewed",
    }
)
_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "Forbidden",
} | REFRESH_CODES
#: A request signed for the wrong region (botocore's S3RegionRedirectorv2 follows these).
REGION_CODES = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
)
# botocore's throttling codes (retries/standard.py) and MinIO's overload answers.
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "SlowDownRead",
        "SlowDownWrite",
        "XMinioServerNotInitialized",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "TooManyRequests",
        "TooManyRequestsException",
        "EC2ThrottledException",
        "ServiceUnavailable",
        "503",
        "429",
    }
)
_THROTTLED = THROTTLING_CODES
_BAD_KEY = {"KeyTooLongError", "InvalidObjectName", "InvalidKey"}


def error_for_code(
    code: str,
    message: str,
    *,
    operation: str,
    bucket: str | None = None,
    key: str | None = None,
    status: int | None = None,
    retry_after: float | None = None,
    location: str | None = None,
    request_id: str | None = None,
    host_id: str | None = None,
) -> StorageError:
    """Build our error for an S3 error code (or HTTP status as a string); ``location``: the
    ``Location`` of a redirect (never followed), shown without its userinfo and query."""
    cls: type[StorageError] = StorageError
    if (
        status is not None
        and 300 <= status < 400
        and (location or code not in (*REGION_CODES, "301"))
    ):
        target = f" to {redact_url(location)}" if location else ""
        message = (
            f"the endpoint redirected the request{target} (HTTP {status}); redirects are not "
            "followed (no request or credential goes to a host that was not configured): set "
            "S3_ENDPOINT_URL to the endpoint that serves this bucket"
        )
    elif code in REGION_CODES or code == "301":
        message = (
            f"the bucket is in another region than the one requests are signed for ({code}); "
            "set AWS_REGION to the bucket's region"
        )
    elif code in _NOT_FOUND:
        cls, message = ObjectNotFoundError, "no such key"
        if key is None:
            cls, message = BucketNotFoundError, _no_bucket_hint(bucket)
    elif code in _NO_BUCKET:
        cls, message = BucketNotFoundError, _no_bucket_hint(bucket)
    elif code in _DENIED:
        cls = AccessDeniedError
        message = f"access denied ({code}): check the credentials and the bucket policy"
    elif code in _THROTTLED or status in (429, 503):
        cls = ThrottledError
        message = f"still throttled after retries ({code})"
    elif code in _BAD_KEY:
        cls = InvalidKeyError
    elif code == "InvalidRange" or status == 416:
        cls = InvalidRangeError
    elif code == "PreconditionFailed" or status == 412:
        cls = PreconditionFailedError
    elif status is not None and status >= 500:
        message = f"server error (HTTP {status}) after retries: {message}"
    return cls(
        f"{message} [{code}]" if code not in message else message,
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
        status=status,
        retry_after=retry_after,
        request_id=request_id,
        host_id=host_id,
    )


def redact_url(url: str) -> str:
    """``url`` as it may be shown in a message or a log: its userinfo (a password) and its
    query string (a presigned URL's signature) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def request_ids(headers: Any) -> tuple[str | None, str | None]:
    """``(request id, host id)`` of an answer from its headers, as botocore reads them
    (``x-amzn-requestid``, else ``x-amz-request-id``; GCS: ``x-guploader-uploadid``) and
    ``x-amz-id-2``. ``headers``: lowercase names, or case-insensitive."""
    request_id = (
        headers.get("x-amzn-requestid")
        or headers.get("x-amz-request-id")
        or headers.get("x-guploader-uploadid")
    )
    return request_id or None, headers.get("x-amz-id-2") or None


def _no_bucket_hint(bucket: str | None) -> str:
    return (
        f"bucket {bucket!r} does not exist; create it first "
        f"(`mpr-storage server` creates the MPR buckets locally, or `aws s3 mb s3://{bucket}`)"
    )


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's wait in seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


NO_CREDENTIALS = (
    "no usable credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or configure a profile / instance role), or S3_ANONYMOUS=1 for a public bucket"
)
