"""The single entry point for tests, lint, types, benchmarks and the demo: `nox`."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import nox

# Use the Pythons that are installed; never download one.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
os.environ.setdefault("UV_PYTHON_PREFERENCE", "only-system")

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


def _runs(executable: str) -> bool:
    try:
        return subprocess.run([executable, "-c", ""], capture_output=True).returncode == 0
    except OSError:
        return False


def _find_pythons() -> list[str]:
    """The supported Pythons that actually run here. Version managers' shims (pyenv) may exist
    for versions that are installed but not activated: put those versions' own bin
    directories first on PATH so nox and uv find working interpreters."""
    found, extra_dirs = [], []
    for version in SUPPORTED:
        candidates = [f"python{version}"] + sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
        )
        for candidate in candidates:
            if _runs(candidate):
                found.append(version)
                if os.sep in candidate:
                    extra_dirs.append(os.path.dirname(candidate))
                break
    os.environ["PATH"] = os.pathsep.join([*extra_dirs, os.environ.get("PATH", "")])
    return found


# In CI every supported Python must be there (a missing one is an error, as urllib3's noxfile
# has it); locally the ones found are used and the others skipped with a line saying so.
CI = bool(os.environ.get("CI"))
FOUND = _find_pythons()
if CI:
    nox.options.error_on_missing_interpreters = True
    MATRIX = SUPPORTED
else:
    MATRIX = FOUND or [f"{sys.version_info.major}.{sys.version_info.minor}"]
    if missing := sorted(set(SUPPORTED) - set(MATRIX)):
        print(f"nox: Python {', '.join(missing)} not found here: skipped (CI runs them)")
NEWEST = MATRIX[-1]
LINT_PATHS = [
    p for p in ("src", "tests", "noxfile.py", "benchmarks", "examples") if os.path.exists(p)
]


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    deps = [d for g in groups for d in nox.project.dependency_groups(PYPROJECT, g)]
    session.install("-e", f".{extras}", *deps)


@nox.session(python=NEWEST)
def tests(session: nox.Session) -> None:
    """The whole behaviour suite on the newest Python, against moto and SeaweedFS, through
    both transports (what `python3 -m nox` runs, with lint and typecheck: ~2.5 minutes)."""
    _install(session, "test")
    # Most of the suite waits on servers and subprocesses rather than on the CPU: four
    # workers (each with its own moto and SeaweedFS) finish it in about half the time.
    session.run("pytest", "-n", "4", "-m", "not slow", *session.posargs)


@nox.session(python=[v for v in MATRIX if v != NEWEST] or NEWEST)
def matrix(session: nox.Session) -> None:
    """The suite on the other supported Pythons (CI): what differs between Pythons is the
    interpreter under the library, so one transport (the fast path) and one server
    (SeaweedFS, the MinIO-like one) suffice there; the newest Python crosses them all. The
    browser test is left to the newest Python too (it checks the example app in chromium)."""
    _install(session, "test")
    env = {"MPR_TEST_TRANSPORTS": "fast", "MPR_TEST_SERVERS": "seaweedfs"}
    marks = "not slow and not browser"
    session.run("pytest", "-n", "4", "-m", marks, *session.posargs, env=env)


@nox.session(python=NEWEST)
def slow(session: nox.Session) -> None:
    """The slow cases (large objects, thousand-key cases, the demo, memory bounds) (CI). Each
    memory case measures the peak of a child process of its own, which the other tests
    running meanwhile don't enter: they run in parallel with the rest."""
    _install(session, "test")
    session.run("pytest", "-n", "4", "-m", "slow", *session.posargs)


@nox.session(name="tests-uvloop", python=NEWEST)
def tests_uvloop(session: nox.Session) -> None:
    """The transport tests (and the made-files helper's, whose socket watch and subprocess
    are the loop's) once more, on both transports and on SeaweedFS, with every async
    test on uvloop's event loop (as under uvicorn[standard]): MPR_TEST_LOOP=uvloop makes
    tests/conftest.py hand pytest-asyncio uvloop's loop. The sync shim and CLI use uvloop in
    every session where it is installed."""
    _install(session, "test")
    files = [
        "tests/test_objects.py",
        "tests/test_transfer.py",
        "tests/test_faults.py",
        "tests/test_premade.py",
    ]
    session.run(
        "pytest",
        "-n",
        "4",
        "-m",
        "not slow",
        *(session.posargs or files),
        env={"MPR_TEST_LOOP": "uvloop", "MPR_TEST_SERVERS": "seaweedfs"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    _install(session, "typecheck")
    session.run("mypy", "src/mpr_storage", "src/core")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job end to end on the embedded server: `mpr-storage demo`."""
    session.install("-e", ".[server]")
    session.run("mpr-storage", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against aioboto3, obstore, raw aiohttp, boto3 and the AWS CRT on a local
    SeaweedFS and on a capped provider link (root only): `nox -s bench` (full, writes
    benchmarks/RESULTS.md), `nox -s bench -- --quick`, `nox -s bench -- --scenarios p1,p2,p3`."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "bench"))
    # Byte-compiled, as pip installs packages: uv does not compile, and where
    # PYTHONDONTWRITEBYTECODE is set every child process would compile each module it
    # imports, counted against whichever client imports it lazily during its timed work.
    session.run("python", "-c", _COMPILE, "src", silent=True)
    session.run("python", "benchmarks/bench.py", *session.posargs)


_COMPILE = (
    "import compileall, sys, sysconfig\n"
    "for root in (sysconfig.get_paths()['purelib'], *sys.argv[1:]):\n"
    "    compileall.compile_dir(root, quiet=2, workers=0)\n"
)
