"""The package's layout shows the flow: stage packages import only earlier stages and the shared
modules, never a later stage, and no two modules import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
# the flow, in order; a stage may import the shared modules and any stage before it
STAGES = ["ingest", "embed", "reduce", "atlas", "analysis", "slices"]
SHARED = {"io", "figures", "figure_check", "config", "config_errors", "logs", "memory",
          "subgroups", "demo", "__init__"}  # fmt: skip
OUTSIDE = {"cli", "testing"}  # entry points and test support sit above every stage


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "cxratlas").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(path: Path) -> set[str]:
    """Every dotted name a file imports, anywhere in it (`a.b` and, for `from a.b import c`,
    `a.b.c` too, since c may be a module); relative imports are refused by a test below."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    return imported_names(path) & known


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_relative_imports():
    """Absolute imports name the stage they reach into, so the arrows can be read in the code."""
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{name}: relative import"


def test_imports_go_one_way():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        here = stage(name)
        if here in OUTSIDE or here in SHARED:
            if here in SHARED:  # shared modules import no stage
                wrong += [f"{name} -> {t}" for t in imports(path, set(mods))
                          if stage(t) not in SHARED]  # fmt: skip
            continue
        for target in imports(path, set(mods)):
            there = stage(target)
            if there in SHARED or there == here:
                continue
            if there in OUTSIDE or STAGES.index(there) > STAGES.index(here):
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    mods = modules()
    graph = {n: {t for t in imports(p, set(mods)) if t != n} for n, p in mods.items()}
    # a package's __init__ re-exporting its modules is not a cycle of ideas
    for n in graph:
        graph[n] = {t for t in graph[n] if not (mods[t].name == "__init__.py" and n.startswith(t))}
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        state[n] = 1
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                raise AssertionError(" -> ".join([*trail[trail.index(t) :], t]))
            if t not in state:
                visit(t, [*trail, t])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
