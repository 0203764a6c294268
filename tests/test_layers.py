"""The architecture, checked: Athena's own imports point down the layers and never form a cycle.

Read from the source with `ast` (every import, also those inside functions or under TYPE_CHECKING), so a
new upward import fails here with the offending line, not in a code review.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "athena"

# Bottom up. A package may import its own modules and anything in a lower layer; packages that share a
# layer are independent of each other (except the vocabulary, whose two modules may).
LAYERS: list[set[str]] = [
    {"records", "turns"},  # the shared vocabulary: imports nothing of Athena's
    {"config", "observability", "tasks"},  # settings, metrics and logs, stopping a task
    {"stores", "llm", "homeassistant"},  # clients, each with its own wire format
    {"sessions", "local", "tools"},  # the session policy; the local path (HA's sentences); tool servers (MCP)
    {"engine"},  # the one owner of a turn
    {"gateway"},  # the composition root
    {"wyoming"},  # the Wyoming server (a wire format of its own, started with the gateway by the app)
    {"api"},  # wire formats on top
    {"cli"},
    {"__main__"},
]
SAME_LAYER_ALLOWED = {("turns", "records")}


def _package(module: str) -> str:
    """`athena.stores.redis` -> "stores"; `athena.records` -> "records"; `athena` -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"athena.{package} is in no layer of tests/test_layers.py: place it there")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported athena module) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "athena"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "athena":
                continue
            # `from athena.x import y` may import the module athena.x.y: count the most specific that exists.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                exists = (SRC.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    SRC.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.append((node.lineno, candidate if exists else target))
    return found


def _graph() -> dict[str, list[tuple[int, str]]]:
    return {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_every_import_points_down() -> None:
    wrong = []
    for module, imports in _graph().items():
        mine = _package(module)
        for line, target in imports:
            theirs = _package(target)
            if theirs in (mine, "__init__"):
                continue
            if (mine, theirs) in SAME_LAYER_ALLOWED:
                continue
            if _layer(theirs) >= _layer(mine):
                wrong.append(f"{module}:{line} imports {target} ({mine} may not depend on {theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {m: sorted({t for _, t in imports if t != m}) for m, imports in _graph().items()}
    # A package's __init__ re-exports its modules: an edge into it is an edge into the package, not a cycle.
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
                if not _through_init(cycle):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def _through_init(cycle: list[str]) -> bool:
    """A package __init__ importing its own submodule, which imports a sibling through the package: a
    re-export, not a dependency cycle between modules."""
    packages = {m for m in cycle if (SRC.parent / m.replace(".", "/") / "__init__.py").exists()}
    return any(all(m == p or m.startswith(p + ".") for m in cycle) for p in packages)


def test_the_layers_name_every_package() -> None:
    for path in SRC.iterdir():
        name = path.stem if path.suffix == ".py" else path.name
        if name in ("__init__", "__pycache__") or (path.is_dir() and not (path / "__init__.py").exists()):
            continue
        _layer(name)
