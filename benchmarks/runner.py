"""The bench's runner: a scenario's shape, one measured run of one client in a fresh process
(``_clients.py``), the probes around it (CPU of the server and the machine, the disk's create
cost) and the interleaved rounds. Scenarios live in ``scenarios/``, one file each group."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seeding import (
    BUCKET,
    FileSet,
    KiB,
    MiB,
    _delete_prefix,
    _seed,
    _sha256_file,
    _verify_api,
    _verify_dir,
    _verify_large_up,
    _verify_upload,
    _write_random_files,
)

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_clients.py"
NOISY = 0.10  # other processes used more than this share of the machine during a run
API_CONCURRENCY = 50


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # prefetch | upload | large | large_up | api
    title: str
    count: int
    size: int
    clients: tuple[str, ...]
    refs: tuple[str, ...]  # reference clients for the ratio columns
    source: str  # the seeded file set it reads or uploads
    list_only: bool = False
    where: str = "disk"  # where the client's destination files go: disk | tmpfs | journaled
    # Measurements per client in each round: a run of a second or less varies by up to +-40%
    # with the disk's writeback and the server's scheduling, too much for a median of 5.
    samples: int = 1
    # Delete the previous run's destination (any client's) just before each run: a replay
    # after a cache clean-up, whose creates meet the inodes just freed (see create_cost()).
    delete_previous: bool = False

    @property
    def key(self) -> str:
        return self.name if self.where == "disk" else f"{self.name}-{self.where}"


@dataclass(frozen=True)
class Kind:
    """A kind of scenario a group adds in its own file (``scenarios/handlers.py``): the spec
    entries its child needs, where the child's clients for it live, its check and its table."""

    spec: Callable[[Scenario, FileSet, int], dict[str, Any]]  # (scenario, files, run number)
    verify: Callable[[Scenario, FileSet, int, dict[str, Any]], str]  # (.., run, data): problems
    table: Callable[[Scenario, list[Run]], list[str]]  # its RESULTS.md table
    clients: str  # the module whose CLIENTS the child uses (importable from benchmarks/)
    big: bool = False  # reads the one large object (seeded as for "large")


KINDS: dict[str, Kind] = {}  # filled by the scenario groups that add kinds


