"""The handler-load scenarios (issue 22) on loopback: (h1) small objects read whole into memory,
(h2) 1 MiB ranges of one large object streamed through, at an API handler's concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _clients import CHUNK, Aioboto3, MprStorage, Obstore, _latency_notes
from runner import API_CONCURRENCY, KINDS, Kind, Run, Scenario, same_loop, split_client
from seeding import FileSet, KiB, MiB

from scenarios.loopback import CLIENT_HOW, _ratios, label

RANGE = MiB  # (h2): the length of every range read
SAMPLED = 16  # bodies SHA-256-checked per run (hashed in the child, checked by the parent)
CLIENTS_ORDER = ("mpr_storage", "aioboto3", "obstore")

SCENARIOS = {
    "h1": Scenario(
        "h1",
        "handler_bytes",
        "Handler load: {count:,} × {size_h} objects read into memory at concurrency "
        f"{API_CONCURRENCY}",
        2000,
        64 * KiB,
        CLIENTS_ORDER,
        ("aioboto3", "obstore"),
        "frames64",
        samples=3,  # a run lasts about a second
    ),
    "h2": Scenario(
        "h2",
        "handler_ranges",
        "Handler load: {count:,} 1 MiB ranges at random offsets of one {size_h} object, "
        f"streamed through at concurrency {API_CONCURRENCY}",
        2000,
        256 * MiB,
        CLIENTS_ORDER,
        ("aioboto3", "obstore"),
        "large",
    ),
}
QUICK = {"h1": (200, 64 * KiB), "h2": (200, 16 * MiB)}
# Issue 22's goal, for both scenarios: (reference, at most this ratio of its wall time).
GOALS = (("aioboto3", 0.50), ("obstore", 1.20))
TARGET = "(issue 22) ≤ 0.50× aioboto3's time, and within 1.20× obstore's."

CLIENT_HOW["mpr_storage"].update(
    handler_bytes="`get_bytes(bucket, key)` under `Semaphore(50)`",
    handler_ranges="`async with open_object(bucket, key, start=o, end=o + 1 MiB) as body`, "
    "`async for chunk in body` under `Semaphore(50)`",
)
CLIENT_HOW["aioboto3"].update(
    handler_bytes="one client (pool 64): `get_object`, `await body.read()` in `async with body` "
    "under `Semaphore(50)`",
    handler_ranges="one client (pool 64): `get_object(Range=bytes=o-(o+1 MiB-1))`, "
    "`async for chunk in body.iter_chunks(1 MiB)` in `async with body` under `Semaphore(50)`",
)
CLIENT_HOW["obstore"].update(
    handler_bytes="`S3Store`: `get_async` + `bytes_async()` under `Semaphore(50)`",
    handler_ranges="`S3Store`: `get_range_async(start=o, end=o + 1 MiB)` under `Semaphore(50)`",
)


# --- the child's side: one read per request, timed one by one -------------------------------


async def _timed_reads(
    read: Callable[[int, Any], Awaitable[int]], count: int, concurrency: int, sampled: set[int]
) -> tuple[int, int, dict[str, str], list[float], float]:
    """``read(i, digest)`` for ``i`` in ``range(count)``, ``concurrency`` at a time; ``digest``
    is a SHA-256 object for the sampled requests (the reader feeds it the body), else None.
    Returns requests, bytes, the sampled digests, the latencies and the wall time."""
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    digests: dict[str, str] = {}

    async def one(i: int) -> int:
        digest = hashlib.sha256() if i in sampled else None
        async with semaphore:
            t0 = time.perf_counter()
            n = await read(i, digest)
            latencies.append(time.perf_counter() - t0)
        if digest is not None:
            digests[str(i)] = digest.hexdigest()
        return n

    t0 = time.perf_counter()
    sizes = await asyncio.gather(*(one(i) for i in range(count)))
    return len(sizes), sum(sizes), digests, latencies, time.perf_counter() - t0


class _Handlers:
    """The two handler loads on top of a client's ``get_whole`` and ``get_range``."""

    spec: dict[str, Any]
    notes: dict[str, Any]

    async def get_whole(self, key: str, digest: Any) -> int:
        raise NotImplementedError

    async def get_range(self, key: str, start: int, end: int, digest: Any) -> int:
        raise NotImplementedError

    async def _run(self, read: Callable[[int, Any], Awaitable[int]], count: int) -> tuple[int, int]:
        sampled = set(self.spec["sampled"])
        requests, nbytes, digests, latencies, _ = await _timed_reads(
            read, count, self.spec["api_concurrency"], sampled
        )
        self.notes.update(digests=digests, **_latency_notes("latency", latencies))
        return requests, nbytes

    async def handler_bytes(self) -> tuple[int, int]:
        """(h1): every key read whole into memory."""
        keys = [self.spec["prefix"] + name for name in self.spec["names"]]
        size = self.spec["size"]

        async def read(i: int, digest: Any) -> int:
            n = await self.get_whole(keys[i], digest)
            if n != size:
                raise RuntimeError(f"{keys[i]}: {n} bytes, expected {size}")
            return n

        return await self._run(read, len(keys))

    async def handler_ranges(self) -> tuple[int, int]:
        """(h2): one range per offset, its body read through."""
        key, offsets, length = self.spec["key"], self.spec["offsets"], self.spec["range"]

        async def read(i: int, digest: Any) -> int:
            start = offsets[i]
            n = await self.get_range(key, start, start + length, digest)
            if n != length:
                raise RuntimeError(f"range at {start}: {n} bytes, expected {length}")
            return n

        return await self._run(read, len(offsets))


