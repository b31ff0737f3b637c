"""The one error a stack's bad configuration raises, and its words: each problem on one line of its own,
starting with `airflow-platform:<key>` (the dotted path of camelCase names a user writes in the stack file), a
value shown unless it is secret, and the `pulumi config` command that fixes each key, derived from that path.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from typing import Any

import pulumi
from pydantic import BaseModel

from components.settings.fields import PROJECT, SettingsFields, secret_keys

_PROBLEM_KEY = re.compile(rf"^{re.escape(PROJECT)}:(\S+?)(?: = |: |$)")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z_<][A-Za-z0-9_>]*")


class ConfigError(pulumi.RunError):
    """Every problem with the stack's configuration, in one message a user can act on."""

    def __init__(self, problems: list[str], stack: str | None = None):
        self.problems = problems = [one_line(problem) for problem in problems]
        lines = "\n".join(f"  - {problem}" for problem in problems)
        fixes = "\n".join(f"  {command}" for command in fix_commands(problems))
        super().__init__(
            f"invalid configuration for stack '{stack or pulumi.get_stack()}' ({len(problems)} problem(s)):\n{lines}\n"
            + (f"To fix (a value shown is the key's default):\n{fixes}\n" if fixes else "")
        )


def describe(value: Any, secret: bool) -> str:
    if secret:
        return "[secret]"
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


# What a problem line must not carry from a value: line breaks (a forged problem line), terminal escapes and
# bidirectional overrides (text that reads other than it is).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    return _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)


def suggestion(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} allowed: {', '.join(allowed)}" if allowed else hint


def plaintext_secret_problem(key: str) -> str:
    return f"{PROJECT}:{key}: is a secret; set it with `pulumi config set --secret {key}`"


def fix_commands(problems: list[str]) -> list[str]:
    """One `pulumi config` command per bad key, in the order of the problems."""
    commands: list[str] = []
    for problem in problems:
        command = _fix_command(problem)
        if command and command not in commands:
            commands.append(command)
    return commands


def _fix_command(problem: str) -> str | None:
    match = _PROBLEM_KEY.match(problem)
    if not match:
        return None
    parts = match.group(1).split(".")
    if problem[match.end(1):].startswith(": unknown key"):
        return f"pulumi config rm {_key_argument(parts)}"
    if parts[0] in secret_keys():
        return f"pulumi config set --secret {parts[0]} <value>"
    default = _default_at(parts)
    if isinstance(default, (BaseModel, dict, list)):
        # Pulumi cannot set an object from the command line; name a key inside it instead.
        parts, default = [*parts, "<key>"], None
    elif default is not None and not problem[match.end(1):].startswith(" =") and f"'{default}'" in problem:
        default = None  # the default is what a rule refuses here (e.g. simple login on a team stack)
    return f"pulumi config set {_key_argument(parts)} {_shell_value(default)}"


def _key_argument(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    path = parts[0]
    for part in parts[1:]:
        if part.isdigit():
            path += f"[{part}]"
        elif _PLAIN_SEGMENT.fullmatch(part):
            path += f".{part}"
        else:
            path += f'["{part}"]'  # e.g. a node selector label with dots and slashes
    return f"--path '{path}'"


def _default_at(parts: list[str]) -> Any:
    """The model's default for a dotted key path, or None when it has none."""
    node: Any = SettingsFields
    for part in parts:
        model = node if isinstance(node, type) else type(node)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        name = next((name for name, field in model.model_fields.items() if field.alias == part), None)
        if name is None:
            return None
        if isinstance(node, BaseModel):
            node = getattr(node, name)
        elif model.model_fields[name].is_required():
            return None
        else:
            node = model.model_fields[name].get_default(call_default_factory=True)
    return node


def _shell_value(value: Any) -> str:
    if value is None:
        return "<value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return shlex.quote(str(value))
