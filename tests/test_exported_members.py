"""The public surface cannot drift: every name in __all__ exists and claims the package."""

from __future__ import annotations

import mpr_storage


def test_all_names_exist_and_are_sorted_uniquely() -> None:
    assert len(set(mpr_storage.__all__)) == len(mpr_storage.__all__)
    for name in mpr_storage.__all__:
        assert hasattr(mpr_storage, name), name


TYPE_ALIASES = {"ProgressCallback"}


def test_exported_members_claim_the_package() -> None:
    for name in mpr_storage.__all__:
        member = getattr(mpr_storage, name)
        if not isinstance(member, str) and name not in TYPE_ALIASES:
            assert member.__module__ == "mpr_storage", name


def test_contract_names_are_public() -> None:
    required = {
        "get_s3_client",
        "list_objects",
        "iter_objects",
        "download_file",
        "download_to_temp",
        "upload_file",
        "get_presigned_url",
        "object_exists",
        "delete_objects",
        "BUCKET_IN",
        "BUCKET_OUT",
        "ObjectInfo",
        "Storage",
        "StorageSettings",
        "StorageError",
        "ObjectNotFoundError",
        "ObjectExistsError",
        "BucketNotFoundError",
        "AccessDeniedError",
        "InvalidKeyError",
        "ConfigError",
        "StorageConnectionError",
        "ThrottledError",
        "TransferError",
    }
    assert required <= set(mpr_storage.__all__)