class MprHandlers(_Handlers, MprStorage):
    async def get_whole(self, key: str, digest: Any) -> int:
        data = await self.m.get_bytes(self.bucket, key)
        if digest is not None:
            digest.update(data)
        return len(data)

    async def get_range(self, key: str, start: int, end: int, digest: Any) -> int:
        received = 0
        async with self.m.open_object(self.bucket, key, start=start, end=end) as body:
            async for chunk in body:
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        return received


class Aioboto3Handlers(_Handlers, Aioboto3):
    async def get_whole(self, key: str, digest: Any) -> int:
        response = await self.s3.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        async with body:  # releases the connection however the read ends
            data = await body.read()
        if digest is not None:
            digest.update(data)
        return len(data)

    async def get_range(self, key: str, start: int, end: int, digest: Any) -> int:
        response = await self.s3.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
        )
        received = 0
        body = response["Body"]
        async with body:
            # iter_chunks(1 MiB): a bare `async for` over the body reads 1 KiB at a time.
            async for chunk in body.iter_chunks(CHUNK):
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        return received


class ObstoreHandlers(_Handlers, Obstore):
    async def get_whole(self, key: str, digest: Any) -> int:
        result = await self.obs.get_async(self.store, key)
        data = await result.bytes_async()
        if digest is not None:
            digest.update(data)
        return len(data)

    async def get_range(self, key: str, start: int, end: int, digest: Any) -> int:
        data = await self.obs.get_range_async(self.store, key, start=start, end=end)
        if digest is not None:
            digest.update(data)
        return len(data)


CLIENTS = {"mpr_storage": MprHandlers, "aioboto3": Aioboto3Handlers, "obstore": ObstoreHandlers}


# --- the parent's side: spec, check, table ---------------------------------------------------


