"""Fixtures: real local S3 servers (moto in server mode, SeaweedFS), isolated environment."""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mpr_storage import Storage, StorageSettings, _retry
from mpr_storage._server import LocalS3Server
from nettools import ForwardProxy
from s3proxy import FaultProxy

BUCKET = "mpr-test"
# MPR_TEST_SERVERS=seaweedfs (or moto) narrows the servers the `s3`/`server` targets run on:
# the matrix of older Pythons (noxfile.py) runs on SeaweedFS alone.
SERVER_KINDS = tuple(
    k for k in os.environ.get("MPR_TEST_SERVERS", "moto,seaweedfs").split(",") if k
)
# Every test on the wire (through the `s3`/`seaweed` targets) runs on both transports, the
# fast path and botocore, unless it chooses one itself (a `fast_path` parameter).
# MPR_TEST_TRANSPORTS=fast (or botocore) narrows that, e.g. for a quick run on one transport.
TRANSPORTS = tuple(
    t for t in os.environ.get("MPR_TEST_TRANSPORTS", "fast,botocore").split(",") if t
)
_counter = itertools.count()
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# `MPR_TEST_LOOP=uvloop pytest ...` runs the async tests and fixtures on uvloop's event loop
# (`nox -s tests-uvloop`): where pytest-asyncio has the loop-factory hook (1.x), through it, else
# through its `event_loop_policy` fixture (overriding it is deprecated where the hook exists).
TEST_LOOP = os.environ.get("MPR_TEST_LOOP", "asyncio")
if TEST_LOOP == "uvloop":
    import pytest_asyncio.plugin
    import uvloop

    if hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):

        def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
            return {"uvloop": uvloop.new_event_loop}

    else:

        @pytest.fixture(scope="session")
        def event_loop_policy() -> Any:
            return uvloop.EventLoopPolicy()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's AWS configuration, S3 variables or proxy settings."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "S3_")) or name.upper() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "transport" in metafunc.fixturenames and "fast_path" not in metafunc.fixturenames:
        # `one_transport`: the test is about what sits above the wire (the CLI, the sync
        # shim, loop lifecycles); the transports are compared by the tests below it.
        one = metafunc.definition.get_closest_marker("one_transport") is not None
        metafunc.parametrize("transport", TRANSPORTS[:1] if one else TRANSPORTS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that choose their transport themselves (a ``fast_path`` parameter) follow
    MPR_TEST_TRANSPORTS too: those on a transport left out are deselected."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("fast_path") if callspec is not None else None
        if chosen is not None:
            name = "fast" if chosen in (True, "1") else "botocore"
            if name not in TRANSPORTS:
                dropped.append(item)
                continue
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """``fast`` or ``botocore``: the transport of the test's S3 target (``S3_FAST_PATH``)."""
    return str(getattr(request, "param", "fast"))


class VirtualClock(_retry.Clock):
    """The retry loop's clock, with backoff waits recorded and skipped: the schedule is
    checked (``waits``), not slept through. Virtual time adds what was skipped to the real
    clock, so a retry budget still ends a request."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._skipped = 0.0

    def now(self) -> float:
        return super().now() + self._skipped

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._skipped += seconds
        await anyio.lowlevel.checkpoint()  # still a checkpoint, as a real wait is


@pytest.fixture(autouse=True)
def backoff(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    """Retries in this process wait no real time. Subprocesses keep the real clock."""
    clock = VirtualClock()
    monkeypatch.setattr(_retry, "clock", clock)
    return clock


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir, for this test alone: the other test workers write to the real one
    meanwhile (certificates, proxies), so listing it would see their files."""
    path = tmp_path / "system-temp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def _start(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    data_dir = tmp_path_factory.mktemp(f"{kind}-data") if kind == "seaweedfs" else None
    # Throw-away data: no graceful SeaweedFS shutdown (it may hang on SIGTERM), killed at once.
    with LocalS3Server(kind=kind, data_dir=data_dir, stop_timeout=0) as server:  # type: ignore[arg-type]
        server.create_buckets(BUCKET, "mpr-media-in", "mpr-media-out")
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    yield from _start("moto", tmp_path_factory)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    yield from _start("seaweedfs", tmp_path_factory)


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> LocalS3Server:
    """Each test using it runs once against moto and once against SeaweedFS."""
    srv: LocalS3Server = request.getfixturevalue(f"{request.param}_server")
    return srv


@dataclass
class S3Target:
    """A server, a bucket, and a key prefix private to the current test."""

    server: LocalS3Server
    bucket: str
    prefix: str
    transport: str = "fast"

    @property
    def kind(self) -> str:
        return self.server.kind

    def settings(self, **overrides: Any) -> StorageSettings:
        return StorageSettings.from_env(self.env(), **overrides)

    def env(self) -> dict[str, str]:
        """The server's environment, with the test's transport (``S3_FAST_PATH``)."""
        return {**self.server.env(), "S3_FAST_PATH": "1" if self.transport == "fast" else "0"}

    def key(self, name: str) -> str:
        return self.prefix + name


def _target(
    server: LocalS3Server, request: pytest.FixtureRequest, mp: pytest.MonkeyPatch, transport: str
) -> S3Target:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    target = S3Target(server, BUCKET, f"t{next(_counter)}-{name}/", transport)
    for var, value in target.env().items():
        mp.setenv(var, value)  # the module-level API and subprocesses see the same target
    return target


@pytest.fixture
def s3(
    server: LocalS3Server,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> S3Target:
    """A target on each server and transport; the environment points the module-level API
    at it."""
    return _target(server, request, monkeypatch, transport)


@pytest.fixture
def seaweed(
    seaweedfs_server: LocalS3Server,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> S3Target:
    """A target on SeaweedFS only (it checks signatures and expiry like MinIO/AWS do), on
    each transport."""
    return _target(seaweedfs_server, request, monkeypatch, transport)


@pytest.fixture
def proxy(s3: S3Target) -> Iterator[FaultProxy]:
    """A fault-injecting, request-counting proxy in front of the test's server."""
    with FaultProxy(s3.server.endpoint_url) as p:
        yield p


@pytest.fixture
async def storage(s3: S3Target) -> AsyncIterator[Storage]:
    async with Storage(s3.settings()) as st:
        yield st


@pytest.fixture(scope="session")
def _forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    with ForwardProxy(tmp_path_factory.mktemp("forward-proxy")) as p:
        yield p


@pytest.fixture
def forward_proxy(_forward_proxy: ForwardProxy) -> ForwardProxy:
    """A real HTTP forward proxy (proxy.py) on loopback; its request log starts empty."""
    _forward_proxy.reset()
    return _forward_proxy


@pytest.fixture(scope="session")
def tls_ca() -> Any:
    """A throw-away certificate authority (``trustme.CA``) for TLS fronts on 127.0.0.1."""
    import trustme

    return trustme.CA()
