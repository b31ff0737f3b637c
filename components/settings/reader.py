"""The one reader of the stack's settings: `load_settings` reads the `airflow-platform` namespace of
`pulumi.Config` (no other code of the program reads it), and `parse_settings` validates raw values with the model,
whether they come from the engine or from a stack file. All problems are gathered into ONE `ConfigError` that
names every bad key, its value and what is allowed, raised before any resource is registered.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pydantic import BaseModel, SecretStr, ValidationError

from components.settings.errors import ConfigError, describe, plaintext_secret_problem, suggestion
from components.settings.fields import PROJECT, config_keys, secret_keys
from components.settings.model import CrossFieldProblems, Settings
from components.settings.stack_files import decode

def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (itself, optional, or as list items), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if getattr(annotation, "__origin__", None) is list:
        return _model_in(annotation.__args__[0])
    for option in getattr(annotation, "__args__", ()) if getattr(annotation, "__origin__", None) is not dict else ():
        if (model := _model_in(option)) is not None:
            return model
    return None


def _key_path(location: tuple, secret_fields: set[str]) -> tuple[str, bool]:
    """The key path as the user writes it in the stack file: field names in camelCase, the keys of a map (node
    selector labels, PostgreSQL parameters) as they are."""
    parts = [part for part in location if not (isinstance(part, str) and part.startswith("function-"))]
    top = str(parts[0]) if parts else ""
    is_secret = top in secret_fields or top in secret_keys()
    names: list[str] = []
    model: type[BaseModel] | None = Settings
    for part in parts:
        if part == "[key]":
            continue
        if model is not None and isinstance(part, str) and part in model.model_fields:
            field = model.model_fields[part]
            names.append(field.alias or part)
            model = _model_in(field.annotation)
        else:
            names.append(str(part))
            if not isinstance(part, int):
                model = None
    return ".".join(names), is_secret


def parse_settings(raw: dict[str, Any], stack: str | None = None) -> Settings:
    """Validate raw config values (key → value as decoded from the stack file) of `stack` (default: the
    instance name); raise one ConfigError."""
    secret_fields = {name for name, field in Settings.model_fields.items() if field.alias in secret_keys()}
    try:
        return Settings.model_validate(raw, context={"stack": stack})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, CrossFieldProblems):
                problems += [f"{PROJECT}:{key}: {text}" for key, text in cause.problems]
                continue
            key, is_secret = _key_path(item["loc"], secret_fields)
            message = item["msg"].removeprefix("Value error, ")
            if "[key]" in item["loc"]:
                message = f"the key {message}"
            if item["type"] == "extra_forbidden":
                parent = key.rsplit(".", 1)[0]
                message = "unknown key" + suggestion(key.rsplit(".", 1)[-1], _allowed_under(parent))
                problems.append(f"{PROJECT}:{key}: {message}")
                continue
            if item["type"] == "missing":
                problems.append(f"{PROJECT}:{key}: is required")
                continue
            value = describe(item.get("input"), is_secret)
            problems.append(f"{PROJECT}:{key} = {value}: {message}")
        raise ConfigError(problems) from None


def _allowed_under(path: str) -> list[str]:
    model: type[BaseModel] = Settings
    for part in path.split("."):
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias for field in model.model_fields.values()]


def load_settings(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the stack's config. The only function in the project that touches pulumi.Config."""
    config = config or pulumi.Config(PROJECT)
    keys = config_keys()
    raw: dict[str, Any] = {"instance": pulumi.get_stack()}
    problems: list[str] = []
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        if key in secret_keys() and not pulumi.runtime.is_config_secret(config.full_key(key)):
            problems.append(plaintext_secret_problem(key))
        raw[key] = decode(key, value)
    for full_key in sorted(_all_config_keys()):
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT and key not in keys:
            problems.append(f"{full_key}: unknown key{suggestion(key, sorted(keys))}")
    try:
        settings = parse_settings(raw, stack=pulumi.get_stack())
    except ConfigError as error:
        problems += error.problems
    if problems:
        raise ConfigError(problems)
    return settings


def _all_config_keys() -> set[str]:
    return set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.config.get_config_env())


def secret_output(value: SecretStr | None) -> pulumi.Output[str] | None:
    """The Output secret for a secret setting: exactly what `Config.get_secret` returns for it."""
    return None if value is None else pulumi.Output.secret(value.get_secret_value())
