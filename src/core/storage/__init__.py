"""The documented `core.storage` import surface (filled by the sync shim)."""
