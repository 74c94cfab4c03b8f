"""The error tree and the translation boundary of each transport."""

from __future__ import annotations

import ast
import asyncio
import pickle
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

import mpr_storage
from mpr_storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ConfigError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageConnectionError,
    StorageError,
    StorageTimeoutError,
    ThrottledError,
)
from mpr_storage._aiohttp_errors import map_aiohttp_errors
from mpr_storage._botocore_errors import map_botocore_errors
from mpr_storage._error_map import map_errors
from mpr_storage._errors import error_for_code

MAPS = [map_aiohttp_errors, map_botocore_errors]


def _client_error(code: str, status: int, message: str = "msg") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "key", "cls", "builtin"),
    [
        ("NoSuchKey", 404, "k", ObjectNotFoundError, FileNotFoundError),
        ("404", 404, "k", ObjectNotFoundError, FileNotFoundError),
        ("404", 404, None, BucketNotFoundError, None),
        ("NoSuchBucket", 404, "k", BucketNotFoundError, None),
        ("AccessDenied", 403, "k", AccessDeniedError, PermissionError),
        ("SignatureDoesNotMatch", 403, "k", AccessDeniedError, PermissionError),
        ("InvalidAccessKeyId", 403, "k", AccessDeniedError, PermissionError),
        ("SlowDown", 503, "k", ThrottledError, None),
        ("KeyTooLongError", 400, "k", InvalidKeyError, ValueError),
        ("InternalError", 500, "k", StorageError, None),
    ],
)
def test_codes_map_to_classes(
    code: str, status: int, key: str | None, cls: type, builtin: type | None
) -> None:
    with pytest.raises(cls) as info, map_botocore_errors("download_file", "bkt", key):
        raise _client_error(code, status)
    err = info.value
    assert type(err) is cls
    assert isinstance(err, StorageError)
    if builtin is not None:
        assert isinstance(err, builtin)
    assert err.operation == "download_file" and err.bucket == "bkt" and err.key == key
    assert err.code == code
    assert str(err).startswith("download_file s3://bkt")
    assert isinstance(err.__cause__, ClientError)


def test_missing_bucket_message_says_how_to_create_it() -> None:
    err = error_for_code("NoSuchBucket", "x", operation="list_objects", bucket="mpr-media-out")
    assert "mpr-media-out" in str(err) and "create" in str(err)


def test_connection_and_timeout_errors() -> None:
    with pytest.raises(StorageConnectionError) as info, map_botocore_errors("list_objects", "b"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, StorageTimeoutError)
    with pytest.raises(StorageTimeoutError) as tinfo, map_botocore_errors("list_objects", "b"):
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(tinfo.value, TimeoutError) and isinstance(tinfo.value, StorageConnectionError)


def test_missing_credentials_is_a_config_error_naming_variables() -> None:
    with (
        pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"),
        map_botocore_errors("list_objects", "b"),
    ):
        raise NoCredentialsError()


@pytest.mark.parametrize("mapper", [map_errors, *MAPS])
def test_our_errors_pass_through_unchanged(mapper: type[map_errors]) -> None:
    original = InvalidKeyError("bad", operation="x")
    with pytest.raises(InvalidKeyError) as info, mapper("y"):
        raise original
    assert info.value is original


@pytest.mark.parametrize("mapper", [map_errors, *MAPS])
def test_unrelated_errors_are_not_swallowed(mapper: type[map_errors]) -> None:
    with pytest.raises(KeyError), mapper("y"):
        raise KeyError("k")


def _aiohttp_failures() -> list[tuple[Exception, type[StorageError], str]]:
    key = ConnectionKey("h", 1, False, True, None, None, None)
    return [
        (
            aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError()),
            StorageConnectionError,
            "TLS to http://h:1 failed (certificate not trusted?)",
        ),
        (
            aiohttp.ClientProxyConnectionError(key, OSError(111, "refused")),
            StorageConnectionError,
            "cannot reach the proxy for http://h:1",
        ),
        (aiohttp.ServerTimeoutError(), StorageTimeoutError, "timed out talking to http://h:1"),
        (
            aiohttp.ClientConnectorError(key, OSError(111, "refused")),
            StorageConnectionError,
            "cannot reach the endpoint http://h:1",
        ),
        (
            aiohttp.ClientPayloadError(),
            StorageConnectionError,
            "connection to http://h:1 broke (ClientPayloadError)",
        ),
        (asyncio.TimeoutError(), StorageTimeoutError, "timed out talking to http://h:1"),
        (
            ConnectionResetError(),
            StorageConnectionError,
            "connection to http://h:1 broke (ConnectionResetError)",
        ),
    ]


@pytest.mark.parametrize("mapper", MAPS)
@pytest.mark.parametrize(("error", "cls", "message"), _aiohttp_failures())
def test_connection_failures_read_the_same_on_both_transports(
    mapper: type[map_errors], error: Exception, cls: type[StorageError], message: str
) -> None:
    # aiobotocore passes some of aiohttp's errors up as they are (a body cut short).
    with pytest.raises(StorageError) as info, mapper("get", "b", "k", endpoint="http://h:1"):
        raise error
    assert type(info.value) is cls
    assert str(info.value).startswith(f"get s3://b/k: {message}")
    assert info.value.__cause__ is error
    assert (info.value.code == "TLSError") == message.startswith("TLS")


def test_the_fast_path_leaves_botocore_errors_alone() -> None:
    with pytest.raises(EndpointConnectionError), map_aiohttp_errors("y"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def test_the_error_tree_imports_no_http_client() -> None:
    package = Path(mpr_storage.__file__).parent
    for name in ("_errors.py", "_error_map.py"):
        for node in ast.walk(ast.parse((package / name).read_text("utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] in ("aiohttp", "botocore") for m in modules), name


def test_errors_pickle_with_their_attributes() -> None:
    err = error_for_code("NoSuchKey", "m", operation="download_file", bucket="b", key="k")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ObjectNotFoundError
    assert (back.operation, back.bucket, back.key, back.code) == (
        "download_file",
        "b",
        "k",
        "NoSuchKey",
    )
    assert str(back) == str(err)


def test_message_never_contains_the_secret() -> None:
    # S3 echoes the access key id and string-to-sign, never the secret; we keep our own text.
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(AccessDeniedError) as info, map_botocore_errors("upload_file", "b", "k"):
        raise _client_error("SignatureDoesNotMatch", 403, "The request signature we calculated...")
    assert secret not in str(info.value)
