"""A stack's config seen from outside the engine: the `pulumi config` command that fixes each problem of a
`ConfigError`, and `python -m components.config check [<stack>...]`, which reads `Pulumi.<stack>.yaml`
through the same model as `pulumi up` does, with no backend, no cluster and none of the stack's secrets.

Every problem `components.config` reports starts with `airflow-platform:<key>`, where `<key>` is the dotted
path of camelCase names a user writes in the stack file; the fix commands are derived from that path.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from components.config import PROJECT, ConfigError, Settings, _decode, config_text, parse_settings, secret_keys

_PROBLEM_KEY = re.compile(rf"^{re.escape(PROJECT)}:(\S+?)(?: = |: |$)")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z_<][A-Za-z0-9_>]*")

# An encrypted value cannot be read without the stack's secrets provider: it counts as set, with a stand-in
# the format checks accept; `pulumi preview` checks the real value.
_ENCRYPTED_STAND_IN = {
    "kerberosKeytab": "ZW5jcnlwdGVk",
    "postgresExternalUri": "postgresql://encrypted",
    "airflowConnections": "{}",
}


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
    node: Any = Settings
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


# ---------------------------------------------------------------------------------------------------------
# Checking a stack file


def read_stack_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The raw settings a stack file gives the program, and the secrets it holds in plain text (the engine
    would refuse those too, but only once someone runs `pulumi up` with the file).

    Each value reaches the model as the engine hands it to `pulumi up`: a scalar as text (`instance: 0` is the
    name '0'), an object or list as JSON text the program decodes, so both read a file alike."""
    try:
        # libyaml's safe loader where PyYAML has it: the same documents, ten times faster than the Python one.
        document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as error:
        return {}, [f"{path.name} is not valid YAML: {' '.join(str(error).split())}"]
    config = document.get("config") if isinstance(document, dict) else document
    if not isinstance(config if config is not None else {}, dict):
        return {}, [f"{path.name}: `config` must be a mapping of `{PROJECT}:<key>` to values"]
    raw: dict[str, Any] = {}
    problems: list[str] = []
    for full_key, value in (config or {}).items():
        namespace, _, key = str(full_key).rpartition(":")
        if (namespace or PROJECT) != PROJECT:
            continue
        encrypted = isinstance(value, dict) and set(value) == {"secure"}
        if key in secret_keys():
            if not encrypted:
                problems.append(plaintext_secret_problem(key))
            # Distinct stand-ins: two secrets are never taken for the same key (the credential rules compare them).
            raw[key] = _ENCRYPTED_STAND_IN.get(key, f"encrypted-{key}")
        elif not encrypted:
            raw[key] = _as_the_engine_hands_it(key, value)
    return raw, problems


def _as_the_engine_hands_it(key: str, value: Any) -> Any:
    if value is None:
        return None
    try:
        # default=str: YAML reads an unquoted time as a datetime; the engine hands it on as text.
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else config_text(value)
    except (TypeError, ValueError, RecursionError):  # a key YAML allows and JSON does not, e.g. a list
        return value
    return _decode(key, text)


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
