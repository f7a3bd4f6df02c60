"""The package's modules import each other without cycles: data flows one way.

The graph is read from the source, not from `sys.modules`: every module of bayesicl is
parsed with `ast`, and every `import` / `from … import` in it — at the top or inside a
function body — is an edge to the bayesicl module it names (relative imports resolved;
`from package import name` is an edge to package.name when that is a module, else to the
package's __init__). A cycle is reported as the chain of modules, with line numbers, that
closes it. Shared plumbing belongs in a leaf module; composition (fit + plot + report)
belongs in the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "bayesicl"

def modules(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: path} of every module of the package at `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function body) for each import of a `known` module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(node) for node in ast.walk(function)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:        # bayesicl.x.y.attribute → bayesicl.x.y
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, id(node) in in_function))
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """{module: {imported module: line of the import}} over the package at `root`."""
    found = modules(root)
    return {name: {target: line for target, line, _ in imports(name, path, set(found))}
            for name, path in found.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, …, a], or None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " → ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" → {cycle[-1]}"


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + describe(graph, cycle)


def test_a_cycle_through_a_relative_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import VALUE\n")
    (package / "sub" / "leaf.py").write_text("import os\nVALUE = 1\n")
    (package / "a.py").write_text("from .sub import leaf\nfrom . import b\n")
    (package / "b.py").write_text("def late():\n    from .a import x\n    return x\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.leaf": 1, "pkg.b": 2}
    assert graph["pkg.sub"] == {"pkg.sub.leaf": 1}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (package / "b.py").write_text("from .sub.leaf import VALUE\n")
    assert find_cycle(import_graph(package)) is None


def test_the_fit_stage_never_imports_the_figures_or_the_report():
    graph = import_graph()
    for module, targets in graph.items():
        if module == "bayesicl.inference" or module.startswith("bayesicl.inference."):
            consumers = [t for t in targets if t.split(".")[:2] in (["bayesicl", "plot"], ["bayesicl", "report"],
                                                                   ["bayesicl", "commands"])]
            assert not consumers, f"{module} imports {consumers}; composition belongs in bayesicl.commands"
