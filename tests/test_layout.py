"""The package's shape, checked: modules and classes small enough to hold in the head, no
import cycles, and no module reaching into another module's underscore names.

These are the rules of docs/architecture.rst ("One house"); a change that breaks one fails
here, with the offending module named, instead of in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "watchers_bot"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def modules() -> Iterator[Tuple[str, Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path, ast.parse(path.read_text(encoding="utf-8"))


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package(path):
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def top_level_imports(tree: ast.Module) -> Iterator[ast.stmt]:
    """Imports run when the module is imported: not those inside functions, nor under
    ``if TYPE_CHECKING``."""
    def walk(body: List[ast.stmt]) -> Iterator[ast.stmt]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If):
                test = node.test
                name = getattr(test, "id", None) or getattr(test, "attr", None)
                if name != "TYPE_CHECKING":
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)
                for handler in node.handlers:
                    yield from walk(handler.body)
                yield from walk(node.orelse)
                yield from walk(node.finalbody)
    return walk(tree.body)


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def is_module(package: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*package.split("."))
    return (base / f"{name}.py").exists() or (base / name).is_dir()


def test_no_module_or_class_too_big() -> None:
    too_big = []
    for module, path, tree in modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{module}.{node.name}: {size} lines")
    assert not too_big, "over the limits of docs/architecture.rst: " + ", ".join(too_big)


def test_no_import_cycles() -> None:
    known = {module for module, _, _ in modules()}
    graph: Dict[str, Set[str]] = {}
    for module, path, tree in modules():
        edges = graph.setdefault(module, set())
        for node in top_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = resolve(module, path, node)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            edges.update(t for t in targets if t in known and t != module)
    # A package importing its own submodules (its re-exports) is not a cycle back from them.
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    cycles: List[str] = []
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_module_reaches_into_another_modules_underscore_names() -> None:
    reaches = []
    for module, path, tree in modules():
        imported_modules: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = resolve(module, path, node)
                if not source.startswith("watchers_bot"):
                    continue
                for alias in node.names:
                    # a private *module* of the package may be imported; a private name
                    # defined inside another module may not
                    if is_private(alias.name) and not is_module(source, alias.name):
                        reaches.append(f"{module} imports {source}.{alias.name}")
                    imported_modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("watchers_bot"):
                        imported_modules.add(alias.asname or alias.name.split(".")[0])
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and is_private(node.attr)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules):
                reaches.append(f"{module} uses {node.value.id}.{node.attr}")
    assert not reaches, "; ".join(sorted(set(reaches)))
