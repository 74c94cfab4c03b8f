"""Single-object uploads against real servers: multipart, content types."""

from __future__ import annotations

import mimetypes
import os
import random
import string
from pathlib import Path

from conftest import S3Target
from mpr_storage import Storage
from mpr_storage._put import guess_content_type

MiB = 1024 * 1024


async def test_multipart_round_trip(s3: S3Target, tmp_path: Path) -> None:
    settings = s3.settings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    data = os.urandom(12 * MiB + 3)
    (tmp_path / "big.bin").write_bytes(data)
    key = s3.key("big.bin")
    async with Storage(settings) as st:
        info = await st.upload_file(tmp_path / "big.bin", s3.bucket, key)
        assert info.size == len(data) and info.etag.endswith("-3")  # three parts
        out = await st.download_file(s3.bucket, key, tmp_path / "big.out")
    assert out.read_bytes() == data


async def test_upload_guesses_content_type(storage: Storage, s3: S3Target, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"\xff\xd8")
    client = await storage.client()
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("a.jpg"))
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("b.bin"), content_type="video/mp4")
    await storage.upload_file(tmp_path / "f", s3.bucket, s3.key("c.unknownext"))
    types = [
        (await client.head_object(Bucket=s3.bucket, Key=s3.key(n)))["ContentType"]
        for n in ("a.jpg", "b.bin", "c.unknownext")
    ]
    assert types == ["image/jpeg", "video/mp4", "application/octet-stream"]


def test_content_type_guesses_agree_with_mimetypes() -> None:
    """The guess is looked up once per ending; it must be what mimetypes says of every name."""
    endings = [*mimetypes.types_map, *mimetypes.encodings_map, *mimetypes.suffix_map]
    endings += [".JPG", ".Gz", ".", ""]
    names = ["a b.jpg", "ünï cödé ✓.png", "a..b.bin", "deep/er/ key+:.png", "x.tar.gz"]
    names += [".tar.gz", ".hidden", "..mp4", "a..jpg", "data:x.jpg", "c:d.jpg", "a+b.jpg"]
    rnd = random.Random(14)
    for _ in range(5000):
        stem = "".join(rnd.choices(string.ascii_letters + "._-/:?#\\ %", k=rnd.randint(0, 6)))
        names.append(stem + "".join(rnd.choices(endings, k=rnd.randint(0, 3))))
    for name in names:
        expected = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        assert guess_content_type(name) == expected, name
