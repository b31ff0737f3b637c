"""What is generated from the settings model, so the documentation cannot drift from the code: the `config:`
block of `Pulumi.yaml`, the table of keys in docs/settings.md and the capacity table of docs/capacity-and-cost.md.
scripts/gen-docs writes them (and checks them with --check).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, SecretStr

from components.settings.capacity import capacity_table
from components.settings.fields import PROJECT, config_keys, secret_keys
from components.settings.reader import parse_settings

ROOT = Path(__file__).resolve().parents[2]

_SCALAR_TYPES = {str: "string", int: "integer", bool: "boolean", SecretStr: "string"}


def _scalar_type(annotation: Any) -> str | None:
    """The Pulumi project type of a field, or None for a structured (object) key, which Pulumi.yaml cannot
    declare: its schema allows only string, integer, boolean and array."""
    options = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    for option in options:
        option = getattr(option, "__origin__", option)
        if option in _SCALAR_TYPES:
            return _SCALAR_TYPES[option]
        if option is Literal or str(option).startswith("typing.Literal"):
            return "string"
    return None


def project_config_declarations() -> dict[str, dict[str, Any]]:
    """The scalar keys that have a default. The engine treats a declared key without a default as required
    and refuses to run a stack that does not set it, so optional keys (and secrets, which never have a
    default) are left out; docs/settings.md's table documents every key, and the model validates them all."""
    declarations: dict[str, dict[str, Any]] = {}
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation)
        if kind is None or key in secret_keys() or field.is_required() or field.default is None:
            continue
        declarations[key] = {"type": kind, "description": field.description or key, "default": field.default}
    return declarations


def config_reference_markdown() -> str:
    """A table of every key: its type, default and meaning, straight from the model."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, field in config_keys().items():
        kind = _scalar_type(field.annotation) or "object"
        if key in secret_keys():
            kind += " (secret)"
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(by_alias=True, mode="json")
        shown = "" if default is None else f"`{json.dumps(default)}`"
        rows.append(f"| `{key}` | {kind} | {shown} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


def pulumi_yaml(text: str) -> str:
    """The project file `text` with its `config:` block declaring what `project_config_declarations` says."""
    project = yaml.safe_load(text)
    project["config"] = {f"{PROJECT}:{k}": v for k, v in project_config_declarations().items()}
    return yaml.safe_dump(project, sort_keys=False, width=110)


def stacks_capacity_markdown(root: Path = ROOT) -> str:
    """`capacity_table` for the committed stack files (`Pulumi.<stack>.yaml`), as docs/capacity-and-cost.md shows it."""
    # Committed stacks only: local tools leave git-ignored stack files beside them (Pulumi.local.yaml, br-*).
    listed = subprocess.run(["git", "ls-files", "Pulumi.*.yaml"], cwd=root, capture_output=True, text=True)
    paths = [root / name for name in listed.stdout.split()] if listed.returncode == 0 else root.glob("Pulumi.*.yaml")
    stacks = {}
    for path in sorted(paths):
        name = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        plain = {k.partition(":")[2]: v for k, v in config.items()
                 if k.startswith(f"{PROJECT}:") and not (isinstance(v, dict) and "secure" in v)}
        # Secrets do not change sizes; stand-ins satisfy the rules that want one present.
        stand_ins = {"authOidcClientSecret": "x"} if (plain.get("auth") or {}).get("mode") == "oidc" else {}
        stacks[name] = parse_settings({"instance": name, **plain, **stand_ins}, stack=name)
    return capacity_table(stacks)
