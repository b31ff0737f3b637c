"""The components import one another in one direction: no module of components/ imports one that imports it
back, whether at the top, inside a function or under TYPE_CHECKING. A circle would make the order of imports
matter (a name half-defined when the other module reads it), and it hides which component owns a fact.

The settings package (components/settings/) counts as one module here, its imports the union of its modules':
the components import it, and it imports only the modules that name images and Kubernetes names.
tests/settings/test_settings_imports.py checks the order inside it.
"""

import ast
from pathlib import Path

from testbed.harness import ROOT
from testbed.imports import cycle_in

COMPONENTS = ROOT / "components"


def _owned() -> dict[str, list[Path]]:
    modules = {path.stem: [path] for path in COMPONENTS.glob("*.py") if path.stem != "__init__"}
    modules["settings"] = sorted((COMPONENTS / "settings").glob("*.py"))
    return modules


def _imported(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """Every `components.<module>` the tree imports (anywhere in it), with the node that imports it."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "components":
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("components."):
            found.append((node.module.split(".")[1], node))
        elif isinstance(node, ast.Import):
            found += [(alias.name.split(".")[1], node) for alias in node.names if alias.name.startswith("components.")]
    return found


def _graph() -> dict[str, set[str]]:
    owned = _owned()
    return {
        module: {name for path in paths for name, _ in _imported(ast.parse(path.read_text()))
                 if name in owned and name != module}
        for module, paths in owned.items()
    }


def test_cycle_finder_sees_a_circle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_function_level_imports_count():
    tree = ast.parse("def f():\n    from components.kube import labels\n\nif X:\n    import components.images\n")
    assert sorted(name for name, _ in _imported(tree)) == ["images", "kube"]


def test_no_import_circle_among_components():
    assert cycle_in(_graph()) is None


def test_components_import_one_another_at_the_top_only():
    """A function-level or TYPE_CHECKING import between components is how a circle hides; there is none."""
    owned = _owned()
    nested = []
    for module, paths in owned.items():
        for path in paths:
            tree = ast.parse(path.read_text())
            top = set(map(id, tree.body))
            nested += [f"{module} -> {name}" for name, node in _imported(tree) if name in owned and id(node) not in top]
    assert nested == []
