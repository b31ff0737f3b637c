"""Which stacks a change touches, and the order they deploy in."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterable

from policy.rules import BRANCH_STACK_PREFIX  # one definition, which the policy pack reads too

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_PATHS = ("__main__.py", "Pulumi.yaml", "components/", "policy/")
STACK_FILE = re.compile(r"^Pulumi\.([A-Za-z0-9_.-]+)\.yaml$")
NULL_SHA = "0" * 40


def stack_of_file(path: str) -> str | None:
    match = STACK_FILE.match(path)
    return match.group(1) if match else None


def is_program_file(path: str) -> bool:
    if path in PROGRAM_PATHS or any(path.startswith(p) for p in PROGRAM_PATHS if p.endswith("/")):
        return True
    return "/" not in path and path.startswith("requirements") and path.endswith(".txt")


def deployable(stack: str) -> bool:
    return not stack.startswith(BRANCH_STACK_PREFIX)


def committed_stacks(root: Path = ROOT) -> list[str]:
    stacks = (stack_of_file(path.name) for path in root.glob("Pulumi.*.yaml"))
    return sorted(stack for stack in stacks if stack and deployable(stack))


def changed_stacks(changed_files: Iterable[str], stacks: Iterable[str]) -> list[str]:
    """The stacks (of `stacks`, those with a stack file at head) whose inputs `changed_files` touch."""
    stacks = sorted(set(stacks))
    changed_files = list(changed_files)
    if any(is_program_file(path) for path in changed_files):
        return stacks
    touched = {stack_of_file(path) for path in changed_files}
    return [stack for stack in stacks if stack in touched]


def deploy_order(stacks: Iterable[str]) -> list[str]:
    """Production last: if anything fails first, prod is never touched."""
    return sorted(stacks, key=lambda stack: (is_prod(stack), stack))


def git_changed_files(base: str, head: str, root: Path = ROOT) -> list[str]:
    result = subprocess.run(
        ["git", "diff", "--name-only", f"{base}...{head}"], cwd=root, capture_output=True, text=True, check=True
    )
    return [line for line in result.stdout.splitlines() if line]


def is_prod(stack: str) -> bool:
    return stack == "prod" or stack.startswith("prod-")