def _size_h(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def _title(s: Scenario) -> str:
    where = {
        "disk": " — on disk",
        "tmpfs": " — destinations on tmpfs",
        "journaled": " — destinations on ext4 with a journal",
    }.get(s.where, "")
    shown = s.where != "disk" or (s.kind in ("prefetch", "large") and not s.delete_previous)
    where = where if shown else ""
    return f"({s.name}) " + s.title.format(count=s.count, size_h=_size_h(s.size)) + where


def split_client(client: str) -> tuple[str, str]:
    """``"mpr_storage@uvloop"`` -> ``("mpr_storage", "uvloop")``; no suffix: asyncio's loop."""
    base, _, loop = client.partition("@")
    return base, loop or "asyncio"


# Clients whose work does not run on the event loop (blocking calls, or a native client's own
# threads): measured once, on asyncio's loop, whatever --loop says.
LOOP_FREE = frozenset({"boto3", "awscrt"})


def same_loop(ref: str, client: str) -> str:
    """The reference client measured on ``client``'s event loop."""
    loop = split_client(client)[1]
    return ref if loop == "asyncio" or ref in LOOP_FREE else f"{ref}@{loop}"


def with_loops(clients: tuple[str, ...], loops: list[str]) -> tuple[str, ...]:
    """Every client on each of ``loops`` (asyncio's keeps the plain name); a loop-free client
    once, on asyncio's."""
    names = (
        c if loop == "asyncio" or c in LOOP_FREE else f"{c}@{loop}"
        for loop in loops
        for c in clients
    )
    return tuple(dict.fromkeys(names))


# --- running one measurement ----------------------------------------------------------------


def create_cost(where: Path, count: int = 500) -> float:
    """Median milliseconds of one ``open(O_CREAT)`` in a fresh directory under ``where``.

    ext4 without a journal (as this bench's VM has its root) skips inodes freed in the last
    minute (six while their inode table block is not yet written back) when it allocates a
    new one (``recently_deleted()`` in its inode allocator, seen with ``perf``; with a journal
    it is not called), so after many files were deleted nearby, every create scans them:
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


def file_system(path: Path) -> str:
    """The file system ``path`` is on, as the report names it: ``ext4 with a journal``, ext4
    without one (every create then scans the inodes freed recently: see :func:`create_cost`),
    ``tmpfs`` ...; ``?`` when ``/proc`` does not say."""
    kind, dev, best = "?", "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            source, mnt, fs, *_ = line.split()
            if str(path).startswith(mnt) and len(mnt) >= len(best):
                best, kind, dev = mnt, fs, source
    if kind != "ext4":
        return kind
    with contextlib.suppress(OSError):
        journals = Path("/proc/fs/jbd2").iterdir()
        if any(j.name.startswith(f"{Path(dev).name}-") for j in journals):
            return "ext4 with a journal"
        return "ext4 **without a journal** (every create scans the inodes freed recently)"
    return kind


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
    def __init__(
        self,
        args: argparse.Namespace,
        server: Any,
        work: Path,
        local: dict[str, FileSet] | None = None,
    ) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.env = self._child_env()
        self.filesets: dict[str, FileSet] = {}
        self.local = local if local is not None else {}  # local files, shared between servers
        self.tmpfs_out: Path | None = None  # destinations of the tmpfs runs
        self.journaled_out: Path | None = None  # destinations of the journaled-ext4 runs
        self.previous: dict[str, Path] = {}  # per scenario: the last run's destination

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
            big = s.kind in ("large", "large_up") or (s.kind in KINDS and KINDS[s.kind].big)
            fs = self.local.get(s.source)
            if fs is None:
                fs = FileSet(s.source, self.work / "src" / s.source, f"{s.source}/", "")
                if not big:
                    fs.timeline_id = f"bench-{s.source}"
                    fs.prefix = f"frames/{fs.timeline_id}/"  # a frame cache: prefetch_frames
                t0 = time.perf_counter()
                fs.files = _write_random_files(fs.root, s.count, s.size, big)
                print(
                    f"   wrote {len(fs.files):,} local files for {s.source} in "
                    f"{time.perf_counter() - t0:.1f} s"
                )
                self.local[s.source] = fs
            if s.kind == "large_up":  # only the local file is needed
                self.filesets[s.source] = fs
                continue
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
        base, loop = split_client(client)
        elsewhere = {"tmpfs": self.tmpfs_out, "journaled": self.journaled_out}.get(s.where)
        out_root = elsewhere or self.work / "out"
        out_dir = out_root / f"{s.key}-{client}-{run}"
        upload_prefix = f"uploads/{client}-{run}/"
        spec: dict[str, Any] = {
            "client": base,
            "loop": loop,
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
        elif s.kind in KINDS:
            spec.update(KINDS[s.kind].spec(s, fs, run), clients_module=KINDS[s.kind].clients)
        elif s.kind == "upload":
            spec.update(prefix=upload_prefix, src=str(fs.root))
        elif s.kind == "large_up":
            spec.update(key=upload_prefix + "large.bin", src_file=str(fs.root / "large.bin"))
        else:
            out_dir.mkdir(parents=True)
            spec.update(key=fs.prefix + "large.bin", dest=str(out_dir / "large.bin"))
        spec["strace"] = strace
        argv = [sys.executable, str(RUNNER), str(spec_path := self.work / "spec.json")]
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        Path(spec["result"]).unlink(missing_ok=True)
        if s.delete_previous and s.key in self.previous:
            shutil.rmtree(self.previous.pop(s.key), ignore_errors=True)
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
                if not result.data.get("loop", "").startswith(loop):
                    result.error = f"ran on {result.data.get('loop')!r}, not on {loop}'s loop"
        except subprocess.TimeoutExpired:
            result.error = f"timed out after {self.args.timeout} s (killed)"
        finally:
            if s.kind == "large" or out_root == self.tmpfs_out:
                shutil.rmtree(out_dir, ignore_errors=True)
            # A frame cache on disk stays until the bench ends (see create_cost()), unless the
            # scenario deletes it just before its next run.
            if s.delete_previous:
                self.previous[s.key] = out_dir
            if s.kind in ("upload", "large_up"):
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
        if s.kind in KINDS:
            return KINDS[s.kind].verify(s, fs, run, data)
        if data.get("objects") != len(fs.files) or data.get("bytes") != fs.total_bytes:
            problems.append(
                f"client reported {data.get('objects')} objects / {data.get('bytes')} bytes, "
                f"expected {len(fs.files)} / {fs.total_bytes}"
            )
        if s.list_only and data.get("list_objects") != len(fs.files):
            problems.append(f"list-only found {data.get('list_objects')} keys")
        if s.kind == "prefetch":
            problem, notes = _verify_dir(out_dir, fs, split_client(client)[0], rng)
            data["verify_notes"] = notes
        elif s.kind == "upload":
            problem = _verify_upload(self.server, fs, upload_prefix, rng)
        elif s.kind == "large_up":
            problem = _verify_large_up(self.server, fs, upload_prefix, self.work / "verify")
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


def _run_all(bench: Bench, scenarios: list[Scenario], args: argparse.Namespace) -> list[Run]:
    results: list[Run] = []
    # Uploads last in each round: the server's writes and deletes slow down whatever runs in
    # the following seconds (seen as 2-4x swings on (c), for every client alike).
    order = sorted(scenarios, key=lambda s: s.kind in ("upload", "large_up"))
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
        if "latency_median" in notes:
            extra += (
                f", latency p50 {notes['latency_median'] * 1e3:.2f} ms"
                f" / p99 {notes['latency_p99'] * 1e3:.2f} ms"
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
