"""Settings from the environment, validation, provider profiles and the botocore config."""

from __future__ import annotations

import pytest

from mpr_storage import ConfigError, StorageSettings
from mpr_storage._config import detect_provider


def test_defaults_without_environment() -> None:
    s = StorageSettings.from_env({})
    assert s.endpoint_url is None
    assert s.bucket_in == "mpr-media-in"
    assert s.bucket_out == "mpr-media-out"
    assert s.profile.name == "aws"
    assert s.signing_region == "us-east-1"
    assert s.url_style == "virtual"
    assert s.max_concurrency == 64
    assert s.client_kwargs().keys() == {"region_name", "config"}  # botocore's default chain


def test_reads_every_variable() -> None:
    env = {
        "S3_ENDPOINT_URL": "http://minio:9000",
        "S3_PUBLIC_ENDPOINT_URL": "https://media.example.com",
        "S3_BUCKET_IN": "in",
        "S3_BUCKET_OUT": "out",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "S3_PROVIDER": "MinIO",
        "S3_ADDRESSING_STYLE": "virtual",
        "S3_MAX_CONCURRENCY": "8",
        "S3_CONNECT_TIMEOUT": "2.5",
        "S3_MAX_ATTEMPTS": "3",
    }
    s = StorageSettings.from_env(env)
    assert (s.endpoint_url, s.public_endpoint_url) == (
        "http://minio:9000",
        "https://media.example.com",
    )
    assert (s.bucket_in, s.bucket_out) == ("in", "out")
    assert (s.access_key_id, s.secret_access_key) == ("AKIDEXAMPLE", "wJalrXUtnFEMI")
    assert s.signing_region == "eu-west-1"
    assert s.provider == "minio" and s.url_style == "virtual"
    assert (s.max_concurrency, s.connect_timeout, s.max_attempts) == (8, 2.5, 3)
    kwargs = s.client_kwargs()
    assert kwargs["endpoint_url"] == "http://minio:9000"
    assert kwargs["aws_access_key_id"] == "AKIDEXAMPLE"
    assert s.client_kwargs(public=True)["endpoint_url"] == "https://media.example.com"


def test_range_settings() -> None:
    s = StorageSettings.from_env({})
    assert (s.range_part_size, s.range_concurrency) == (8 * 1024 * 1024, 16)
    assert s.range_stream_rate == 400 * 1024 * 1024
    env = {"S3_RANGE_PART_SIZE": "16777216", "S3_RANGE_CONCURRENCY": "1"}
    s = StorageSettings.from_env({**env, "S3_RANGE_STREAM_RATE": "0"})
    assert (s.range_part_size, s.range_concurrency) == (16 * 1024 * 1024, 1)
    assert s.range_stream_rate == 0  # always ranges


def test_aws_region_wins_over_default_region() -> None:
    env = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-2"}
    assert StorageSettings.from_env(env).signing_region == "eu-central-1"


def test_explicit_arguments_override_environment() -> None:
    s = StorageSettings.from_env({"S3_BUCKET_OUT": "env-out"}, bucket_out="arg-out")
    assert s.bucket_out == "arg-out"


def test_empty_values_mean_unset() -> None:
    # The GCS example in the design note leaves the key variables empty.
    s = StorageSettings.from_env(
        {
            "S3_ENDPOINT_URL": "",
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "S3_BUCKET_IN": "",
        }
    )
    assert s.endpoint_url is None and s.access_key_id is None and s.bucket_in == "mpr-media-in"


