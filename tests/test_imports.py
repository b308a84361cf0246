"""The import graph of src/mlplab has no cycle (module-level imports; those inside functions are
deferred on purpose and do not count). test_house.py also imports each house module first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, name: str) -> set[str]:
    """mlplab modules imported at module level (not inside functions or ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return found


MODULES = {module_name(p): p for p in sorted((SRC / "mlplab").rglob("*.py"))}


def test_the_import_graph_has_no_cycle():
    graph = {name: sorted(m for m in top_level_imports(path, name) if m in MODULES and m != name)
             for name, path in MODULES.items()}  # fmt: skip
    # a package's own __init__ importing its submodules is how packages work, not a cycle
    graph = {n: [m for m in deps if not (n.startswith(m + ".") and MODULES[m].name == "__init__.py")]
             for n, deps in graph.items()}  # fmt: skip
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name)
