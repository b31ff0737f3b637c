"""A stack's config as the engine hands it to the program, and a stack file read the same way from outside the
engine (`python -m components.settings check`, a restore from another stack), with no backend, no cluster and
none of the stack's secrets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from components.settings.errors import plaintext_secret_problem
from components.settings.fields import PROJECT, secret_keys

# An encrypted value cannot be read without the stack's secrets provider: it counts as set, with a stand-in
# the format checks accept; `pulumi preview` checks the real value.
_ENCRYPTED_STAND_IN = {
    "kerberosKeytab": "ZW5jcnlwdGVk",
    "postgresExternalUri": "postgresql://encrypted",
    "airflowConnections": "{}",
}


def decode(key: str, value: str) -> Any:
    """Pulumi hands structured config to the program as JSON text, and scalars as plain strings (which
    pydantic coerces: "true" → True, "3" → 3). Secret values stay text."""
    if key not in secret_keys() and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            return value
    return value


def config_text(value: Any) -> str:
    """A config value as the engine hands it to a program (the inverse of `decode`): structured values as
    JSON text, booleans as true/false, everything else as a string."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
    return decode(key, text)
