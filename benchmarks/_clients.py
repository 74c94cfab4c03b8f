"""One benchmark run of one client, in a fresh process: ``python _clients.py SPEC.json``.

The parent (``bench.py``) writes a JSON spec (client, scenario, endpoint, paths) and reads the
JSON result this process writes to ``spec["result"]``. Only the measured client's library is
imported. Timing, CPU and memory are taken here, around the work only:

- ``wall``: ``time.perf_counter()`` around the work (client setup is timed apart as ``setup``);
- ``cpu``: ``getrusage(RUSAGE_SELF)`` user + sys around the work (all threads of the process:
  anyio's worker threads, obstore's tokio runtime), plus ``RUSAGE_CHILDREN``'s: the processes
  the client started and reaped within the work (mpr_storage's file-making helper; the
  tracer of a ``strace`` run ends after it and is not counted);
- ``rss_peak_delta``: the kernel's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``
  right before the work) minus the RSS at that moment, i.e. over the post-import, post-setup
  baseline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024  # every streaming client reads and writes 1 MiB chunks


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _children_cpu() -> tuple[float, float]:
    """User and system CPU of the child processes this process has reaped."""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime, u.ru_stime


def _usage() -> tuple[float, float, int, int]:
    """User CPU, system CPU, voluntary and involuntary context switches of this process."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime, u.ru_nvcsw, u.ru_nivcsw


def _source_hash(package: Path) -> str:
    """A fingerprint of the package's source: the library may be edited between runs."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _io_counters() -> tuple[int, int]:
    """Read and write system calls of this process so far (all threads; ``/proc/self/io``)."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            fields = dict(line.split(": ") for line in f.read().splitlines())
        return int(fields["syscr"]), int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def _start_strace(path: str) -> Any:
    """``strace -c -f`` attached to this process (all its threads) until :func:`_stop_strace`:
    the system calls of the work alone, not of imports and setup."""
    import subprocess

    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-p", str(os.getpid()), "-o", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while _status_kib_field("TracerPid") == 0:  # attached
        if time.monotonic() > deadline or tracer.poll() is not None:
            raise RuntimeError("strace did not attach")
        time.sleep(0.01)
    return tracer


def _stop_strace(tracer: Any) -> None:
    import signal

    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=60)


