"""The loopback scenarios (a)-(e): SeaweedFS on 127.0.0.1, no per-connection cap; the issue-14
targets checked on them, the syscall counts and the profile of (a)."""

from __future__ import annotations

import contextlib
import datetime as dt
import platform
import statistics
import sys
from pathlib import Path

from runner import HERE, NOISY, Bench, Run, Scenario, _print_run, _title, split_client
from seeding import KiB, MiB

CLIENT_LABELS = {
    "mpr_storage": "**mpr_storage**",
    "mpr_storage_logging": "mpr_storage, logging configured at WARNING",
    "aioboto3": "aioboto3 best practice",
    "obstore": "obstore",
    "aiohttp": "raw aiohttp (presigned GETs)",
}


def label(client: str) -> str:
    """A client's label in the tables; ``@uvloop`` variants say so."""
    base, loop = split_client(client)
    return CLIENT_LABELS[base] + ("" if loop == "asyncio" else f" on {loop}")


CLIENT_HOW = {
    "mpr_storage": {
        "prefetch": "`prefetch_frames(id, dest, concurrency=64)` (LIST streamed into GETs)",
        "upload": "`upload_many(src, bucket, prefix, concurrency=64)`",
        "large": "`download_file(bucket, key, dest)`",
        "api": "`object_exists(bucket, key)` under `Semaphore(50)`, then "
        "`get_presigned_url(bucket, key)` one after the other",
    },
    "mpr_storage_logging": {
        "prefetch": "the same, after `logging.basicConfig(level=WARNING)`: the library's "
        "INFO/DEBUG lines disabled (issue 23: logging costs nothing measurable when disabled)",
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


SCENARIOS = {
    "a": Scenario(
        "a",
        "prefetch",
        "Frame-cache prefetch: {count:,} × {size_h} under one prefix → local dir (incl. LIST)",
        2000,
        64 * KiB,
        ("mpr_storage", "mpr_storage_logging", "aioboto3", "obstore", "aiohttp"),
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
        # 5, not 3: on this VM one download in four meets memory its host took back (0.4 s of
        # kernel time instead of 0.04 s, whichever client it is), see NOTES.md
        samples=5,
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
    "f": Scenario(
        "f",
        "prefetch",
        "Frame-cache prefetch as (a), the previous run's {count:,} files deleted just before "
        "each run (a replay after a cache clean-up)",
        2000,
        64 * KiB,
        ("mpr_storage", "aioboto3", "obstore", "aiohttp"),
        ("aioboto3", "obstore"),
        "frames64",
        samples=3,
        delete_previous=True,
    ),
}
QUICK = {
    "a": (200, 64 * KiB),
    "b": (200, 64 * KiB),
    "c": (1, 16 * MiB),
    "d": (1000, 4 * KiB),
    "e": (200, 64 * KiB),
    "f": (200, 64 * KiB),
}
TARGETS = {
    "a": "≤ 0.40× aioboto3 and ≤ 1.00× obstore, every guarantee kept.",
    "b": "≤ 0.45× aioboto3 (and ≤ 1.10× obstore's upload, measured in issue 14).",
    "c": "≤ 1.10× one raw aiohttp stream; peak RSS Δ ≤ 64 MB.",
    "d": "at least as far ahead of aioboto3 as (a); memory flat.",
    "e": "≤ 0.50× aioboto3's time for the same calls.",
    "f": "(issue 21) ≤ 1.00× obstore (it measured 1.24×, and 0.43× aioboto3).",
}


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
    ratio("f", "obstore", 1.00, "prefetch after a clean-up × obstore (issue 21)")
    ratio(
        "f-journaled",
        "obstore",
        1.00,
        "prefetch after a clean-up × obstore, destinations on ext4 with a journal",
    )
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


def _strace_all(bench: Bench, scenarios: list[Scenario]) -> dict[str, dict[str, int]]:
    """One extra run of scenario (a) on disk per client under ``strace -c -f``: the summaries
    go to ``benchmarks/profiles/`` (with ``--no-write``, to the run's work dir, which goes
    with it), the calls per object into the report."""
    s = next((s for s in scenarios if s.name == "a" and s.where == "disk"), None)
    if s is None:
        return {}
    out_dir = (bench.work if bench.args.no_write else HERE) / "profiles"
    out_dir.mkdir(exist_ok=True)
    found: dict[str, dict[str, int]] = {}
    print("== strace -c -f of scenario (a), one run per client")
    for client in (c for c in s.clients if split_client(c)[1] == "asyncio"):
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
