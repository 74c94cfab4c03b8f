"""Event-loop lifecycles: per-loop defaults die with their loop; the sync shim at exit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import S3Target
from mpr_storage import Storage, _portal, sync

# Above the wire: the transports are compared by the tests of the layers below.
pytestmark = pytest.mark.one_transport

# Runs in a fresh interpreter with warnings as errors: RSS and live objects after each run.
MANY_RUNS = textwrap.dedent(
    """
    import asyncio, gc, json, sys, threading
    import mpr_storage

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def alive(kind):
        return sum(isinstance(o, kind) for o in gc.get_objects())

    def join_threads():
        # anyio's worker threads hold the loop until they see its main task end, a moment
        # after asyncio.run() returns: wait for them (one that never ends fails the count).
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(10)

    bucket, key, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    samples = []
    for _ in range(runs):
        assert asyncio.run(mpr_storage.object_exists(bucket, key))
        join_threads()
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


# Runs in a fresh interpreter: calls the sync shim from an atexit callback.
AT_EXIT = textwrap.dedent(
    """
    import atexit, json, sys
    from pathlib import Path

    mode, bucket, key, out = sys.argv[1:5]

    def at_exit():
        from mpr_storage import sync
        try:
            exists = sync.object_exists(bucket, key)
            listed = [obj.key for obj in sync.iter_objects(bucket, key)]
            body = Path(sync.download_file(bucket, key, out)).read_bytes().decode()
            print(json.dumps({"exists": exists, "listed": listed, "body": body}), flush=True)
        except RuntimeError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)

    if mode == "registered-before-import":  # runs after the shim's own exit hook
        atexit.register(at_exit)
        from mpr_storage import sync
    elif mode == "registered-after-import":  # runs before it: first call at exit
        from mpr_storage import sync
        atexit.register(at_exit)
    else:  # the loop thread already runs when the callback calls
        from mpr_storage import sync
        assert sync.object_exists(bucket, key)
        atexit.register(at_exit)
    """
)


@pytest.mark.parametrize(
    "mode", ["registered-before-import", "registered-after-import", "used-before-exit"]
)
async def test_sync_calls_from_an_atexit_callback_settle(
    storage: Storage, s3: S3Target, tmp_path: Path, mode: str
) -> None:
    key = s3.key("at-exit.txt")
    await (await storage.client()).put_object(Bucket=s3.bucket, Key=key, Body=b"bye")
    out = tmp_path / "out.txt"
    with anyio.fail_after(60):  # a hang fails here
        result = await anyio.run_process(
            [sys.executable, "-W", "error", "-c", AT_EXIT, mode, s3.bucket, key, str(out)],
            check=False,
            env={**os.environ, **s3.server.env()},
        )
    assert result.returncode == 0 and not result.stderr, result.stderr.decode()[-3000:]
    outcome = json.loads(result.stdout)
    if sys.version_info[:2] != (3, 12) or mode == "used-before-exit":
        # Python 3.12 refuses new threads at exit; a loop thread started before works, and
        # a small download's file calls stay on it (no worker thread)
        assert outcome == {"exists": True, "listed": [key], "body": "bye"}
    else:  # Python 3.12: the loop thread cannot start at exit
        assert outcome["error"].startswith(
            "mpr_storage.sync: cannot start its event-loop thread: "
        ), outcome
    assert sorted(os.listdir(tmp_path)) == (["out.txt"] if "body" in outcome else [])


def test_a_loop_thread_that_fails_to_start_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenLoop(asyncio.SelectorEventLoop):
        def set_default_executor(self, executor: Any) -> None:
            raise OSError("no executor today")

    sync._portal.stop()
    monkeypatch.setattr(_portal, "new_event_loop", BrokenLoop)  # uvloop's or asyncio's
    outcome: list[BaseException | bool] = []

    def call() -> None:
        try:
            outcome.append(sync.object_exists("mpr-test", "key"))
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)  # a hang can't block the session
    caller.start()
    caller.join(30)
    assert outcome, "the call never returned"
    assert isinstance(outcome[0], RuntimeError), outcome
    assert str(outcome[0]).startswith("mpr_storage.sync: cannot start its event-loop thread")
    assert "no executor today" in str(outcome[0])
    monkeypatch.undo()
    sync._portal.stop()
