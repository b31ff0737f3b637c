"""One contract for components: each takes its section of the settings and the Outputs it needs, and uses every
argument it is given. An argument a component ignores is worse than none: the composition in instance.py reads as
if the component depended on it (for an Output: as if Pulumi would create that first), and it does not.

Checked on the source: every field of a component's `*Args` dataclass (and of the BackupDestination PostgresCluster
takes) is read as an attribute somewhere in the module that defines it.
"""

import ast
from pathlib import Path

import pytest

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
HANDED_OVER = ("BackupDestination",)


def _dataclass_fields(tree: ast.Module) -> dict[str, list[str]]:
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and (node.name.endswith("Args") or node.name in HANDED_OVER):
            classes[node.name] = [
                item.target.id for item in node.body if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
    return classes


def _attributes_read(tree: ast.Module) -> set[str]:
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)}


def unread_fields(source: str) -> list[str]:
    tree = ast.parse(source)
    read = _attributes_read(tree)
    return [f"{name}.{field}" for name, fields in _dataclass_fields(tree).items() for field in fields if field not in read]


def test_a_field_nobody_reads_is_found():
    source = "class FooArgs:\n    used: int\n    ignored: str\n\ndef make(args):\n    return args.used\n"
    assert unread_fields(source) == ["FooArgs.ignored"]


@pytest.mark.parametrize("path", sorted(COMPONENTS.glob("*.py")), ids=lambda path: path.stem)
def test_every_argument_a_component_is_given_is_used(path):
    assert unread_fields(path.read_text()) == []
