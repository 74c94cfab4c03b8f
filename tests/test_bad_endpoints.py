"""A bad S3_ENDPOINT_URL is a ConfigError naming the variable, on both transports: at
construction, from the environment, and at the first call of the module-level API."""

from __future__ import annotations

import pytest

import mpr_storage
from mpr_storage import ConfigError, Storage, StorageSettings

BAD = pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:abc", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://exa mple.com", "host"),
        ("http://exa\tmple.com:9000", "host"),
        ("http://[::zz]:9000", "host"),
    ],
    ids=["port-out-of-range", "port-not-a-number", "port-zero", "space", "tab", "bad-ipv6"],
)
PATHS = pytest.mark.parametrize("fast_path", ["1", "0"], ids=["fast", "botocore"])


@BAD
def test_a_bad_endpoint_is_a_config_error_naming_the_variable(endpoint: str, why: str) -> None:
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL") as caught:
        StorageSettings(endpoint_url=endpoint)
    assert why in str(caught.value)
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        StorageSettings.from_env({"S3_ENDPOINT_URL": endpoint})


@BAD
@PATHS
async def test_a_bad_endpoint_fails_the_first_call_with_a_config_error(
    endpoint: str, why: str, fast_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "S3_ENDPOINT_URL": endpoint,
        "S3_FAST_PATH": fast_path,
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        await mpr_storage.list_objects("mpr-test", "x/")
    storage = Storage()  # settings are read at first use
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        await storage.list_objects("mpr-test", "x/")
    await storage.aclose()


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:9000", "https://s3.eu-west-1.amazonaws.com", "http://[::1]:9000",
     "http://minio_1:9000", "https://bücher.example/s3"],
)  # fmt: skip
def test_good_endpoints_are_accepted(endpoint: str) -> None:
    assert StorageSettings(endpoint_url=endpoint).endpoint_url == endpoint
