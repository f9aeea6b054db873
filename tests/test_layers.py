"""The package's three layers, read from the source: no stage imports another, no import cycle exists.

Layers (DESIGN §1): (1) ``cli``, ``pipeline`` and the other top-level modules that run several stages;
(2) the stage packages, side by side; (3) the shared layer, which imports no stage. Every ``import`` statement
counts, those inside functions too; imports under ``if TYPE_CHECKING:`` count for the layer rules but not for
cycles (they never run). A package's ``__init__`` importing its own submodules is a re-export, not a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "morphomass"
STAGES = ("mock", "fetch", "catalog", "preprocess", "cnn", "gbm", "evaluate", "predict")
#: Top-layer modules: they may import every stage; nothing below may import them.
TOP = ("__main__", "cli", "pipeline", "calibration")


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where, and whether it only runs for type checkers."""

    importer: str
    target: str
    names: tuple[str, ...]
    line: int
    type_only: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


MODULES = _all_modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(target: str, names: tuple[str, ...]) -> list[str]:
    """Map ``from target import names`` to the modules it loads (the submodules, where names are ones)."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    return found or [target]


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "morphomass":
                    found.append(Import(module, alias.name, (), node.lineno, type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "morphomass":
                names = tuple(alias.name for alias in node.names)
                for resolved in _resolve(target, names):
                    found.append(Import(module, resolved, names, node.lineno, type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return found


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _layer_unit(module: str) -> str:
    """Name a module's layer: ``morphomass.cnn.stage`` -> ``cnn``, ``morphomass.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _public_names(module: str) -> set[str]:
    """Return the names in a module's ``__all__`` (read from its source, without importing it)."""
    path = MODULES.get(module)
    if path is None:
        return set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return {elt.value for elt in node.value.elts if isinstance(elt, ast.Constant)}
    return set()


def _where(imp: Import) -> str:
    return f"{MODULES[imp.importer].relative_to(PACKAGE_ROOT.parent)}:{imp.line} imports {imp.target}"


def layer_violations(imports: list[Import]) -> list[str]:
    """Describe every import that breaks the layer rules (an empty list when all hold)."""
    problems = []
    for imp in imports:
        source, target = _layer_unit(imp.importer), _layer_unit(imp.target)
        if source == target or target == "morphomass":
            continue
        if source in STAGES and target in TOP:
            problems.append(f"{_where(imp)}: a stage imports the top layer")
        elif source in STAGES and target in STAGES:
            if source != "predict":
                problems.append(f"{_where(imp)}: stage {source!r} imports stage {target!r}")
                continue
            # predict may use the other stages' public functions: names in the target module's __all__.
            names = set(imp.names) if imp.names else {"<module>"}
            if imp.target in MODULES and MODULES[imp.target].name != "__init__.py" and imp.names == ():
                problems.append(f"{_where(imp)}: predict imports a whole stage module")
            private = names - _public_names(imp.target) - {imp.target.rpartition(".")[2]}
            if private:
                problems.append(
                    f"{_where(imp)}: predict imports {sorted(private)}, not public in {imp.target}"
                )
        elif (
            source not in STAGES
            and source not in TOP
            and source != "morphomass"
            and target in (*STAGES, *TOP)
        ):
            problems.append(f"{_where(imp)}: the shared layer imports {target!r}")
    return problems


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Find the strongly connected components of more than one module in the run-time import graph."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in imports:
        if imp.type_only or imp.target not in MODULES or imp.target == imp.importer:
            continue
        is_package = MODULES[imp.importer].name == "__init__.py"
        if is_package and imp.target.startswith(imp.importer + "."):
            continue  # a package re-exporting its own submodule
        graph[imp.importer].add(imp.target)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_parser_sees_imports_inside_functions() -> None:
    lazy = [imp for imp in ALL_IMPORTS if imp.importer == "morphomass.cli"]
    assert any(imp.target.startswith("morphomass.pipeline") for imp in lazy)
    assert len(MODULES) > 50


def test_stages_import_no_other_stage_and_nothing_imports_upwards() -> None:
    problems = layer_violations(ALL_IMPORTS)
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    cycles = import_cycles(ALL_IMPORTS)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("importer", "target", "names", "expected"),
    [
        ("morphomass.gbm.stage", "morphomass.predict.writer", ("write_bundle",), "stage 'gbm' imports stage"),
        ("morphomass.config", "morphomass.catalog.stage", ("build_sample",), "the shared layer imports"),
        ("morphomass.mock.stage", "morphomass.pipeline", ("run_pipeline",), "a stage imports the top layer"),
        ("morphomass.predict.stage", "morphomass.gbm.train", ("_private_helper",), "not public"),
    ],
)
def test_the_rules_catch_each_kind_of_violation(
    importer: str, target: str, names: tuple, expected: str
) -> None:
    found = layer_violations([Import(importer, target, names, 1, False)])
    assert found and expected in found[0]


def test_a_cycle_is_found() -> None:
    a, b = "morphomass.config", "morphomass.errors"
    cycles = import_cycles([Import(a, b, ("X",), 1, False), Import(b, a, ("Y",), 1, False)])
    assert cycles == [[a, b]]
    assert import_cycles([Import(a, b, ("X",), 1, False), Import(b, a, ("Y",), 1, True)]) == []
