"""Settings from the environment, and the provider profiles that carry S3-compatible quirks."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from . import _sizes
from ._endpoint import check_endpoint_url, without_userinfo
from ._errors import ConfigError, redact_url

__all__ = [
    "DEFAULT_BUCKET_IN",
    "DEFAULT_BUCKET_OUT",
    "PROVIDERS",
    "ProviderProfile",
    "StorageSettings",
    "detect_provider",
]

DEFAULT_BUCKET_IN = "mpr-media-in"
DEFAULT_BUCKET_OUT = "mpr-media-out"

Provider = Literal["aws", "minio", "seaweedfs", "gcs", "r2", "generic"]
Checksum = Literal["md5", "crc32"]
AddressingStyle = Literal["path", "virtual"]


@dataclass(frozen=True)
class ProviderProfile:
    """What differs between S3-compatible stores.

    Attributes:
        name: provider name (the ``S3_PROVIDER`` value).
        addressing_style: default URL style; path-style works everywhere but AWS prefers virtual.
        checksums: botocore's ``request_checksum_calculation``. botocore >= 1.36 adds CRC
            checksums to every upload by default, which most S3-compatible stores reject or
            mangle, so non-AWS stores only send them ``when_required``.
        default_region: region used for signing when none is configured.
        batch_delete: whether the multi-object ``DeleteObjects`` call is available.
        upload_checksum: what every PutObject carries for the store to check its body:
            ``Content-MD5`` (``"md5"``, understood everywhere), or ``x-amz-checksum-crc32``
            (``"crc32"``, ~1/80 of MD5's CPU with zlib-ng) where the store is known to refuse
            a body that does not match it: AWS (botocore's default checksum there) and
            SeaweedFS.
        create_only: whether PutObject honours ``If-None-Match: *`` (``put_bytes(...,
            overwrite=False)``); GCS's XML API has only a generation precondition instead.
    """

    name: Provider
    addressing_style: AddressingStyle
    checksums: Literal["when_supported", "when_required"]
    default_region: str
    batch_delete: bool = True
    upload_checksum: Checksum = "md5"
    create_only: bool = True


PROVIDERS: Mapping[str, ProviderProfile] = {
    "aws": ProviderProfile(
        "aws", "virtual", "when_supported", "us-east-1", upload_checksum="crc32"
    ),
    "minio": ProviderProfile("minio", "path", "when_required", "us-east-1"),
    "seaweedfs": ProviderProfile(
        "seaweedfs", "path", "when_required", "us-east-1", upload_checksum="crc32"
    ),
    "generic": ProviderProfile("generic", "path", "when_required", "us-east-1"),
    # GCS's XML API speaks SigV4 with HMAC keys but has no multi-object delete.
    "gcs": ProviderProfile(
        "gcs", "path", "when_required", "auto", batch_delete=False, create_only=False
    ),
    "r2": ProviderProfile("r2", "path", "when_required", "auto"),
}


def detect_provider(endpoint_url: str | None) -> Provider:
    """Guess the provider from the endpoint host; no endpoint means AWS."""
    if not endpoint_url:
        return "aws"
    parts = urlsplit(endpoint_url)
    host = (parts.hostname or "").lower()
    if host == "amazonaws.com" or host.endswith(".amazonaws.com"):
        return "aws"
    if host == "storage.googleapis.com" or host.endswith(".storage.googleapis.com"):
        return "gcs"
    if host.endswith(".r2.cloudflarestorage.com"):
        return "r2"
    if "minio" in host or parts.port == 9000:
        return "minio"
    if "seaweed" in host or parts.port == 8333:
        return "seaweedfs"
    return "generic"


def _env_field(env: str, default: Any = None, *, secret: bool = False, **kw: Any) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env}, **kw)


@dataclass(frozen=True)
class StorageSettings:
    """Everything needed to talk to one S3-compatible store.

    Build it from the environment with :meth:`from_env` (explicit keyword arguments win over
    the environment) or directly. Values are validated on construction; a bad value raises
    :class:`ConfigError` naming its environment variable. Credentials never appear in
    ``repr()``, nor does a password in an endpoint URL.
    """

    endpoint_url: str | None = _env_field("S3_ENDPOINT_URL")
    """**Environment variable**: ``S3_ENDPOINT_URL``. S3 API endpoint; ``None`` means AWS."""
    public_endpoint_url: str | None = _env_field("S3_PUBLIC_ENDPOINT_URL")
    """**Environment variable**: ``S3_PUBLIC_ENDPOINT_URL``. Host that browsers reach;
    presigned URLs are signed for it. Defaults to ``endpoint_url``."""
    bucket_in: str = _env_field("S3_BUCKET_IN", DEFAULT_BUCKET_IN)
    """**Environment variable**: ``S3_BUCKET_IN``. Source media bucket."""
    bucket_out: str = _env_field("S3_BUCKET_OUT", DEFAULT_BUCKET_OUT)
    """**Environment variable**: ``S3_BUCKET_OUT``. Artifacts bucket (frame caches, overlays)."""
    access_key_id: str | None = _env_field("AWS_ACCESS_KEY_ID", secret=True)
    """**Environment variable**: ``AWS_ACCESS_KEY_ID``. ``None`` = botocore's default chain."""
    secret_access_key: str | None = _env_field("AWS_SECRET_ACCESS_KEY", secret=True)
    """**Environment variable**: ``AWS_SECRET_ACCESS_KEY``."""
    session_token: str | None = _env_field("AWS_SESSION_TOKEN", secret=True)
    """**Environment variable**: ``AWS_SESSION_TOKEN``. Only for temporary credentials."""
    region: str | None = _env_field("AWS_REGION")
    """**Environment variable**: ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``). Signing region;
    defaults to the provider's (``us-east-1``, ``auto`` for R2 and GCS)."""
    provider: Provider | None = _env_field("S3_PROVIDER")
    """**Environment variable**: ``S3_PROVIDER``. Detected from the endpoint host if unset."""
    addressing_style: AddressingStyle | None = _env_field("S3_ADDRESSING_STYLE")
    """**Environment variable**: ``S3_ADDRESSING_STYLE``. ``path`` or ``virtual``; defaults
    to the provider's."""
    max_concurrency: int = _env_field("S3_MAX_CONCURRENCY", _sizes.MAX_CONCURRENCY)
    """**Environment variable**: ``S3_MAX_CONCURRENCY``. Default bulk concurrency and
    connection pool size."""
    connect_timeout: float = _env_field("S3_CONNECT_TIMEOUT", 5.0)
    """**Environment variable**: ``S3_CONNECT_TIMEOUT``. Seconds to open a connection."""
    read_timeout: float = _env_field("S3_READ_TIMEOUT", 60.0)
    """**Environment variable**: ``S3_READ_TIMEOUT``. Seconds without a byte before giving up."""
    max_attempts: int = _env_field("S3_MAX_ATTEMPTS", 5)
    """**Environment variable**: ``S3_MAX_ATTEMPTS``. Attempts per request, first included."""
    multipart_threshold: int = _env_field("S3_MULTIPART_THRESHOLD", _sizes.MULTIPART_THRESHOLD)
    """**Environment variable**: ``S3_MULTIPART_THRESHOLD``. Uploads at least this large use
    multipart."""
    multipart_chunksize: int = _env_field("S3_MULTIPART_CHUNKSIZE", _sizes.MULTIPART_CHUNKSIZE)
    """**Environment variable**: ``S3_MULTIPART_CHUNKSIZE``. Part size (S3's minimum is 5 MiB),
    grown to whole MiB for files that would need more than S3's 10,000 parts."""
    range_part_size: int = _env_field("S3_RANGE_PART_SIZE", _sizes.RANGE_PART_SIZE)
    """**Environment variable**: ``S3_RANGE_PART_SIZE``. Downloads larger than this are fetched
    as byte ranges on several connections; the smallest range, grown (up to 8x) with the
    object so that about ``S3_RANGE_CONCURRENCY`` ranges cover it."""
    range_concurrency: int = _env_field("S3_RANGE_CONCURRENCY", _sizes.RANGE_CONCURRENCY)
    """**Environment variable**: ``S3_RANGE_CONCURRENCY``. Connections per downloaded object
    (in bulk calls, shared with the call's ``concurrency``); ``1`` turns ranges off."""
    range_stream_rate: int = _env_field("S3_RANGE_STREAM_RATE", _sizes.RANGE_STREAM_RATE)
    """**Environment variable**: ``S3_RANGE_STREAM_RATE``. Bytes per second (400 MiB/s) at
    which one connection is enough: when a large download's first range arrives at least this
    fast, the rest follows as one more request on that connection instead of ranges (there
    the client's CPU, not the network, is the limit, and more connections only cost CPU);
    slower, the other ranges start as soon as it is clear. ``0`` always uses ranges."""
    part_concurrency: int = _env_field("S3_PART_CONCURRENCY", _sizes.PART_CONCURRENCY)
    """**Environment variable**: ``S3_PART_CONCURRENCY``. Parts of multipart uploads in flight
    at once, each read from the file when its turn comes and held until it is sent: uploads
    hold at most this many x ``S3_MULTIPART_CHUNKSIZE`` bytes of parts (a bulk upload, for
    all its large files together). ``1`` sends the parts one after the other."""
    retry_budget: float = _env_field("S3_RETRY_BUDGET", 60.0)
    """**Environment variable**: ``S3_RETRY_BUDGET``. Seconds one request may spend in retries
    (backoff and ``Retry-After`` waits included) before its last error is raised."""
    anonymous: bool = _env_field("S3_ANONYMOUS", False)
    """**Environment variable**: ``S3_ANONYMOUS``. When no credentials are found, send unsigned
    requests (public buckets) instead of raising :class:`ConfigError`."""
    ca_bundle: str | None = _env_field("AWS_CA_BUNDLE")
    """**Environment variable**: ``AWS_CA_BUNDLE``. CA certificates (PEM file) to verify TLS
    endpoints with, as botocore uses it; defaults to the system's."""
    fast_path: bool = _env_field("S3_FAST_PATH", True)
    """**Environment variable**: ``S3_FAST_PATH``. Bulk transfers sign requests with botocore
    and send them with aiohttp directly (``1``); ``0`` sends every request through botocore."""

    def __post_init__(self) -> None:
        for name in ("endpoint_url", "public_endpoint_url"):
            value = getattr(self, name)
            if value == "":
                object.__setattr__(self, name, None)
            elif value is not None:
                check_endpoint_url(value, _env_name(name))
        for name in ("access_key_id", "secret_access_key", "session_token", "region", "ca_bundle"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if self.provider is not None and self.provider not in PROVIDERS:
            raise ConfigError(
                f"S3_PROVIDER={self.provider!r} is not one of {', '.join(sorted(PROVIDERS))}"
            )
        if self.addressing_style not in (None, "path", "virtual"):
            raise ConfigError(
                f"S3_ADDRESSING_STYLE={self.addressing_style!r} must be 'path' or 'virtual'"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            missing = (
                "AWS_SECRET_ACCESS_KEY" if self.secret_access_key is None else ("AWS_ACCESS_KEY_ID")
            )
            raise ConfigError(f"{missing} is missing: set both access key variables, or neither")
        for name in ("bucket_in", "bucket_out"):
            if not getattr(self, name):
                raise ConfigError(f"{_env_name(name)} must not be empty")
        _check_positive(self.max_concurrency, "S3_MAX_CONCURRENCY")
        _check_positive(self.connect_timeout, "S3_CONNECT_TIMEOUT")
        _check_positive(self.read_timeout, "S3_READ_TIMEOUT")
        _check_positive(self.max_attempts, "S3_MAX_ATTEMPTS")
        _check_positive(self.retry_budget, "S3_RETRY_BUDGET")
        if not isinstance(self.part_concurrency, int) or self.part_concurrency < 1:
            raise ConfigError(
                f"S3_PART_CONCURRENCY={self.part_concurrency!r} must be a positive integer"
            )
        if self.multipart_chunksize < _sizes.MIN_PART:
            raise ConfigError("S3_MULTIPART_CHUNKSIZE must be at least 5 MiB (S3's part minimum)")
        _check_positive(self.multipart_threshold, "S3_MULTIPART_THRESHOLD")
        _check_positive(self.range_part_size, "S3_RANGE_PART_SIZE")
        _check_positive(self.range_concurrency, "S3_RANGE_CONCURRENCY")
        if not isinstance(self.range_stream_rate, int) or self.range_stream_rate < 0:
            raise ConfigError(
                f"S3_RANGE_STREAM_RATE={self.range_stream_rate!r} must be a whole number of "
                "bytes per second, 0 or more"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> StorageSettings:
        """Read settings from ``environ`` (default ``os.environ``); ``overrides`` win.

        Raises:
            ConfigError: a variable has a bad value; the message names it.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides:
                continue
            raw = env.get(f.metadata["env"])
            if f.name == "region" and not raw:
                raw = env.get("AWS_DEFAULT_REGION")
            if raw is None or (raw == "" and f.default is not None):
                continue
            values[f.name] = _parse(raw, f)
        if isinstance(values.get("provider"), str):
            values["provider"] = values["provider"].lower()
        return cls(**values, **overrides)

    def __repr__(self) -> str:
        shown = (
            f"{f.name}={_shown(f.name, getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if f.repr
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    def replace(self, **changes: Any) -> StorageSettings:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def profile(self) -> ProviderProfile:
        """The provider profile: ``S3_PROVIDER`` or detected from the endpoint."""
        return PROVIDERS[self.provider or detect_provider(self.endpoint_url)]

    @property
    def signing_region(self) -> str:
        """The region requests are signed for."""
        return self.region or self.profile.default_region

    @property
    def url_style(self) -> AddressingStyle:
        """The addressing style in effect."""
        if self.addressing_style:
            return self.addressing_style
        return "virtual" if self.endpoint_url is None else self.profile.addressing_style

    def config_options(self) -> dict[str, Any]:
        """Keyword arguments of botocore's ``Config`` (and aiobotocore's ``AioConfig``) for this
        store: timeouts, retries, pool size and the provider's quirks."""
        checksums = self.profile.checksums
        return {
            "region_name": self.signing_region,
            "signature_version": "s3v4",
            "s3": {"addressing_style": self.url_style},
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            # botocore counts retries in "max_attempts"; "total_max_attempts" includes the first try
            "retries": {"total_max_attempts": self.max_attempts, "mode": "standard"},
            "max_pool_connections": self.max_concurrency,
            "request_checksum_calculation": checksums,
            "response_checksum_validation": checksums,
            "tcp_keepalive": True,
        }

    def client_config(self, **overrides: Any) -> Any:
        """The aiobotocore ``AioConfig`` for this store (see :meth:`config_options`), with
        ``overrides`` of those options."""
        from aiobotocore.config import AioConfig

        return AioConfig(**{**self.config_options(), **overrides})

    def client_kwargs(self, *, public: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``session.create_client("s3", ...)``."""
        endpoint = (self.public_endpoint_url or self.endpoint_url) if public else self.endpoint_url
        kwargs: dict[str, Any] = {
            "region_name": self.signing_region,
            "config": self.client_config(),
        }
        if endpoint:
            # Requests are signed: userinfo is never sent (aiohttp refuses it beside a
            # signature), and botocore would show it in its errors.
            kwargs["endpoint_url"] = without_userinfo(endpoint)
        if self.ca_bundle:
            kwargs["verify"] = self.ca_bundle
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
            if self.session_token:
                kwargs["aws_session_token"] = self.session_token
        return kwargs


def _env_name(field_name: str) -> str:
    return str(StorageSettings.__dataclass_fields__[field_name].metadata["env"])


def _parse(raw: str, f: dataclasses.Field[Any]) -> Any:
    kind: type = type(f.default) if isinstance(f.default, (int, float)) else str
    if kind is str:
        return raw.strip()
    if kind is bool:
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{f.metadata['env']}={raw!r} must be 1/0, true/false, yes/no or on/off")
    try:
        return kind(raw.strip())
    except ValueError:
        raise ConfigError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None


def _shown(name: str, value: Any) -> str:
    if name in ("endpoint_url", "public_endpoint_url") and isinstance(value, str):
        return repr(redact_url(value))
    return repr(value)


def _check_positive(value: float, env: str) -> None:
    if not value > 0:
        raise ConfigError(f"{env}={value!r} must be a positive number")
