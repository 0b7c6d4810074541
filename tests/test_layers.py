"""The layering of docs/layers.rst holds: pyro_dgm's imports point down and never circle.

The graph is read from the source (``ast``), module by module, with every import
counted: at the top of a module, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyro_dgm

ROOT = Path(pyro_dgm.__file__).parent

#: Each top-level part of the package and its layer: a module may import its own layer
#: and the layers below, never a layer above (docs/layers.rst).
LAYERS = {
    "_version": 0,
    "utils": 0,
    "nn": 1,
    "datasets": 1,
    "transforms": 2,
    "distributions": 3,
    "flows": 3,
    "image_flows": 3,
    "models": 4,
    "infer": 5,
    "compression": 6,
    "diagnostics": 6,
    "plots": 6,
    "cli": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rsplit(".", 1)[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The pyro_dgm modules that ``module`` imports (``from . import x`` of a submodule
    counts as an import of that submodule, not of the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pyro_dgm")}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            if not target.startswith("pyro_dgm"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs if subs else {target}
            if subs != {f"{target}.{a.name}" for a in node.names}:
                found.add(target)  # some names come from the module itself
    # a name imported from a module that is not one is looked up in its package
    return {_known_ancestor(name, known) for name in found} - {module}


def _known_ancestor(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {_part(m) for m in _modules()} - {""}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS and docs: {parts - set(LAYERS)}"


def test_imports_point_down() -> None:
    upward = []
    for module, targets in _graph().items():
        if module == "pyro_dgm":  # the package root gathers every part
            continue
        for target in targets:
            if target == "pyro_dgm":
                upward.append(f"{module} -> the package root")
            elif LAYERS[_part(target)] > LAYERS[_part(module)]:
                upward.append(f"{module} (layer {LAYERS[_part(module)]}) -> {target} "
                              f"(layer {LAYERS[_part(target)]})")  # fmt: skip
    assert not upward, "imports pointing up:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_private_name_crosses_modules() -> None:
    crossing = []
    modules = _modules()
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                if target.startswith("pyro_dgm"):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    private = [n for n in private if n != "__version__"]
                    crossing += [f"{module} imports {target}.{n}" for n in private]
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize(
    ("module", "node", "expected"),
    [
        ("pyro_dgm.a.b", ast.ImportFrom(module="c", names=[], level=1), "pyro_dgm.a.c"),
        ("pyro_dgm.a.b", ast.ImportFrom(module="c", names=[], level=2), "pyro_dgm.c"),
        ("pyro_dgm.a", ast.ImportFrom(module="c", names=[], level=1), "pyro_dgm.a.c"),
        ("pyro_dgm.a.b", ast.ImportFrom(module=None, names=[], level=2), "pyro_dgm"),
    ],
)
def test_relative_imports_resolve_as_python_does(module, node, expected) -> None:
    is_package = module == "pyro_dgm.a"
    assert _resolve(module, is_package, node) == expected


def test_the_checks_find_a_planted_circle_and_an_upward_import(tmp_path, monkeypatch) -> None:
    """The tests above can fail: a fake package with both faults is caught."""
    fake = tmp_path / "pyro_dgm"
    (fake / "nn").mkdir(parents=True)
    (fake / "infer").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "nn" / "__init__.py").write_text("from ..infer import fit\n")
    (fake / "infer" / "__init__.py").write_text("from ..nn import net\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    with pytest.raises(AssertionError, match="pyro_dgm.nn .layer 1. -> pyro_dgm.infer"):
        test_imports_point_down()
    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circles()
