"""The provider's request IDs on every error from an answer, on both transports:
``.request_id`` (shown in the message) and ``.host_id``, as support desks ask for them."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import S3Target
from mpr_storage import ObjectNotFoundError, Storage, StorageError
from s3proxy import FaultProxy

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "botocore"])
HOST_ID = "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="


@pytest.fixture
def front(seaweed: S3Target) -> Iterator[FaultProxy]:
    with FaultProxy(seaweed.server.endpoint_url) as p:
        yield p


@PATHS
@pytest.mark.parametrize(
    ("headers", "request_id", "host_id"),
    [
        ({"x-amz-request-id": "4442587FB7D0A2F9", "x-amz-id-2": HOST_ID},
         "4442587FB7D0A2F9", HOST_ID),
        ({"x-guploader-uploadid": "ABg5-UxExampleGcsUploadId"}, "ABg5-UxExampleGcsUploadId", None),
    ],
    ids=["aws", "gcs"],
)  # fmt: skip
async def test_an_error_answer_carries_the_request_ids(
    seaweed: S3Target,
    front: FaultProxy,
    tmp_path: Path,
    fast_path: bool,
    headers: dict[str, str],
    request_id: str,
    host_id: str | None,
) -> None:
    front.fail(3, status=500, code="InternalError", method=None, target="any", headers=headers)
    settings = seaweed.settings(endpoint_url=front.url, fast_path=fast_path, max_attempts=1)
    async with Storage(settings) as st:
        with pytest.raises(StorageError) as caught:
            await st.download_file(seaweed.bucket, seaweed.key("a.bin"), tmp_path / "a.bin")
        with pytest.raises(StorageError) as listed:
            await st.list_objects(seaweed.bucket, seaweed.prefix)
    for err in (caught.value, listed.value):
        assert (err.request_id, err.host_id, err.status) == (request_id, host_id, 500)
        assert f"request id {request_id}" in str(err)
        assert (host_id or "no host id") not in str(err)  # on the error, not in the message
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.request_id, again.host_id) == (request_id, host_id)


@PATHS
async def test_the_test_servers_request_ids_reach_the_error(
    s3: S3Target, tmp_path: Path, fast_path: bool
) -> None:
    # SeaweedFS sends x-amz-request-id, moto x-amzn-requestid (as botocore reads them both)
    async with Storage(s3.settings(fast_path=fast_path)) as st:
        with pytest.raises(ObjectNotFoundError) as caught:
            await st.download_file(s3.bucket, s3.key("missing.bin"), tmp_path / "m.bin")
    assert caught.value.request_id
    assert f"request id {caught.value.request_id}" in str(caught.value)
