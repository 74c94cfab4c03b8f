"""The bench's data: random files written once, seeded into the bucket, and the checks that
every run's output is exactly them (file set, sizes, SHA-256 samples, listings)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUCKET = "mpr-bench"
KiB, MiB = 1024, 1024 * 1024
SAMPLE = 64  # files SHA-256-checked per download run
UPLOAD_SAMPLE = 16  # objects read back and SHA-256-checked per upload run
MANIFEST_NAME = ".mpr-manifest.json"  # mpr_storage's download sidecar (documented)

# --- seeding --------------------------------------------------------------------------------


@dataclass
class FileSet:
    """A local source directory and what every file in it must be."""

    name: str
    root: Path
    prefix: str  # where it is seeded in the bucket
    timeline_id: str
    files: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # rel: size, sha, md5

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _, _ in self.files.values())


def _write_random_files(root: Path, count: int, size: int, big: bool) -> dict[str, Any]:
    root.mkdir(parents=True)
    files: dict[str, tuple[int, str, str]] = {}
    if big:
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        with open(root / "large.bin", "wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MiB))
                f.write(block)
                sha.update(block)
                md5.update(block)
                left -= len(block)
        files["large.bin"] = (size, sha.hexdigest(), md5.hexdigest())
        return files
    for i in range(1, count + 1):
        name = f"frame_{i:06d}.jpg"
        data = os.urandom(size)
        (root / name).write_bytes(data)
        files[name] = (
            size,
            hashlib.sha256(data).hexdigest(),
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
        )
    return files


def _boto(server: Any) -> Any:
    """A plain boto3 client for seeding checks, verification and cleanup (parent side)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        region_name=server.region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=32,
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _seed(server: Any, fs: FileSet, big: bool) -> None:
    """Upload ``fs`` with mpr_storage (fast); fall back to boto3 threads if that fails. The
    result is checked with an independent boto3 listing either way."""
    t0 = time.perf_counter()
    try:
        import mpr_storage

        async def go() -> None:
            if big:
                await mpr_storage.upload_file(
                    fs.root / "large.bin", BUCKET, fs.prefix + "large.bin"
                )
            else:
                await mpr_storage.upload_many(fs.root, BUCKET, fs.prefix, concurrency=32)

        asyncio.run(go())
        how = "mpr_storage"
    except Exception as exc:
        print(f"!! seeding {fs.name} with mpr_storage failed ({exc!r}); using boto3 threads")
        client = _boto(server)
        try:
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda rel: client.upload_file(str(fs.root / rel), BUCKET, fs.prefix + rel),
                        fs.files,
                    )
                )
        finally:
            client.close()
        how = "boto3 threads"
    listed = _list(server, fs.prefix)
    problems = _compare_listing(listed, fs, fs.prefix, check_etag=not big)
    if problems:
        raise SystemExit(f"seeding {fs.name} is wrong: {problems}")
    print(
        f"   seeded {len(fs.files):,} objects ({fs.total_bytes / MiB:.0f} MiB) under "
        f"{fs.prefix} with {how} in {time.perf_counter() - t0:.1f} s (listing verified)"
    )


def _list(server: Any, prefix: str) -> dict[str, tuple[int, str]]:
    client = _boto(server)
    try:
        found: dict[str, tuple[int, str]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", ()):
                found[item["Key"]] = (int(item["Size"]), str(item.get("ETag", "")).strip('"'))
        return found
    finally:
        client.close()


def _compare_listing(
    listed: dict[str, tuple[int, str]], fs: FileSet, prefix: str, *, check_etag: bool
) -> str:
    expected = {prefix + rel: v for rel, v in fs.files.items()}
    missing = sorted(expected.keys() - listed.keys())
    extra = sorted(listed.keys() - expected.keys())
    wrong_size = [k for k in expected.keys() & listed.keys() if listed[k][0] != expected[k][0]]
    wrong_etag = (
        [k for k in expected.keys() & listed.keys() if listed[k][1] != expected[k][2]]
        if check_etag
        else []
    )
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", extra),
        ("wrong size", wrong_size),
        ("ETag != MD5", wrong_etag),
    ):
        if keys:
            problems.append(f"{len(keys)} {label} (e.g. {sorted(keys)[:3]})")
    return "; ".join(problems)


