"""argen's imports form a DAG: derived from the source (AST, nothing imported), counting the imports
inside functions too, so a cycle hidden behind a function-level import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "argen"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (a package is its __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the argen modules it imports anywhere in its file (top level or inside functions).

    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its
    ``__init__`` defines the name). The parent packages Python initialises on the way are not edges:
    a package whose ``__init__`` re-exports its submodules is not a cycle.
    """
    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            edges |= {m for m in map(owner, (n for n in names if n.split(".")[0] == "argen")) if m and m != mod}
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, …, a]``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_argen_imports_form_a_dag():
    mods = modules()
    graph = import_graph(mods)
    assert len(mods) > 40 and graph["argen.generator"] >= {"argen.targets", "argen.transformer.sampling"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_sees_cycles_through_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "argen"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from argen.sub.b import B\n")  # re-export: not a cycle
    (pkg / "sub" / "a.py").write_text("def f():\n    from argen.sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from argen.sub.c import C\nB = 1\n")
    (pkg / "sub" / "c.py").write_text("C = 2\n")
    mods = modules(pkg)
    assert find_cycle(import_graph(mods)) is None
    (pkg / "sub" / "c.py").write_text("C = 2\n\n\ndef g():\n    from .a import f\n    return f\n")
    cycle = find_cycle(import_graph(modules(pkg)))
    assert cycle[0] == cycle[-1] and sorted(cycle[1:]) == ["argen.sub.a", "argen.sub.b", "argen.sub.c"]


def function_level_imports(mods: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(file, line, statement) of every import inside a function."""
    found = []
    for path in mods.values():
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        found.append((path, node.lineno, fn.lineno))
    return found


def test_every_function_level_import_says_why():
    """Function-level imports are kept only to keep a heavy or optional import off a light path, and
    each says so: a comment on its line, in the five lines above it, or on its function's ``def``
    line or the three lines above that (one comment can serve a function's imports)."""
    missing = []
    for path, line, def_line in function_level_imports(modules()):
        lines = path.read_text().splitlines()
        near = lines[max(0, line - 6) : line] + lines[max(0, def_line - 4) : def_line]
        if not any("#" in text for text in near):
            missing.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {lines[line - 1].strip()}")
    assert not missing, "function-level imports without a reason:\n" + "\n".join(missing)
