"""The error tree and the translation boundary."""

from __future__ import annotations

import pickle

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

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
from mpr_storage._errors import error_for_code, map_errors


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
    with pytest.raises(cls) as info, map_errors("download_file", "bkt", key):
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
    with pytest.raises(StorageConnectionError) as info, map_errors("list_objects", "b"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, StorageTimeoutError)
    with pytest.raises(StorageTimeoutError) as tinfo, map_errors("list_objects", "b"):
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:1")
    assert isinstance(tinfo.value, TimeoutError) and isinstance(tinfo.value, StorageConnectionError)


def test_missing_credentials_is_a_config_error_naming_variables() -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"), map_errors("list_objects", "b"):
        raise NoCredentialsError()


def test_our_errors_pass_through_unchanged() -> None:
    original = InvalidKeyError("bad", operation="x")
    with pytest.raises(InvalidKeyError) as info, map_errors("y"):
        raise original
    assert info.value is original


def test_unrelated_errors_are_not_swallowed() -> None:
    with pytest.raises(KeyError), map_errors("y"):
        raise KeyError("k")


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
    with pytest.raises(AccessDeniedError) as info, map_errors("upload_file", "b", "k"):
        raise _client_error("SignatureDoesNotMatch", 403, "The request signature we calculated...")
    assert secret not in str(info.value)