def _status_kib_field(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        match = re.search(rf"^{field}:\s+(\d+)", f.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _latency_notes(prefix: str, latencies: list[float]) -> dict[str, float]:
    """Median and p99 of per-call latencies (seconds)."""
    ordered = sorted(latencies)
    if not ordered:
        return {}
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {f"{prefix}_median": ordered[len(ordered) // 2], f"{prefix}_p99": p99}


async def _timed_exists(
    exists: Any, keys: list[str], concurrency: int
) -> tuple[list[bool], list[float], float]:
    """``exists(key)`` for every key, ``concurrency`` at a time: answers, latencies, wall."""
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(key: str) -> bool:
        async with semaphore:
            t0 = time.perf_counter()
            found = bool(await exists(key))
            latencies.append(time.perf_counter() - t0)
            return found

    t0 = time.perf_counter()
    answers = await asyncio.gather(*(one(k) for k in keys))
    return list(answers), latencies, time.perf_counter() - t0


async def _timed_presign(presign: Any, keys: list[str]) -> tuple[list[str], list[float], float]:
    """``presign(key)`` for every key, one after the other (an API handler's loop)."""
    urls, latencies = [], []
    t0 = time.perf_counter()
    for key in keys:
        t1 = time.perf_counter()
        urls.append(await presign(key))
        latencies.append(time.perf_counter() - t1)
    return urls, latencies, time.perf_counter() - t0


def _rel(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


# --- clients -------------------------------------------------------------------------------
# Each client: ``setup()``, ``prefetch()`` / ``upload()`` / ``large()`` -> (objects, bytes),
# ``list_only()`` -> objects (scenario d, timed apart after the main work), ``close()``.


class Client:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.bucket: str = spec["bucket"]
        self.concurrency: int = spec["concurrency"]
        self.notes: dict[str, Any] = {}

    async def setup(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def prefetch(self) -> tuple[int, int]:
        raise NotImplementedError

    async def upload(self) -> tuple[int, int]:
        raise NotImplementedError

    async def large(self) -> tuple[int, int]:
        raise NotImplementedError

    async def large_up(self) -> tuple[int, int]:
        """One large local file (``spec["src_file"]``) up to one object (``spec["key"]``)."""
        raise NotImplementedError

    async def list_only(self) -> int:
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        raise NotImplementedError

    async def presign(self, key: str) -> str:
        raise NotImplementedError

    async def api(self) -> tuple[int, int]:
        """Scenario (e): ``object_exists`` of every key at concurrency ``api_concurrency``,
        then a presigned GET URL of every key, one after the other."""
        keys = [self.spec["prefix"] + rel for rel in self.spec["names"]]
        answers, exist_lat, exist_wall = await _timed_exists(
            self.exists, keys, self.spec["api_concurrency"]
        )
        urls, presign_lat, presign_wall = await _timed_presign(self.presign, keys)
        self.notes.update(
            exists_wall=exist_wall,
            presign_wall=presign_wall,
            found=sum(answers),
            sample_urls=dict(zip(self.spec["names"][::125], urls[::125], strict=True)),
            **_latency_notes("exists", exist_lat),
            **_latency_notes("presign", presign_lat),
        )
        return len(answers) + len(urls), 0


class MprStorage(Client):
    """Our library through its public API (settings from the environment the parent set)."""

    async def setup(self) -> None:
        import mpr_storage

        self.m = mpr_storage
        self.notes["source"] = _source_hash(Path(mpr_storage.__file__).parent)
        await mpr_storage.get_s3_client()  # the per-loop client, as a long-lived service has it

    async def prefetch(self) -> tuple[int, int]:
        report = await self.m.prefetch_frames(
            self.spec["timeline_id"],
            self.spec["dest"],
            bucket=self.bucket,
            concurrency=self.concurrency,
        )
        self.notes.update(skipped=len(report.skipped), failed=len(report.failed))
        if report.skipped:
            raise RuntimeError(f"{len(report.skipped)} keys skipped on a fresh destination")
        return len(report.done), report.bytes

    async def upload(self) -> tuple[int, int]:
        report = await self.m.upload_many(
            self.spec["src"], self.bucket, self.spec["prefix"], concurrency=self.concurrency
        )
        self.notes.update(skipped=len(report.skipped), failed=len(report.failed))
        return len(report.done), report.bytes

    async def large(self) -> tuple[int, int]:
        path = await self.m.download_file(self.bucket, self.spec["key"], self.spec["dest"])
        return 1, path.stat().st_size

    async def large_up(self) -> tuple[int, int]:
        await self.m.upload_file(self.spec["src_file"], self.bucket, self.spec["key"])
        return 1, os.path.getsize(self.spec["src_file"])

    async def list_only(self) -> int:
        return len(await self.m.list_objects(self.bucket, self.spec["prefix"]))

    async def exists(self, key: str) -> bool:
        return await self.m.object_exists(self.bucket, key)

    async def presign(self, key: str) -> str:
        return await self.m.get_presigned_url(self.bucket, key)


class Aioboto3(Client):
    """aioboto3 best practice: one client, pool = concurrency, Semaphore, plain-file writes."""

    async def setup(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig

        spec = self.spec
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=self.concurrency,
            # S3-compatible stores: no default CRC checksums (botocore >= 1.36).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._cm = aioboto3.Session().client(
            "s3",
            endpoint_url=spec["endpoint"],
            aws_access_key_id=spec["access_key"],
            aws_secret_access_key=spec["secret_key"],
            region_name=spec["region"],
            config=config,
        )
        self.s3 = await self._cm.__aenter__()

    async def close(self) -> None:
        await self._cm.__aexit__(None, None, None)

    async def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        return keys

    async def _get_to_file(self, key: str, path: str) -> int:
        response = await self.s3.get_object(Bucket=self.bucket, Key=key)
        received = 0
        body = response["Body"]
        async with body:  # releases the connection (its __aenter__ returns aiohttp's response)
            with open(path, "wb") as f:  # noqa: ASYNC230 - plain file writes are the point
                async for chunk in body.iter_chunks(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
        return received

    async def prefetch(self) -> tuple[int, int]:
        prefix, dest = self.spec["prefix"], self.spec["dest"]
        keys = await self._keys(prefix)
        os.makedirs(dest, exist_ok=True)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str) -> int:
            async with semaphore:
                return await self._get_to_file(key, os.path.join(dest, _rel(key, prefix)))

        sizes = await asyncio.gather(*(one(k) for k in keys))
        return len(sizes), sum(sizes)

    async def upload(self) -> tuple[int, int]:
        src, prefix = self.spec["src"], self.spec["prefix"]
        names = sorted(os.listdir(src))
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(name: str) -> int:
            async with semaphore:
                with open(os.path.join(src, name), "rb") as f:  # noqa: ASYNC230
                    data = f.read()
                await self.s3.put_object(Bucket=self.bucket, Key=prefix + name, Body=data)
                return len(data)

        sizes = await asyncio.gather(*(one(n) for n in names))
        return len(sizes), sum(sizes)

    async def large(self) -> tuple[int, int]:
        return 1, await self._get_to_file(self.spec["key"], self.spec["dest"])

    async def list_only(self) -> int:
        return len(await self._keys(self.spec["prefix"]))

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def presign(self, key: str) -> str:
        url: str = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=3600
        )
        return url


def _obstore_options() -> dict[str, Any]:
    options: dict[str, Any] = {"allow_http": True, "timeout": "300s"}
    ca = os.environ.get("AWS_CA_BUNDLE")
    if ca:  # the private CA of the provider-link server (HTTPS)
        options["root_certificate"] = Path(ca).read_bytes()
    return options


class Obstore(Client):
    """obstore (Rust object_store): S3Store, get_async under a Semaphore, list for LIST."""

    async def setup(self) -> None:
        import obstore
        from obstore.store import S3Store

        spec = self.spec
        self.obs = obstore
        self.store = S3Store(
            self.bucket,
            endpoint=spec["endpoint"],
            access_key_id=spec["access_key"],
            secret_access_key=spec["secret_key"],
            region=spec["region"],
            virtual_hosted_style_request=False,
            client_options=_obstore_options(),
        )

    async def prefetch(self) -> tuple[int, int]:
        prefix, dest = self.spec["prefix"], self.spec["dest"]
        paths: list[str] = []
        # obstore prefixes are path-segment based: "frames/x" lists "frames/x/...".
        async for chunk in self.obs.list(self.store, prefix.rstrip("/"), chunk_size=1000):
            paths.extend(meta["path"] for meta in chunk)
        os.makedirs(dest, exist_ok=True)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(path: str) -> int:
            async with semaphore:
                result = await self.obs.get_async(self.store, path)
                data = await result.bytes_async()
                with open(os.path.join(dest, _rel(path, prefix)), "wb") as f:  # noqa: ASYNC230
                    f.write(data)
                return len(data)

        sizes = await asyncio.gather(*(one(p) for p in paths))
        return len(sizes), sum(sizes)

    async def upload(self) -> tuple[int, int]:
        src, prefix = self.spec["src"], self.spec["prefix"]
        names = sorted(os.listdir(src))
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(name: str) -> int:
            async with semaphore:
                with open(os.path.join(src, name), "rb") as f:  # noqa: ASYNC230
                    data = f.read()
                await self.obs.put_async(self.store, prefix + name, data)
                return len(data)

        sizes = await asyncio.gather(*(one(n) for n in names))
        return len(sizes), sum(sizes)

    async def large(self) -> tuple[int, int]:
        result = await self.obs.get_async(self.store, self.spec["key"])
        received = 0
        with open(self.spec["dest"], "wb") as f:  # noqa: ASYNC230
            async for chunk in result.stream(min_chunk_size=CHUNK):
                f.write(chunk)
                received += len(chunk)
        return 1, received


class RawAiohttp(Client):
    """The floor: GETs of presigned URLs on one aiohttp session. The LIST and the presigning
    (botocore, sync) happen in ``setup`` and are NOT timed."""

    async def setup(self) -> None:
        import aiohttp
        import boto3
        from botocore.config import Config
        from yarl import URL

        spec = self.spec
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=spec["endpoint"],
            aws_access_key_id=spec["access_key"],
            aws_secret_access_key=spec["secret_key"],
            region_name=spec["region"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        if spec["kind"] == "large":
            keys = [spec["key"]]
        else:
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=spec["prefix"]
            ):
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        self.urls = [
            (
                key,
                URL(
                    s3.generate_presigned_url(
                        "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=3600
                    ),
                    encoded=True,
                ),
            )
            for key in keys
        ]
        s3.close()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        )

    async def close(self) -> None:
        await self.http.close()

    async def _get_to_file(self, url: Any, path: str, *, stream: bool) -> int:
        async with self.http.get(url) as response:
            response.raise_for_status()
            with open(path, "wb") as f:  # noqa: ASYNC230
                if not stream:
                    data = await response.read()
                    f.write(data)
                    return len(data)
                received = 0
                async for chunk in response.content.iter_chunked(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                return received

    async def prefetch(self) -> tuple[int, int]:
        prefix, dest = self.spec["prefix"], self.spec["dest"]
        os.makedirs(dest, exist_ok=True)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(key: str, url: Any) -> int:
            async with semaphore:
                path = os.path.join(dest, _rel(key, prefix))
                return await self._get_to_file(url, path, stream=False)

        sizes = await asyncio.gather(*(one(k, u) for k, u in self.urls))
        return len(sizes), sum(sizes)

    async def large(self) -> tuple[int, int]:
        (_, url) = self.urls[0]
        return 1, await self._get_to_file(url, self.spec["dest"], stream=True)


class MprStorageLogging(MprStorage):
    """The same, in an application that configured logging (the root logger at WARNING):
    the library's INFO and DEBUG lines are disabled, so their cost is one level check each."""

    async def setup(self) -> None:
        import logging

        logging.basicConfig(level=logging.WARNING)
        await super().setup()


def _clients() -> dict[str, type[Client]]:
    from _clients_link import AwsCrt, Boto3, Obstore16  # the provider-link scenarios' others

    return {
        "mpr_storage": MprStorage,
        "mpr_storage_logging": MprStorageLogging,
        "aioboto3": Aioboto3,
        "obstore": Obstore,
        "aiohttp": RawAiohttp,
        "obstore16": Obstore16,
        "boto3": Boto3,
        "awscrt": AwsCrt,
    }


# --- the measured run ----------------------------------------------------------------------


async def _measure(spec: dict[str, Any], out: dict[str, Any]) -> None:
    classes = _clients()
    if spec.get("clients_module"):  # a kind a scenario group adds, with its own clients
        import importlib

        classes.update(importlib.import_module(spec["clients_module"]).CLIENTS)
    client = classes[spec["client"]](spec)
    t0 = time.perf_counter()
    await client.setup()
    out["setup"] = time.perf_counter() - t0
    work = getattr(client, spec["kind"])  # prefetch, upload, large, large_up, api, ...
    out["loop"] = type(asyncio.get_running_loop()).__module__
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    try:
        gc.collect()
        out["rss_reset"] = _reset_peak_rss()
        rss0 = _status_kib("VmRSS")
        hwm0 = _status_kib("VmHWM")
        maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        usage0 = _usage()
        kids0 = _children_cpu()
        io0 = _io_counters()
        tracer = _start_strace(spec["strace"]) if spec.get("strace") else None
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        count, nbytes = await work()
        if profiler is not None:
            profiler.disable()
        out["wall"] = time.perf_counter() - t0
        kids1 = _children_cpu()  # before the tracer is reaped: the client's children only
        if tracer is not None:
            _stop_strace(tracer)
        usage1 = _usage()
        io1 = _io_counters()
        out["syscr"], out["syscw"] = io1[0] - io0[0], io1[1] - io0[1]
        user, system, voluntary, involuntary = (b - a for a, b in zip(usage0, usage1, strict=True))
        kids_user, kids_sys = (b - a for a, b in zip(kids0, kids1, strict=True))
        user, system = user + kids_user, system + kids_sys
        out.update(cpu=user + system, cpu_sys=system, ctx_vol=voluntary, ctx_invol=involuntary)
        out["cpu_children"] = kids_user + kids_sys
        hwm1 = _status_kib("VmHWM")
        if out["rss_reset"]:
            out["rss_peak_delta"] = (hwm1 - rss0) * 1024
        else:  # ru_maxrss never goes down: only a growth beyond the earlier peak shows
            maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["rss_peak_delta"] = max(0, maxrss1 - maxrss0, hwm1 - hwm0) * 1024
        out["rss_base"] = rss0 * 1024
        out["objects"] = count
        out["bytes"] = nbytes
        if spec.get("list_only"):
            t0 = time.perf_counter()
            out["list_objects"] = await client.list_only()
            out["list_wall"] = time.perf_counter() - t0
        out["notes"] = client.notes
    finally:
        await client.close()
    if profiler is not None:
        _write_profile(profiler, spec["profile"], out)


def _write_profile(profiler: Any, path: str, out: dict[str, Any]) -> None:
    import io
    import pstats

    lines = [
        f"wall {out['wall']:.3f} s (under cProfile), CPU {out['cpu']:.3f} s, "
        f"{out['objects']} objects, {out['bytes']} bytes",
        "Main thread only: work run in anyio worker threads (file writes) is not attributed.",
        "",
    ]
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = {}
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        area = _area(filename, name)
        by_area[area] = by_area.get(area, 0.0) + row[2]
    lines.append("=== own time by area (main thread) ===")
    for area, seconds in sorted(by_area.items(), key=lambda kv: -kv[1])[:16]:
        lines.append(f"{seconds:8.3f} s  {area}")
    lines.append("")
    for sort, title in (("cumulative", "cumulative time"), ("tottime", "own (tottime)")):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats(sort).print_stats(30)
        text = buf.getvalue()
        start = text.find("   ncalls")
        lines += [f"=== top 30 by {title} ===", text[start:].rstrip() if start >= 0 else text, ""]
    Path(path).write_text(_portable_paths("\n".join(lines) + "\n"), encoding="utf-8")


def _portable_paths(text: str) -> str:
    """``text`` with this machine's install paths as ``<stdlib>``, ``<site-packages>`` and
    paths relative to the repository: a profile is read for its functions, not its disk."""
    import sysconfig

    paths = sysconfig.get_paths()
    for prefix, label in (
        (paths["purelib"], "<site-packages>"),
        (paths["platlib"], "<site-packages>"),
        (paths["stdlib"], "<stdlib>"),
        (str(Path(__file__).resolve().parents[1]), "."),
    ):
        text = text.replace(prefix + os.sep, label + "/")
    return text


def _area(filename: str, name: str) -> str:
    """A profile row's area: a built-in's name, a package, or the standard library module."""
    if filename == "~":
        return f"built-in {name}"
    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "src"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            if rest and rest[0] == "mpr_storage":
                return "/".join(rest[:2])
            return rest[0] if rest else filename
    return "stdlib " + parts[-1]


def _run(coro: Any, loop: str) -> None:
    """``asyncio.run(coro)`` on asyncio's event loop or on uvloop's (``loop``)."""
    if loop == "asyncio":
        asyncio.run(coro)
        return
    import uvloop

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(coro)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text("utf-8"))
    out: dict[str, Any] = {"client": spec["client"], "pid": os.getpid()}
    status = 0
    try:
        _run(_measure(spec, out), spec.get("loop", "asyncio"))
        out["ok"] = True
    except BaseException as exc:  # report everything, including a KeyboardInterrupt
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
        status = 1
    Path(spec["result"]).write_text(json.dumps(out), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
