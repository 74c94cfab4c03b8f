"""``rm``: plan first (what exists, what is missing), confirm when it is a lot, then delete.

``-r PREFIX`` treats the prefix as a directory (``frames/tl-4`` means ``frames/tl-4/``);
``--raw-prefix`` matches the prefix as a plain string. More than ``HANDFUL`` objects, or a
whole bucket, need a "y" on a terminal, and ``--yes`` anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import Storage, StorageError, StorageSettings
from ._base import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    Context,
    UsageError,
    is_url,
    parse_s3_url,
    plural,
    run,
    safe,
)

HANDFUL = 10  # deleting more than this many objects asks first
COUNT_UP_TO = 1000  # a KEY that is a prefix: its objects are counted up to this many


@dataclass
class _Plan:
    bucket: str
    whole_bucket: bool = False
    existing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    prefixes: dict[str, int] = field(default_factory=dict)  # missing keys that are prefixes
    failed: dict[str, str] = field(default_factory=dict)  # key: why it was not deleted


def _targets(ctx: Context) -> dict[str, list[str]]:
    a = ctx.args
    targets: dict[str, list[str]] = {}
    if is_url(a.bucket):
        for url in (a.bucket, *a.keys):
            if not is_url(url):
                raise UsageError(f"{url!r}: after an s3:// URL give only s3:// URLs")
            bucket, key = parse_s3_url(url)
            targets.setdefault(bucket, []).append(key)
    else:
        if not a.keys:
            raise UsageError("KEY is required after BUCKET (or write s3://BUCKET/KEY)")
        for key in a.keys:
            if is_url(key):
                raise UsageError(f"{key!r}: give either BUCKET KEY... or s3:// URLs, not both")
        targets[a.bucket] = list(a.keys)
    if a.raw_prefix and not a.recursive:
        raise UsageError("--raw-prefix only goes with --recursive")
    if not a.recursive and any(k == "" for keys in targets.values() for k in keys):
        raise UsageError("no KEY given (use --recursive to delete everything under a prefix)")
    return targets


def _as_directory(prefix: str, raw: bool) -> str:
    return prefix if raw or prefix == "" or prefix.endswith("/") else prefix + "/"


async def _plan(
    ctx: Context, settings: StorageSettings, targets: dict[str, list[str]]
) -> list[_Plan]:
    a = ctx.args
    plans: list[_Plan] = []
    limit = asyncio.Semaphore(settings.max_concurrency)
    async with Storage(settings) as s:
        for bucket, keys in targets.items():
            plan = _Plan(bucket)
            plans.append(plan)
            if a.recursive:
                seen: set[str] = set()
                for key in keys:
                    prefix = _as_directory(key, a.raw_prefix)
                    plan.whole_bucket |= prefix == ""
                    async for o in s.iter_objects(bucket, prefix):
                        if o.key not in seen:
                            seen.add(o.key)
                            plan.existing.append(o.key)
                continue
            unique = list(dict.fromkeys(keys))
            found = await asyncio.gather(*(_exists(s, limit, bucket, k) for k in unique))
            for key, there in zip(unique, found, strict=True):
                (plan.existing if there else plan.missing).append(key)
            # a missing key, or one ending in '/' (SeaweedFS answers a HEAD of any directory)
            maybe = [*plan.missing, *(k for k in plan.existing if k.endswith("/"))]
            counts = await asyncio.gather(*(_count(s, limit, bucket, k) for k in maybe))
            plan.prefixes = {k: n for k, n in zip(maybe, counts, strict=True) if n}
    return plans


async def _exists(s: Storage, limit: asyncio.Semaphore, bucket: str, key: str) -> bool:
    async with limit:
        return await s.object_exists(bucket, key)


async def _count(s: Storage, limit: asyncio.Semaphore, bucket: str, key: str) -> int:
    """How many objects (up to ``COUNT_UP_TO``) ``key`` holds as a directory (itself not
    counted)."""
    count = 0
    async with limit:
        async for o in s.iter_objects(bucket, _as_directory(key, raw=False)):
            count += o.key != key
            if count >= COUNT_UP_TO:
                break
    return count


async def _delete(settings: StorageSettings, plans: list[_Plan], *, keep_going: bool) -> None:
    """Delete each plan's objects; with ``keep_going`` a failure is recorded in the plan (what
    still exists afterwards failed) instead of raised."""
    async with Storage(settings) as s:
        for plan in plans:
            if not plan.existing:
                continue
            try:
                await s.delete_objects(plan.bucket, plan.existing)
            except StorageError as exc:
                if not keep_going:
                    raise
                limit = asyncio.Semaphore(settings.max_concurrency)
                still = await asyncio.gather(
                    *(_exists(s, limit, plan.bucket, k) for k in plan.existing)
                )
                for key, there in zip(plan.existing, still, strict=True):
                    if there:
                        plan.failed[key] = str(exc)


def _prefix_hint(plans: list[_Plan]) -> None:
    """Refuse (before deleting anything) keys that are no object but a prefix holding some."""
    hints = [
        f"s3://{p.bucket}/{key} is not an object but a prefix holding "
        f"{plural(n, 'object') if n < COUNT_UP_TO else f'{COUNT_UP_TO} or more objects'}"
        for p in plans
        for key, n in p.prefixes.items()
    ]
    if hints:
        raise CliError(safe(f"rm: {'; '.join(hints)}: rm -r deletes them (nothing was deleted)"))


def _json(plans: list[_Plan], *, dry_run: bool) -> str:
    def urls(pick: Callable[[_Plan], Iterable[str]]) -> list[str]:
        return [f"s3://{p.bucket}/{key}" for p in plans for key in pick(p)]

    def deleted(p: _Plan) -> list[str]:
        return [] if dry_run else [k for k in p.existing if k not in p.failed]

    result: dict[str, object] = {"deleted": urls(deleted), "missing": urls(lambda p: p.missing)}
    if dry_run:
        result["would_delete"] = urls(lambda p: p.existing)
    result["failed"] = [
        {"url": f"s3://{p.bucket}/{key}", "error": why}
        for p in plans
        for key, why in p.failed.items()
    ]
    return json.dumps(result, indent=2)


def _confirmed(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is a no."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print(file=sys.stderr)
    return answer.strip().lower() in ("y", "yes")


def _what(plans: list[_Plan]) -> str:
    count = sum(len(p.existing) for p in plans)
    where = ", ".join(f"s3://{p.bucket}" for p in plans if p.existing)
    whole = [p.bucket for p in plans if p.whole_bucket and p.existing]
    text = f"{plural(count, 'object')} from {where}"
    if whole:
        text += f" (all of {', '.join(f's3://{b}' for b in whole)})"
    return safe(text)


def cmd_rm(ctx: Context) -> int:
    """Delete objects (or, with --recursive, everything under prefixes)."""
    a = ctx.args
    targets = _targets(ctx)
    settings = ctx.settings()
    plans = run(_plan(ctx, settings, targets))
    _prefix_hint(plans)
    count = sum(len(p.existing) for p in plans)
    if a.dry_run and a.json:
        print(_json(plans, dry_run=True))
        return EXIT_OK
    if a.dry_run:
        for plan in plans:
            for key in plan.existing:
                print(safe(f"s3://{plan.bucket}/{key}"))
            ctx.say(
                f"would delete {plural(len(plan.existing), 'object')} from s3://{plan.bucket}, "
                f"missing {len(plan.missing)}"
            )
        return EXIT_OK
    risky = count > HANDFUL or any(p.whole_bucket and p.existing for p in plans)
    if risky and not a.yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise CliError(
                f"rm: not deleting {_what(plans)} without confirmation: pass --yes "
                f"(--dry-run lists them)"
            )
        if not _confirmed(f"delete {_what(plans)}?"):
            raise CliError("rm: not confirmed; nothing was deleted")
    run(_delete(settings, plans, keep_going=a.json))
    if a.json:
        print(_json(plans, dry_run=False))
        return EXIT_ERROR if any(p.failed for p in plans) else EXIT_OK
    for plan in plans:
        ctx.say(
            f"deleted {plural(len(plan.existing), 'object')} from s3://{plan.bucket}, "
            f"missing {len(plan.missing)}"
        )
    return EXIT_OK
