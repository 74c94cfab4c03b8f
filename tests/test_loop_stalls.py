"""The first calls of a process do not hold the event loop: botocore's session, credentials,
endpoint data and TLS context are made in a worker thread. Checked in a fresh process under
asyncio's debug mode, which logs every step of the loop that takes over 50 ms."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mpr_storage._server import LocalS3Server

FIRST_CALLS = textwrap.dedent(
    """
    import asyncio, asyncio.events, logging, os, time
    import mpr_storage

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    # Each step of the loop, timed on the loop thread's own CPU clock too: asyncio's debug
    # mode logs a step over 50 ms of wall time, which a machine busy with other work stretches
    # by preempting the loop; a stall of ours (imports, JSON, reading the CA file) is time the
    # loop thread itself spends, and shows on its CPU clock.
    _run = asyncio.events.Handle._run

    def _timed(handle):
        started = time.thread_time()
        try:
            return _run(handle)
        finally:
            spent = time.thread_time() - started
            if spent > 0.05:
                print(f"loop step held the loop thread for {spent:.3f} s of CPU: {handle!r}")

    asyncio.events.Handle._run = _timed

    async def main() -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.05
        bucket = os.environ["S3_BUCKET_OUT"]
        assert await mpr_storage.list_objects(bucket, "no-such-prefix/") == []
        assert not await mpr_storage.object_exists(bucket, "no-such-key")
        await mpr_storage.get_presigned_url(bucket, "k", content_type="video/mp4", filename="ü")
        await mpr_storage.get_presigned_post(bucket, "k", max_size=10)
        client = await mpr_storage.get_s3_client()
        await client.list_buckets()
        print("first calls done")

    asyncio.run(main(), debug=True)
    """
)


def _first_calls(server: LocalS3Server, fast_path: bool) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "S3_", "PYTHONASYNCIODEBUG"))
    }
    env.update(server.env())
    env["S3_FAST_PATH"] = "1" if fast_path else "0"
    env["S3_BUCKET_OUT"] = "mpr-media-out"
    return subprocess.run(
        [sys.executable, "-c", FIRST_CALLS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
def test_first_calls_do_not_hold_the_loop(moto_server: LocalS3Server, fast_path: bool) -> None:
    # A step over 50 ms of the loop thread's own CPU time is a stall of ours, whatever else
    # the machine does. Wall time (asyncio's debug log) is kept for the message: on a quiet
    # machine both agree.
    done = _first_calls(moto_server, fast_path)
    assert done.returncode == 0, done.stderr
    assert "first calls done" in done.stdout
    held = [line for line in done.stdout.splitlines() if line.startswith("loop step held")]
    slow = [line for line in done.stderr.splitlines() if "took" in line and "Executing" in line]
    assert not held, "\n".join(held + ["asyncio's debug log:", *slow])
