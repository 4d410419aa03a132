"""The layers import one way: pages -> ui, vitviz, training.jobs; ui -> vitviz; training -> vitviz; vitviz -> nothing above it.

Every import statement counts, including those inside functions (a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("vitviz", "training", "ui", "pages")
# What each layer may import from the project (besides itself) and which outside packages it must not.
ALLOWED = {
    "vitviz": set(),
    "training": {"vitviz"},
    "ui": {"vitviz"},
    "pages": {"ui", "vitviz", "training.jobs"},
}
FORBIDDEN_OUTSIDE = {"vitviz": {"streamlit"}, "training": {"streamlit"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            modules[_module_name(path)] = path
    modules["app"] = ROOT / "app.py"
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Absolute names of everything ``path`` imports; ``from pkg import sub`` counts as ``pkg.sub`` when it is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _allowed(importer: str, imported: str) -> bool:
    source, target = _layer(importer), _layer(imported)
    if target not in LAYERS or target == source:
        return True
    return any(imported == rule or imported.startswith(rule + ".") for rule in ALLOWED.get(source, set()))


MODULES = _project_modules()
GRAPH = {name: _imports(name, path, MODULES) for name, path in MODULES.items()}


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = sorted(f"{importer} imports {imported}" for importer, imported_set in GRAPH.items()
                   if _layer(importer) == layer for imported in imported_set if not _allowed(importer, imported))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_OUTSIDE))
def test_the_library_and_training_never_import_streamlit(layer):
    wrong = sorted(f"{importer} imports {imported}" for importer, imported_set in GRAPH.items()
                   if _layer(importer) == layer for imported in imported_set
                   if imported.split(".")[0] in FORBIDDEN_OUTSIDE[layer])
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = {name: {i for i in imported if i in MODULES and i != name} for name, imported in GRAPH.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle of the layering; every other edge counts.
    for name in list(edges):
        edges[name] = {i for i in edges[name] if not (MODULES[name].name == "__init__.py" and i.startswith(name + "."))}
    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rules above are not vacuous: a vitviz module importing training or streamlit is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit\nfrom training.config import MODEL_PRESETS\nfrom . import models\n")
    imported = _imports("vitviz.bad", bad, {**MODULES, "vitviz.bad": bad})
    assert "streamlit" in imported and "training.config" in imported and "vitviz.models" in imported
    assert not _allowed("vitviz.bad", "training.config") and _allowed("vitviz.bad", "vitviz.models")
    assert _allowed("pages.train", "training.jobs") and not _allowed("pages.train", "training.train")
