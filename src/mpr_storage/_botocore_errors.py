"""botocore's exceptions as ours: the table of the botocore transport and of the presigners."""

from __future__ import annotations

from typing import ClassVar

from botocore import exceptions as bx

from ._aiohttp_errors import AIOHTTP_ERRORS
from ._error_map import SOCKET_ERRORS, ErrorTable, Failure, Where, map_errors, merged
from ._errors import (
    NO_CREDENTIALS,
    ConfigError,
    InvalidKeyError,
    StorageError,
    error_for_code,
    request_ids,
    retry_after_seconds,
)

__all__ = ["BOTOCORE_ERRORS", "map_botocore_errors"]

BOTOCORE_ERRORS: ErrorTable = {
    Failure.TLS: (bx.SSLError,),
    Failure.PROXY: (bx.ProxyConnectionError,),
    Failure.TIMEOUT: (bx.ConnectTimeoutError, bx.ReadTimeoutError),
    Failure.UNREACHABLE: (bx.EndpointConnectionError,),
    Failure.BROKEN: (
        bx.ConnectionClosedError,
        bx.HTTPClientError,
        bx.ResponseStreamingError,
        bx.IncompleteReadError,
    ),
}
"""botocore's exception types for each :class:`~._error_map.Failure`."""


class map_botocore_errors(map_errors):
    """``with map_botocore_errors(operation, bucket, key, endpoint=...)``: botocore's errors
    raised inside become ours: an error answer (``ClientError``) by its S3 code, missing
    credentials and invalid parameters, connection failures by the table (aiohttp's too:
    aiobotocore passes some of a body's up as they are), any other botocore error as a
    :class:`~mpr_storage.StorageError` naming it."""

    __slots__ = ()

    table: ClassVar[ErrorTable] = merged(BOTOCORE_ERRORS, AIOHTTP_ERRORS, SOCKET_ERRORS)

    @classmethod
    def translate(cls, exc: Exception, where: Where, target: str) -> StorageError | None:
        """Our error for ``exc``, or ``None`` to let it pass."""
        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            code = str(err.get("Code") or status or "Unknown")
            message = str(err.get("Message") or code)
            headers = meta.get("HTTPHeaders") or {}
            request_id, host_id = request_ids(headers)
            return error_for_code(
                code,
                message,
                **where,
                status=status,
                retry_after=retry_after_seconds(headers.get("retry-after")),
                location=headers.get("location"),
                request_id=meta.get("RequestId") or request_id,
                host_id=meta.get("HostId") or host_id,
            )
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return ConfigError(NO_CREDENTIALS, **where)
        if isinstance(exc, bx.ParamValidationError):
            return InvalidKeyError(
                f"invalid request parameters: {exc.kwargs.get('report', '')}".strip(), **where
            )
        ours = super().translate(exc, where, target)
        if ours is None and isinstance(exc, bx.BotoCoreError):
            return StorageError(f"{type(exc).__name__}: {exc}", **where)
        return ours
