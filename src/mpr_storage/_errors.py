"""The exception tree, and the one boundary that turns botocore/aiohttp errors into it.

    StorageError
    ├── ObjectNotFoundError      (also FileNotFoundError)   key missing
    ├── BucketNotFoundError                                 bucket missing
    ├── AccessDeniedError        (also PermissionError)     403, bad credentials, bad signature
    ├── InvalidKeyError          (also ValueError)          empty, unsafe or over-long key
    ├── ConfigError                                         bad or missing settings
    ├── StorageConnectionError   (also ConnectionError)     endpoint unreachable after retries
    │   └── StorageTimeoutError  (also TimeoutError)        connect/read timed out after retries
    ├── ThrottledError                                      still throttled after retries
    ├── LocalFileError           (also OSError)             a local file or directory is unusable
    └── TransferError                                       a bulk call had failures (.report)

Every message names the operation, the bucket and the key; none ever contains a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._transfer import TransferReport

__all__ = [
    "AccessDeniedError",
    "BucketNotFoundError",
    "ConfigError",
    "InvalidKeyError",
    "LocalFileError",
    "ObjectNotFoundError",
    "StorageConnectionError",
    "StorageError",
    "StorageTimeoutError",
    "ThrottledError",
    "TransferError",
    "error_for_code",
    "map_errors",
]


class StorageError(Exception):
    """Root of every error this library raises.

    Attributes:
        operation: what was being done (``"download_file"``, ``"list_objects"`` ...).
        bucket: the bucket involved, if any.
        key: the object key involved, if any.
        code: the S3 error code (``"NoSuchKey"``, ``"SlowDown"`` ...) or HTTP status, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
    ) -> None:
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.code = code
        super().__init__(_describe(message, operation, bucket, key))

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


class ConfigError(StorageError):
    """A setting is missing or invalid; the message names the variable."""


class StorageConnectionError(StorageError, ConnectionError):
    """The endpoint could not be reached (after retries)."""


class StorageTimeoutError(StorageConnectionError, TimeoutError):
    """Connecting to or reading from the endpoint timed out (after retries)."""


class ThrottledError(StorageError):
    """The server kept answering SlowDown/503 after every retry."""


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


class TransferError(StorageError):
    """A bulk transfer finished with failed keys; ``report`` has the details."""

    def __init__(
        self, message: str, *, report: TransferReport, operation: str, bucket: str
    ) -> None:
        super().__init__(message, operation=operation, bucket=bucket)
        self.report = report


_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "403",
    "Forbidden",
}
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "503",
    "429",
}
_BAD_KEY = {"KeyTooLongError", "InvalidObjectName", "InvalidKey"}


def error_for_code(
    code: str,
    message: str,
    *,
    operation: str,
    bucket: str | None = None,
    key: str | None = None,
) -> StorageError:
    """Build our error for an S3 error code (or HTTP status as a string)."""
    cls: type[StorageError] = StorageError
    if code in _NOT_FOUND:
        cls, message = ObjectNotFoundError, "no such key"
        if key is None:
            cls, message = BucketNotFoundError, _no_bucket_hint(bucket)
    elif code in _NO_BUCKET:
        cls, message = BucketNotFoundError, _no_bucket_hint(bucket)
    elif code in _DENIED:
        cls = AccessDeniedError
        message = f"access denied ({code}): check the credentials and the bucket policy"
    elif code in _THROTTLED:
        cls = ThrottledError
        message = f"still throttled after retries ({code})"
    elif code in _BAD_KEY:
        cls = InvalidKeyError
    return cls(
        f"{message} [{code}]" if code not in message else message,
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
    )


def _no_bucket_hint(bucket: str | None) -> str:
    return (
        f"bucket {bucket!r} does not exist; create it first "
        f"(`mpr-storage server` creates the MPR buckets locally, or `aws s3 mb s3://{bucket}`)"
    )


@contextlib.contextmanager
def map_errors(operation: str, bucket: str | None = None, key: str | None = None) -> Iterator[None]:
    """Translate botocore, aiohttp and socket errors raised inside the block into ours.

    This is the single translation boundary: decisions are made on structured error codes,
    never on exception text, and the original is always chained (``raise ... from exc``).
    """
    from aiohttp import ClientError as AiohttpClientError
    from botocore import exceptions as bx

    try:
        yield
    except StorageError:
        raise
    except bx.ClientError as exc:
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(err.get("Code") or status or "Unknown")
        message = str(err.get("Message") or code)
        raise error_for_code(code, message, operation=operation, bucket=bucket, key=key) from exc
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise ConfigError(
            "no usable credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or configure a profile / instance role)",
            operation=operation,
            bucket=bucket,
            key=key,
        ) from exc
    except bx.ParamValidationError as exc:
        raise InvalidKeyError(
            f"invalid request parameters: {exc.kwargs.get('report', '')}".strip(),
            operation=operation,
            bucket=bucket,
            key=key,
        ) from exc
    except (bx.ConnectTimeoutError, bx.ReadTimeoutError, asyncio.TimeoutError, TimeoutError) as exc:
        raise StorageTimeoutError(
            "timed out talking to the endpoint", operation=operation, bucket=bucket, key=key
        ) from exc
    except (bx.EndpointConnectionError, bx.ConnectionClosedError) as exc:
        raise StorageConnectionError(
            f"cannot reach the endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip(),
            operation=operation,
            bucket=bucket,
            key=key,
        ) from exc
    except (
        bx.HTTPClientError,
        bx.ResponseStreamingError,
        bx.IncompleteReadError,
        AiohttpClientError,
        ConnectionError,
    ) as exc:
        raise StorageConnectionError(
            f"connection failed: {type(exc).__name__}", operation=operation, bucket=bucket, key=key
        ) from exc
    except bx.BotoCoreError as exc:
        raise StorageError(
            f"{type(exc).__name__}: {exc}", operation=operation, bucket=bucket, key=key
        ) from exc
