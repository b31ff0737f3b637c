"""The settings package's modules depend on each other one way: no module imports one that imports it back,
however indirectly, and every import is at the top of its module (none in a function or under `if
TYPE_CHECKING`, where a circle would hide until the code runs). Read from the source with `ast`, without
importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

from testbed.harness import ROOT
from testbed.imports import cycle_in

PACKAGE = "components.settings"
FOLDER = ROOT / "components" / "settings"
MODULES = sorted(path.stem for path in FOLDER.glob("*.py") if path.stem != "__init__")


def imported_modules(tree: ast.Module) -> set[str]:
    """The package's modules a module imports (`__init__` for a name taken from the package itself)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found |= {f"{PACKAGE}.{alias.name}" if alias.name in MODULES else f"{PACKAGE}.__init__"
                      for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    prefix = f"{PACKAGE}."
    return {name.removeprefix(prefix) for name in found if name.startswith(prefix)}


def graph() -> dict[str, set[str]]:
    return {name: imported_modules(ast.parse((FOLDER / f"{name}.py").read_text())) for name in MODULES}


def test_no_module_of_the_settings_package_imports_one_that_imports_it_back():
    assert cycle_in(graph()) is None, f"an import circle: {' -> '.join(cycle_in(graph()))}"


def test_the_package_modules_import_their_siblings_not_the_package():
    # __init__ imports the modules; a module taking a name from __init__ would run back to it.
    users = sorted(name for name, imported in graph().items() if "__init__" in imported)
    assert users == [], f"{users} import names from components.settings itself"


def test_every_import_of_the_package_is_at_the_top_of_its_module():
    late = []
    for path in sorted(FOLDER.glob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        late += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top]
    assert late == [], f"imports inside a function or a block: {late}"


def test_the_circle_check_finds_a_circle():
    assert cycle_in({"model": {"rules"}, "rules": {"stack_rules"}, "stack_rules": {"model"}}) == [
        "model", "rules", "stack_rules", "model"]
    assert cycle_in({"model": {"rules"}, "rules": set()}) is None
