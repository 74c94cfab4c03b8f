"""anyio's lazily loaded parts come with ``import mpr_storage``, not with the first request."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import anyio

from conftest import S3Target

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import mpr_storage

    async def main(bucket, key, dest):
        before = set(sys.modules)
        assert not await mpr_storage.object_exists(bucket, key)
        await mpr_storage.download_many(bucket, [], dest)
        print(json.dumps(sorted(set(sys.modules) - before)))

    asyncio.run(main(*sys.argv[1:4]))
    """
)


async def test_the_first_request_imports_nothing_of_anyio(s3: S3Target, tmp_path: Path) -> None:
    args = [s3.bucket, s3.key("absent"), str(tmp_path / "dest")]
    result = await anyio.run_process([sys.executable, "-c", CHILD, *args], check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    imported = json.loads(result.stdout)
    assert [name for name in imported if name.split(".")[0] == "anyio"] == []
