"""The config a branch stack gets: the template, what it inherits from its parent stack, the secrets the environment
supplies, `--config` overrides; checked with the settings model before any engine runs. And its two stack tags."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any, Iterable

import yaml

from components.settings import PROJECT, ConfigError, parse_settings
from components.settings.stack_files import config_text
from envs.naming import branch_instance_name, normalize_branch
from envs.template import dev_template

TAG_BRANCH = f"{PROJECT}:branch"
TAG_CREATED = f"{PROJECT}:created-at"
TAG_VALUE_LIMIT = 256  # Pulumi Cloud's limit on a tag value

# Secret config a branch stack needs, and the environment variable that supplies each one in CI.
SECRET_ENV = {
    "s3AccessKeyId": "AIRFLOW_PLATFORM_S3_ACCESS_KEY_ID",
    "s3SecretAccessKey": "AIRFLOW_PLATFORM_S3_SECRET_ACCESS_KEY",
    # The log key goes into the branch's pods; the provisioning key above never does.
    "s3LogAccessKeyId": "AIRFLOW_PLATFORM_S3_LOG_ACCESS_KEY_ID",
    "s3LogSecretAccessKey": "AIRFLOW_PLATFORM_S3_LOG_SECRET_ACCESS_KEY",
    "gitSyncToken": "AIRFLOW_PLATFORM_GIT_SYNC_TOKEN",
    "gitSyncSshKey": "AIRFLOW_PLATFORM_GIT_SYNC_SSH_KEY",
}
GIT_CREDENTIALS = ("gitSyncToken", "gitSyncSshKey")
# Where-to-deploy settings a branch inherits from its parent stack (sizes come from the template instead).
INHERITED_KEYS = (
    "kubernetesContext",
    "kubernetesRenderDir",
    "team",
    "airflowImage",
    "airflowVersion",
    "airflowPythonVersion",
    "imagePullPolicy",
    "placement",
    "s3",
    "gitSync",
    "cost",  # prices are the platform's, not the branch's
)


def _plain(value: str) -> Any:
    """A config value as Pulumi hands it over: structured values are JSON text."""
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _set_path(target: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[leaf] = value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`--config key=value` pairs; `key` may be a dotted path (`postgres.instances=2`), the value is YAML."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().removeprefix(f"{PROJECT}:")
        if not sep or not key:
            raise ValueError(f"--config {item!r}: use key=value, e.g. postgres.instances=2")
        overrides[key] = _yaml_value(text)
    return overrides


def _yaml_value(text: str) -> Any:
    """`2` → 2, `true` → True, `{a: 1}` → a dict; anything YAML does not read as a value stays text (`#000`
    would otherwise be a comment, i.e. null)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("null", "~"):
        return text
    return value


def branch_config(
    branch: str,
    *,
    dags_repo: str | None,
    parent: dict[str, tuple[str, bool]] | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(stack name, plain settings, secret settings) of `branch`'s environment.

    `parent` is the parent stack's config (key without project prefix → (value, is_secret)); `env` supplies
    secrets that override the parent's. Raises ValueError when no DAG repository is known.
    """
    branch = normalize_branch(branch)
    env = os.environ if env is None else env
    parent = parent or {}
    name = branch_instance_name(branch)

    plain: dict[str, Any] = {}
    for key in INHERITED_KEYS:
        if key in parent and not parent[key][1]:
            plain[key] = _plain(parent[key][0])
    inherited_s3 = dict(plain.get("s3") or {})
    inherited_s3.pop("bucket", None)  # the parent's bucket is the parent's: a branch gets its own
    git_sync = dict(plain.get("gitSync") or {})

    template = dev_template()
    plain.update({key: value for key, value in template.items()})
    plain["s3"] = {**inherited_s3, **template["s3"]}
    plain["instance"] = name
    plain["instanceTitle"] = f"branch {branch}"
    repo = dags_repo or env.get("AIRFLOW_DAGS_REPO") or git_sync.get("repo")
    if not repo:
        raise ValueError("no DAG repository: pass --dags-repo or set AIRFLOW_DAGS_REPO")
    plain["gitSync"] = {**git_sync, "enabled": True, "repo": repo, "ref": branch}

    for path, value in (overrides or {}).items():
        _set_path(plain, path, value)

    secrets = {key: parent[key][0] for key in SECRET_ENV if key in parent and parent[key][1]}
    from_env = {key: env[var] for key, var in SECRET_ENV.items() if env.get(var)}
    if any(key in from_env for key in GIT_CREDENTIALS):
        for key in GIT_CREDENTIALS:
            secrets.pop(key, None)
    secrets.update(from_env)
    return name, plain, secrets


def config_problems(plain: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """What the program would reject, found before any engine runs."""

    try:
        parse_settings({**plain, **secrets})
    except ConfigError as error:
        return list(error.problems)
    return []


def config_map(plain: dict[str, Any], secrets: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """Full config key → (text, secret) for `set_all_config`: structured values as JSON text, which the program
    decodes exactly like the objects of a committed stack file."""
    result = {f"{PROJECT}:{key}": (config_text(value), False) for key, value in plain.items()}
    for key, value in secrets.items():
        result[f"{PROJECT}:{key}"] = (value, True)
    return result


def branch_tags(branch: str, existing: dict[str, str], now: datetime) -> dict[str, str]:
    """The tags to set: the branch always, the creation time only once (a later push keeps the first)."""
    tags = {TAG_BRANCH: normalize_branch(branch)[:TAG_VALUE_LIMIT]}
    if TAG_CREATED not in existing:
        tags[TAG_CREATED] = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags
