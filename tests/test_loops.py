"""Event-loop lifecycles: per-loop defaults die with their loop; the sync shim at exit."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import anyio

from conftest import S3Target
from mpr_storage import Storage

# Runs in a fresh interpreter with warnings as errors: RSS and live objects after each run.
MANY_RUNS = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    import mpr_storage

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def alive(kind):
        return sum(isinstance(o, kind) for o in gc.get_objects())

    bucket, key, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    samples = []
    for _ in range(runs):
        assert asyncio.run(mpr_storage.object_exists(bucket, key))
        gc.collect()
        samples.append(
            [rss_kib(), alive(mpr_storage.Storage), alive(asyncio.AbstractEventLoop)]
        )
    print(json.dumps(samples))
    """
)


async def test_each_asyncio_run_leaves_no_storage_alive(storage: Storage, s3: S3Target) -> None:
    key = s3.key("exists.txt")
    await (await storage.client()).put_object(Bucket=s3.bucket, Key=key, Body=b"1")
    runs = 16
    with anyio.fail_after(300):
        result = await anyio.run_process(
            [sys.executable, "-W", "error", "-c", MANY_RUNS, s3.bucket, key, str(runs)],
            check=False,
            env={**os.environ, **s3.server.env()},
        )
    assert result.returncode == 0 and not result.stderr, result.stderr.decode()[-3000:]
    samples = json.loads(result.stdout)
    assert [s[1:] for s in samples] == [[0, 0]] * runs  # no Storage, no loop survives its run
    grown_mib = (samples[-1][0] - samples[3][0]) / 1024  # after warm-up (imports, caches)
    assert grown_mib < 20, f"RSS grew {grown_mib:.0f} MiB over {runs - 4} asyncio.run() calls"