def test_secrets_never_in_repr() -> None:
    s = StorageSettings(
        access_key_id="AKIDSECRETID", secret_access_key="SuperSecret/Key", session_token="TOK"
    )
    text = repr(s) + str(s)
    assert "SuperSecret" not in text and "AKIDSECRETID" not in text and "TOK" not in text


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL"),
        ({"S3_ENDPOINT_URL": "ftp://minio"}, "S3_ENDPOINT_URL"),
        ({"S3_PUBLIC_ENDPOINT_URL": "media.example.com"}, "S3_PUBLIC_ENDPOINT_URL"),
        ({"S3_PROVIDER": "azure"}, "S3_PROVIDER"),
        ({"S3_ADDRESSING_STYLE": "sideways"}, "S3_ADDRESSING_STYLE"),
        ({"S3_MAX_CONCURRENCY": "lots"}, "S3_MAX_CONCURRENCY"),
        ({"S3_MAX_CONCURRENCY": "0"}, "S3_MAX_CONCURRENCY"),
        ({"S3_CONNECT_TIMEOUT": "-1"}, "S3_CONNECT_TIMEOUT"),
        ({"S3_RANGE_PART_SIZE": "0"}, "S3_RANGE_PART_SIZE"),
        ({"S3_RANGE_PART_SIZE": "8M"}, "S3_RANGE_PART_SIZE"),
        ({"S3_RANGE_CONCURRENCY": "0"}, "S3_RANGE_CONCURRENCY"),
        ({"S3_RANGE_CONCURRENCY": "many"}, "S3_RANGE_CONCURRENCY"),
        ({"S3_RANGE_STREAM_RATE": "-1"}, "S3_RANGE_STREAM_RATE"),
        ({"S3_RANGE_STREAM_RATE": "400M"}, "S3_RANGE_STREAM_RATE"),
        ({"AWS_ACCESS_KEY_ID": "AKID"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": "hush-very-secret"}, "AWS_ACCESS_KEY_ID"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable) as info:
        StorageSettings.from_env(env)
    assert "hush-very-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "provider"),
    [
        (None, "aws"),
        ("https://s3.eu-west-1.amazonaws.com", "aws"),
        ("https://storage.googleapis.com", "gcs"),
        ("https://0123abcd.r2.cloudflarestorage.com", "r2"),
        ("http://minio:9000", "minio"),
        ("http://localhost:9000", "minio"),
        ("http://127.0.0.1:8333", "seaweedfs"),
        ("http://seaweedfs-s3:80", "seaweedfs"),
        ("http://127.0.0.1:4566", "generic"),
        ("https://s3.example.org", "generic"),
    ],
)
def test_provider_detection(endpoint: str | None, provider: str) -> None:
    assert detect_provider(endpoint) == provider
    assert StorageSettings(endpoint_url=endpoint).profile.name == provider


def test_provider_variable_wins_over_detection() -> None:
    s = StorageSettings.from_env(
        {"S3_ENDPOINT_URL": "http://127.0.0.1:9000", "S3_PROVIDER": "seaweedfs"}
    )
    assert s.profile.name == "seaweedfs"


@pytest.mark.parametrize(
    ("provider", "endpoint", "style", "checksums", "region", "batch_delete"),
    [
        ("aws", None, "virtual", "when_supported", "us-east-1", True),
        ("minio", "http://minio:9000", "path", "when_required", "us-east-1", True),
        ("seaweedfs", "http://127.0.0.1:8333", "path", "when_required", "us-east-1", True),
        ("generic", "http://127.0.0.1:4566", "path", "when_required", "us-east-1", True),
        ("gcs", "https://storage.googleapis.com", "path", "when_required", "auto", False),
        ("r2", "https://acc.r2.cloudflarestorage.com", "path", "when_required", "auto", True),
    ],
)
def test_botocore_config_per_provider(
    provider: str, endpoint: str | None, style: str, checksums: str, region: str, batch_delete: bool
) -> None:
    s = StorageSettings(
        endpoint_url=endpoint, max_concurrency=16, connect_timeout=3, max_attempts=4
    )
    assert s.profile.name == provider
    assert s.profile.batch_delete is batch_delete
    cfg = s.client_config()
    assert cfg.s3 == {"addressing_style": style}
    assert cfg.request_checksum_calculation == checksums
    assert cfg.response_checksum_validation == checksums
    assert cfg.signature_version == "s3v4"
    assert cfg.region_name == region == s.signing_region
    assert cfg.max_pool_connections == 16
    assert cfg.connect_timeout == 3
    assert cfg.retries == {"total_max_attempts": 4, "mode": "standard"}


def test_settings_are_frozen() -> None:
    s = StorageSettings()
    with pytest.raises(AttributeError):
        s.bucket_in = "x"  # type: ignore[misc]
    assert s.replace(bucket_in="x").bucket_in == "x"
    with pytest.raises(ConfigError, match="S3_MAX_CONCURRENCY"):
        s.replace(max_concurrency=0)


def test_part_concurrency_is_a_setting() -> None:
    assert StorageSettings.from_env({}).part_concurrency == 10  # s3transfer's default
    assert StorageSettings.from_env({"S3_PART_CONCURRENCY": "3"}).part_concurrency == 3
    assert StorageSettings.from_env({}, part_concurrency=1).part_concurrency == 1
    for bad in ("0", "-2", "many", "2.5"):
        with pytest.raises(ConfigError, match="S3_PART_CONCURRENCY"):
            StorageSettings.from_env({"S3_PART_CONCURRENCY": bad})
