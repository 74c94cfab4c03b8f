"""``python -m mpr_storage``: the ``mpr-storage`` command line."""

from mpr_storage._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
