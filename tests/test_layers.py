"""The package imports strictly downward, without a circle (type-only imports included), and
the CLI uses the library's public names only. Read from the source, not from a running import."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import mpr_storage

PACKAGE = Path(mpr_storage.__file__).parent

# Bottom to top; a module may import from its own layer or below, never above
# (docs/ARCHITECTURE.md draws the same table).
LAYERS: list[tuple[str, set[str]]] = [
    ("errors", {"_errors", "_error_map"}),
    ("config, models", {"_sizes", "_endpoint", "_config", "_models", "_progress"}),
    (
        "keys, files",
        {"_keys", "_files", "_premade", "_checksums", "_partfile", "_leftovers", "_preload"},
    ),
    (
        "transport",
        {
            "_sigv4",
            "_xml",
            "_retry",
            "_transport",
            "_payload",
            "_body",
            "_aiohttp_errors",
            "_aiohttp_payload",
            "_http",
            "_presigner",
            "_fast_get",
            "_fast",
            "_botocore_errors",
            "_botocore",
        },
    ),
    ("client", {"_client"}),
    ("transfer I/O", {"_ranges", "_fetch"}),
    ("objects", {"_objects", "_listing", "_presign", "_put", "_copy", "_read"}),
    ("engine", {"_concurrency", "_engine"}),
    ("transfer", {"_manifest", "_walk", "_downloads", "_uploads"}),
    ("frames", {"_frames"}),
    ("storage", {"_storage", "_surface"}),
    ("facade", {"__init__"}),
    ("sync, CLI, web", {"_portal", "sync", "__main__", "_cli", "_server", "web"}),
]
LEVEL = {name: level for level, (_, names) in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    """``_cli/_rm.py`` -> ``_cli``: a subpackage counts as one module of its layer."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """``(imported module of the package, imported name or None)`` for every import in the
    file, wherever it stands (functions and ``if TYPE_CHECKING:`` blocks included)."""
    found: list[tuple[str, str | None]] = []
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for top-level modules
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mpr_storage":
                    found.append((parts[1] if len(parts) > 1 else "__init__", None))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0:
                if not module.startswith("mpr_storage"):
                    continue
                parts = module.split(".")[1:]
            elif node.level - 1 == depth:  # relative to the package itself
                parts = module.split(".") if module else []
            else:
                continue  # within a subpackage: its own business
            for alias in node.names:
                if parts:
                    found.append((parts[0], alias.name))
                else:  # ``from . import _x`` / ``from .. import Name``
                    target = alias.name if alias.name in LEVEL else "__init__"
                    found.append((target, alias.name))
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for target, _ in _imports(path):
            if target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def test_every_module_has_a_layer() -> None:
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    assert modules - LEVEL.keys() == set(), "add new modules to LAYERS"


@pytest.mark.parametrize("source", sorted(LEVEL))
def test_imports_flow_downward(source: str) -> None:
    upward = {
        target for target in _graph().get(source, set()) if LEVEL.get(target, -1) > LEVEL[source]
    }
    assert upward == set(), f"{source} imports from layers above it"


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                circle = path[path.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_cli_uses_public_names_only() -> None:
    for path in sorted((PACKAGE / "_cli").glob("*.py")):
        for target, name in _imports(path):
            if target == "__init__":
                assert name in mpr_storage.__all__ or name == "sync", (path.name, name)
            else:
                assert target in ("_server", "_cli"), (path.name, target)


def test_web_uses_public_names_only() -> None:
    """Handlers could be written with the public API alone; the one private name web.py takes
    is a header format it shares with presigned URLs (``filename=`` on both)."""
    shared = {("_presign", "content_disposition")}
    for target, name in _imports(PACKAGE / "web.py"):
        if (target, name) in shared:
            continue
        assert target == "__init__" and (name is None or name in mpr_storage.__all__), name
