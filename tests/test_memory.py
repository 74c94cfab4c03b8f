"""Memory stays bounded: large objects stream, many keys don't pile up (measured in a child)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import Storage

MiB = 1024 * 1024

# Runs in a fresh interpreter: peak RSS (VmHWM) after the import is the baseline.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import mpr_storage
    async def main(kind, bucket, arg, dest):
        baseline = peak_kib()
        await mpr_storage.list_objects(bucket, "no-such-prefix/")  # client created: baseline
        baseline = peak_kib()
        if kind == "large":
            await mpr_storage.download_file(bucket, arg, dest)
        else:
            report = await mpr_storage.download_many(
                bucket, mpr_storage.iter_objects(bucket, arg), dest, prefix=arg
            )
            assert report.ok and len(report.done) == int(sys.argv[5]), len(report.done)
        print(json.dumps({"delta_mib": (peak_kib() - baseline) / 1024}))
    asyncio.run(main(*sys.argv[1:5]))
    """
)


def _peak_delta(*args: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return float(json.loads(result.stdout)["delta_mib"])


@pytest.mark.slow
async def test_large_download_streams_in_bounded_memory(seaweed: S3Target, tmp_path: Path) -> None:
    size = 320 * MiB
    src = tmp_path / "large.bin"
    with open(src, "wb") as f:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            f.write(block[i:] + block[:i])
    key = seaweed.key("large.bin")
    async with Storage(seaweed.settings()) as st:
        await st.upload_file(src, seaweed.bucket, key)
    dest = tmp_path / "out.bin"
    delta = _peak_delta("large", seaweed.bucket, key, str(dest))
    assert dest.stat().st_size == size
    assert delta < 100, f"peak RSS grew by {delta:.0f} MiB for a {size // MiB} MiB object"
    src.unlink()
    dest.unlink()


@pytest.mark.slow
async def test_ten_thousand_keys_without_memory_growth(seaweed: S3Target, tmp_path: Path) -> None:
    count = 10_000
    src = tmp_path / "src"
    src.mkdir()
    for i in range(count):
        (src / f"f{i:05d}.bin").write_bytes(i.to_bytes(4, "big") * 64)
    async with Storage(seaweed.settings()) as st:
        report = await st.upload_many(src, seaweed.bucket, seaweed.prefix)
        assert report.ok and len(report.done) == count
    delta = _peak_delta("many", seaweed.bucket, seaweed.prefix, str(tmp_path / "dst"), str(count))
    assert len(os.listdir(tmp_path / "dst")) == count + 1  # and the manifest
    assert delta < 80, f"peak RSS grew by {delta:.0f} MiB for {count} small keys"
