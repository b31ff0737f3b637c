"""The engine adapter: everything `python -m envs` needs from the Pulumi engine, through the Automation API, behind
the few methods of `EngineLike` (the tests use a fake one)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Protocol

import recovery
from components.settings import PROJECT
from envs.listing import StackInfo, short_stack_name
from envs.naming import is_branch_stack

ROOT = Path(__file__).resolve().parent.parent


class StackMissing(Exception):
    """The stack does not exist (any more)."""


class EngineLike(Protocol):
    def stacks(self) -> list[StackInfo]: ...
    def parent_config(self, stack: str) -> dict[str, tuple[str, bool]] | None: ...
    def tags(self, stack: str) -> dict[str, str]: ...
    def up(self, stack: str, config: dict[str, tuple[str, bool]], tags: Callable[[dict[str, str]], dict[str, str]],
           on_output: Callable[[str], None]) -> dict[str, Any]: ...
    def destroy(self, stack: str, on_output: Callable[[str], None]) -> None: ...
    def remove(self, stack: str) -> None: ...


class Engine:
    """The Automation API, reached only through these few methods. The program runs inline (engine.py); state
    comes from the usual PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE environment."""

    def __init__(self, work_dir: Path = ROOT):
        import engine
        from pulumi import automation as auto

        try:
            self.workspace = engine.workspace(work_dir=work_dir)
        except engine.ToolchainMissing as error:
            raise SystemExit(f"envs: {error}") from error
        self.auto = auto
        self.engine = engine
        self.work_dir = work_dir

    def stacks(self) -> list[StackInfo]:
        infos = []
        for summary in self.workspace.list_stacks():
            name = short_stack_name(summary.name)
            branch = is_branch_stack(name)
            tags = self.tags(name) if branch else {}
            outputs = self.outputs(name) if branch else {}
            infos.append(StackInfo(name, summary.last_update, summary.resource_count, summary.update_in_progress, tags,
                                   outputs))
        return infos

    def parent_config(self, stack: str) -> dict[str, tuple[str, bool]] | None:
        try:
            values = self.workspace.get_all_config(stack)
        except self.auto.errors.CommandError as error:
            print(f"note: cannot read the config of parent stack '{stack}' ({first_line(error)}); "
                  "secrets come from the environment only", file=sys.stderr)
            return None
        return {key.removeprefix(f"{PROJECT}:"): (value.value, value.secret) for key, value in values.items()
                if key.startswith(f"{PROJECT}:")}

    def outputs(self, stack: str) -> dict[str, Any]:
        """Plain outputs only: secrets are not needed to list costs."""
        try:
            values = self.workspace.stack_outputs(stack)
        except self.auto.errors.CommandError:
            return {}
        return {key: output.value for key, output in values.items() if not output.secret}

    def tags(self, stack: str) -> dict[str, str]:
        try:
            return dict(self.workspace.list_tags(stack))
        except self.auto.errors.CommandError:
            return {}

    def up(self, stack, config, tags, on_output):
        auto = self.auto
        # A state an interrupted update left (unreadable, locked, operations unfinished), or an update still
        # running: say so, and what to do, before anything is changed.
        handle = recovery.open_checked(lambda: auto.Stack.create_or_select(stack, self.workspace), stack)
        stale = [key for key in handle.get_all_config() if key not in config]
        if stale:
            handle.remove_all_config(stale)
        handle.set_all_config({key: auto.ConfigValue(value=text, secret=secret) for key, (text, secret) in config.items()})
        try:
            for key, value in tags(self.tags(stack)).items():
                self.workspace.set_tag(stack, key, value)
        except auto.errors.CommandError as error:
            print(f"note: stack tags not supported here ({first_line(error)}); age falls back to the last update",
                  file=sys.stderr)
        result = recovery.up(handle, check_first=False, on_output=on_output, color="never")
        return {key: ("[secret]" if output.secret else output.value) for key, output in result.outputs.items()}

    def destroy(self, stack, on_output):
        try:
            handle = self.auto.Stack.select(stack, self.workspace)
        except self.auto.errors.StackNotFoundError as error:
            raise StackMissing(stack) from error
        try:
            self.engine.destroy(handle, on_output=on_output)
        except self.engine.DestroyRefused as refused:
            raise SystemExit(f"envs: {refused}") from refused

    def remove(self, stack):
        try:
            self.workspace.remove_stack(stack)
        except self.auto.errors.StackNotFoundError as error:
            raise StackMissing(stack) from error


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
