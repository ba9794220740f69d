"""The package's structure (cnnviz_helpers/ARCHITECTURE.md): hooks are registered in one module, no
import cycle, no module over 400 lines. Static checks on the source, nothing runs."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cnnviz_helpers"
HOOK_CALLS = {"register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
              "register_full_backward_pre_hook", "register_backward_hook", "register_hook"}
HOOK_OWNER = PKG / "hooks" / "_register.py"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports, at the top or inside functions (TYPE_CHECKING blocks excluded)."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
    deps = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            cands = ([target] if node.module else []) + [f"{target}.{a.name}" for a in node.names]
            deps |= {c for c in cands if c in mods and c != name}
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name in mods}
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_hooks_are_registered_only_in_hooks_register():
    found = []
    for name, path in _modules().items():
        if path == HOOK_OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in HOOK_CALLS:
                found.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.attr}")
    assert not found, f"hook registration outside hooks/_register.py (use hooks.capture / module_hooks): {found}"


def test_no_import_cycle_inside_the_package():
    mods = _modules()
    graph = {n: _imports(n, p, mods) for n, p in mods.items()}
    # a package's __init__ importing its own submodules is how it re-exports them, not a circle
    for n in graph:
        graph[n] = {d for d in graph[n] if not (n != "cnnviz_helpers" and d == n.rsplit(".", 1)[0])}
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