# --- verification ---------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_dir(dest: Path, fs: FileSet, client: str, rng: random.Random) -> tuple[str, list[str]]:
    """Problems ('' = none) and notes about a prefetch destination."""
    notes: list[str] = []
    if not dest.is_dir():
        return f"destination {dest} does not exist", notes
    found: dict[str, int] = {}
    for dirpath, _, filenames in os.walk(dest):
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(dest).as_posix()
            if rel == MANIFEST_NAME and client.startswith("mpr_storage"):
                notes.append("sidecar manifest")  # documented resume feature, not data
                continue
            found[rel] = path.stat().st_size
    problems = []
    missing = sorted(fs.files.keys() - found.keys())
    extra = sorted(found.keys() - fs.files.keys())
    wrong = sorted(r for r in fs.files.keys() & found.keys() if found[r] != fs.files[r][0])
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong size", wrong)):
        if items:
            problems.append(f"{len(items)} {label} files (e.g. {items[:3]})")
    names = sorted(fs.files.keys() & found.keys())
    sample = set(rng.sample(names, min(SAMPLE, len(names)))) | set(names[:1] + names[-1:])
    bad = [r for r in sorted(sample) if _sha256_file(dest / r) != fs.files[r][1]]
    if bad:
        problems.append(f"SHA-256 mismatch in {len(bad)} of {len(sample)} sampled (e.g. {bad[:3]})")
    return "; ".join(problems), notes


def _verify_upload(server: Any, fs: FileSet, prefix: str, rng: random.Random) -> str:
    problems = _compare_listing(_list(server, prefix), fs, prefix, check_etag=True)
    client = _boto(server)
    try:
        bad = []
        for rel in rng.sample(sorted(fs.files), min(UPLOAD_SAMPLE, len(fs.files))):
            body = client.get_object(Bucket=BUCKET, Key=prefix + rel)["Body"].read()
            if hashlib.sha256(body).hexdigest() != fs.files[rel][1]:
                bad.append(rel)
    except Exception as exc:
        bad = [f"read-back failed: {exc!r}"]
    finally:
        client.close()
    if bad:
        problems = "; ".join(
            p for p in (problems, f"SHA-256 mismatch on read-back: {bad[:3]}") if p
        )
    return problems


def _verify_large_up(server: Any, fs: FileSet, prefix: str, tmp: Path) -> str:
    """The uploaded object is the file: its listing size, then the whole of it read back
    (boto3's ranged download) and SHA-256-checked."""
    size, sha, _ = fs.files["large.bin"]
    listed = _list(server, prefix)
    if list(listed) != [prefix + "large.bin"] or listed[prefix + "large.bin"][0] != size:
        return f"listing after the upload: {listed}"
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "large.bin"
    client = _boto(server)
    try:
        client.download_file(BUCKET, prefix + "large.bin", str(path))
        return "" if _sha256_file(path) == sha else "SHA-256 mismatch on read-back"
    except Exception as exc:
        return f"read-back failed: {exc!r}"
    finally:
        client.close()
        path.unlink(missing_ok=True)


def _verify_api(fs: FileSet, data: dict[str, Any]) -> str:
    """Every key was found, and the sampled presigned URLs fetch the right bytes."""
    notes = data.get("notes", {})
    problems = []
    if data.get("objects") != 2 * len(fs.files):
        problems.append(f"{data.get('objects')} calls reported, expected {2 * len(fs.files)}")
    if notes.get("found") != len(fs.files):
        problems.append(f"object_exists found {notes.get('found')} of {len(fs.files)} keys")
    urls = notes.pop("sample_urls", {})
    if not urls:
        problems.append("no presigned URL to check")
    for rel, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
        except Exception as exc:
            problems.append(f"presigned URL of {rel} failed: {exc!r}")
            break
        if hashlib.sha256(body).hexdigest() != fs.files[rel][1]:
            problems.append(f"presigned URL of {rel}: SHA-256 mismatch")
    return "; ".join(problems)


def _delete_prefix(server: Any, prefix: str) -> str:
    keys = list(_list(server, prefix))
    client = _boto(server)
    try:
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=BUCKET,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )
    finally:
        client.close()
    left = _list(server, prefix)
    return f"{len(left)} objects left under {prefix} after delete" if left else ""
