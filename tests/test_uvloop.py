"""The loops mpr_storage runs itself (the sync shim's portal thread, the CLI) are uvloop's where
uvloop is installed, and asyncio's, silently, where it is not."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mpr_storage._cli._base import run
from mpr_storage._portal import Portal

uvloop = pytest.importorskip("uvloop")

SRC = Path(__file__).resolve().parents[1] / "src"


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_the_portal_thread_runs_uvloop() -> None:
    portal = Portal()
    try:
        assert portal.call(_loop_module) == "uvloop"
        assert portal.call(_loop_module) == "uvloop"  # the same loop thread, reused
    finally:
        portal.stop()


def test_the_cli_runs_uvloop() -> None:
    assert run(_loop_module()) == "uvloop"


def test_without_uvloop_both_fall_back_to_asyncio_silently() -> None:
    # uvloop made unimportable (``None`` in sys.modules makes ``import uvloop`` fail), in a
    # fresh process; any warning is an error there, and nothing may be printed.
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["uvloop"] = None
        from mpr_storage._cli._base import run
        from mpr_storage._portal import Portal

        async def loop_module():
            await asyncio.sleep(0)
            return type(asyncio.get_running_loop()).__module__

        portal = Portal()
        try:
            print(portal.call(loop_module), run(loop_module()))
        finally:
            portal.stop()
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    assert len(modules) == 2 and all(m.startswith("asyncio") for m in modules), done.stdout
    assert done.stderr == ""


async def test_async_tests_run_on_the_loop_mpr_test_loop_names() -> None:
    """``MPR_TEST_LOOP=uvloop`` (conftest) puts the async tests on uvloop's loop."""
    expected = "uvloop" if os.environ.get("MPR_TEST_LOOP") == "uvloop" else "asyncio"
    assert (await _loop_module()).startswith(expected)