def _sampled(count: int) -> list[int]:
    step = max(1, count // SAMPLED)
    return sorted({*range(0, count, step), count - 1})


def _spec_bytes(s: Scenario, fs: FileSet, run: int) -> dict[str, Any]:
    names = sorted(fs.files)
    return {
        "prefix": fs.prefix,
        "names": names,
        "size": s.size,
        "api_concurrency": API_CONCURRENCY,
        "sampled": _sampled(len(names)),
    }


def _offsets(s: Scenario, fs: FileSet, run: int) -> list[int]:
    """The run's random range offsets: the same for every client of that run."""
    size = fs.files["large.bin"][0]
    rng = random.Random(f"{s.name}-{size}-{run}")
    return [rng.randrange(0, size - RANGE + 1) for _ in range(s.count)]


def _spec_ranges(s: Scenario, fs: FileSet, run: int) -> dict[str, Any]:
    return {
        "key": fs.prefix + "large.bin",
        "offsets": _offsets(s, fs, run),
        "range": RANGE,
        "api_concurrency": API_CONCURRENCY,
        "sampled": _sampled(s.count),
    }


def _check(data: dict[str, Any], count: int, nbytes: int, expected: dict[str, str]) -> str:
    problems = []
    if data.get("objects") != count or data.get("bytes") != nbytes:
        problems.append(
            f"client reported {data.get('objects')} requests / {data.get('bytes')} bytes, "
            f"expected {count} / {nbytes}"
        )
    digests = data.get("notes", {}).pop("digests", {})
    if set(digests) != set(expected):
        problems.append(f"{len(digests)} sampled digests, expected {len(expected)}")
    bad = sorted(i for i in expected.keys() & digests.keys() if digests[i] != expected[i])
    if bad:
        problems.append(f"SHA-256 mismatch in {len(bad)} of {len(expected)} sampled bodies")
    return "; ".join(problems)


def _verify_bytes(s: Scenario, fs: FileSet, run: int, data: dict[str, Any]) -> str:
    names = sorted(fs.files)
    expected = {str(i): fs.files[names[i]][1] for i in _sampled(len(names))}
    return _check(data, len(names), fs.total_bytes, expected)


def _verify_ranges(s: Scenario, fs: FileSet, run: int, data: dict[str, Any]) -> str:
    """Every range had its length; the sampled ones are the local file's bytes there."""
    offsets = _offsets(s, fs, run)
    expected = {}
    with open(fs.root / "large.bin", "rb") as f:
        for i in _sampled(s.count):
            f.seek(offsets[i])
            expected[str(i)] = hashlib.sha256(f.read(RANGE)).hexdigest()
    return _check(data, s.count, s.count * RANGE, expected)


def _table(s: Scenario, results: list[Run]) -> list[str]:
    """Per client: wall, requests/s, latency p50 / p99, CPU, peak RSS, × aioboto3, × obstore;
    then issue 22's goal checked on each event loop."""
    from report import _fmt, _median, _ms, _ratio_cell

    by_client = {c: [r for r in results if r.client == c] for c in s.clients}
    header = [
        "client",
        "ok runs",
        "median wall",
        "requests/s",
        "latency p50 / p99",
        "client CPU",
        "peak RSS Δ",
        "RSS base",
        "server CPU",
        *(f"× {ref}" for ref in s.refs),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for client, runs in by_client.items():
        if not runs:
            continue
        good = [r for r in runs if r.ok]
        wall = _median([r.data["wall"] for r in good])
        requests = good[0].data["objects"] if good else 0
        rss = max((r.data["rss_peak_delta"] for r in good), default=None)
        base = _median([r.data["rss_base"] for r in good])

        def note(name: str, good: list[Run] = good) -> float | None:
            return _median([r.data["notes"][name] for r in good if name in r.data["notes"]])

        row = [
            label(client),
            f"{len(good)}/{len(runs)}" + ("" if len(good) == len(runs) else " **FAILED**"),
            _fmt(wall, ".3f", " s"),
            _fmt(requests / wall if wall else None, ",.0f"),
            f"{_ms(note('latency_median'))} / {_ms(note('latency_p99'))}",
            _fmt(_median([r.data["cpu"] for r in good]), ".2f", " s"),
            _fmt(rss / MiB if rss is not None else None, ".1f", " MiB"),
            _fmt(base / MiB if base is not None else None, ".0f", " MiB"),
            _fmt(_median([r.server_cpu for r in good]), ".2f", " s"),
        ]
        for ref in s.refs:
            mine = same_loop(ref, client)
            ref_runs = {r.run: r for r in by_client.get(mine, [])}
            row.append("1.00" if mine == client else _ratio_cell(runs, ref_runs))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "*latency*: per request inside the client process, from the call to the last byte of "
        "its body (medians over the runs of each run's p50 / p99); *requests/s*: requests / "
        "median wall. Every request's length checked in the child, "
        f"{SAMPLED} bodies SHA-256-checked against the local data per run.",
        "",
        "| mpr_storage | target | this run | met |",
        "|---|---|---:|---|",
    ]
    loops = dict.fromkeys(split_client(c)[1] for c in s.clients if split_client(c)[0] in CLIENTS)
    for loop in loops:
        client = "mpr_storage" if loop == "asyncio" else f"mpr_storage@{loop}"
        for ref, limit in GOALS:
            ratios = _ratios(results, s.key, client, same_loop(ref, client), quiet=False)
            value = statistics.median(ratios) if ratios else None
            shown = "–" if value is None else f"{value:.2f}×"
            met = "not measured" if value is None else ("yes" if value <= limit else "**no**")
            lines.append(
                f"| ({s.name}) × {ref}, on {loop}'s loop | ≤ {limit:.2f}× | {shown} | {met} |"
            )
    lines += ["", f"- Target: {TARGET}"]
    return lines


KINDS["handler_bytes"] = Kind(_spec_bytes, _verify_bytes, _table, "scenarios.handlers")
KINDS["handler_ranges"] = Kind(_spec_ranges, _verify_ranges, _table, "scenarios.handlers", big=True)
