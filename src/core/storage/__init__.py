"""The documented ``core.storage`` import surface: the blocking API of :mod:`mpr_storage.sync`.

``core`` is a namespace package (there is no ``core/__init__.py``). An application with its own
regular ``core`` package hides this one; it gets the same surface from a
``core/storage/__init__.py`` of its own holding the line below.
"""

from mpr_storage.sync import *  # noqa: F403
from mpr_storage.sync import __all__ as __all__
