"""`python -m components.settings check [<stack>...]`: reads `Pulumi.<stack>.yaml` through the same model as
`pulumi up` does, with no backend, no cluster and none of the stack's secrets, and reports what `pulumi up`
would refuse. The generated tables and files are scripts/gen-docs'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from components.settings.errors import ConfigError
from components.settings.reader import parse_settings
from components.settings.stack_files import read_stack_file

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.settings",
        description="Check stack files with the settings model. scripts/gen-docs regenerates what is generated "
        "from the model (Pulumi.yaml's config declarations and the tables of docs/).",
    )
    commands = parser.add_subparsers(dest="command", metavar="{check}", required=True)
    check_cmd = commands.add_parser(
        "check", help="report what `pulumi up` would refuse in stack files, writing nothing (exit 1 on a problem)",
        description="Report what `pulumi up` would refuse in each stack file, writing nothing (exit 1 on a problem).",
    )
    check_cmd.add_argument("stacks", nargs="*", metavar="STACK",
                           help="a stack name or a Pulumi.<stack>.yaml path (default: every Pulumi.*.yaml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    return check(arguments.stacks, ROOT)


def check_stack_file(path: Path) -> list[str]:
    """Every problem `pulumi up` would report for this stack file's config (the stack name comes from the
    file name, as the instance name does)."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    raw, problems = read_stack_file(path)
    try:
        parse_settings({"instance": stack, **raw}, stack=stack)
    except ConfigError as error:
        problems += error.problems
    return problems


def check(arguments: list[str], root: Path) -> int:
    """`check [<stack or Pulumi.<stack>.yaml>...]`: every stack file of the project when none is named."""
    paths = [Path(a) if a.endswith(".yaml") else root / f"Pulumi.{a}.yaml" for a in arguments]
    paths = paths or sorted(root.glob("Pulumi.*.yaml"))
    failed = 0
    for path in paths:
        if not path.is_file():
            print(f"{path}: no such stack file")
            failed += 1
            continue
        problems = check_stack_file(path)
        if problems:
            stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
            print(f"{path.name}: {ConfigError(problems, stack=stack)}")
            failed += 1
        else:
            print(f"{path.name}: ok")
    return 1 if failed else 0
