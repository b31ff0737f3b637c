"""The stack (and instance) name of a branch environment.

`br-<slug>-<hash>`: the slug makes the name readable, the hash (the first 6 hex digits of the SHA-256 of the
exact branch name) makes it unique, so `feature/JIRA-123_Big Thing` and `feature/jira-123-big-thing`, which
slug alike, still get two environments. The same branch always gets the same name.

The name is cut short enough that every Kubernetes object the program derives from it fits (the limits in
`components.kube.all_derived_names`), its namespace `airflow-<name>` is a DNS-1123 label and the default log
bucket `airflow-<name>-airflow-logs` is a valid S3 bucket name.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

from components import kube
from components.settings import Settings
from components.log_bucket_props import bucket_name_errors
from policy.rules import BRANCH_STACK_PREFIX as PREFIX

HASH_LENGTH = 6
DEFAULT_AIRFLOW_VERSION = Settings.model_fields["airflow_version"].default


def _namespace(instance: str) -> str:
    return f"airflow-{instance}"


def _bucket(instance: str) -> str:
    return f"{_namespace(instance)}-airflow-logs"


def instance_name_problems(instance: str, airflow_version: str = DEFAULT_AIRFLOW_VERSION) -> list[str]:
    """Why `instance` would not work as a whole stack (empty: it works)."""
    problems = list(kube.name_length_problems(instance, airflow_version))
    if not kube.is_dns1123_label(instance):
        problems.append(f"'{instance}' is not a DNS-1123 label")
    if not kube.is_dns1123_label(_namespace(instance)):
        problems.append(f"namespace '{_namespace(instance)}' is not a DNS-1123 label")
    problems += [f"bucket '{_bucket(instance)}': {error}" for error in bucket_name_errors(_bucket(instance))]
    return problems


@functools.lru_cache(maxsize=None)
def max_instance_length(airflow_version: str = DEFAULT_AIRFLOW_VERSION) -> int:
    """The longest instance name for which every derived name, the namespace and the bucket are valid."""
    for length in range(kube.MAX_NAME_LENGTH, 0, -1):
        if not instance_name_problems("a" * length, airflow_version):
            return length
    raise ValueError(f"no instance name fits for Airflow {airflow_version}")


def _slug(branch: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def normalize_branch(branch: str) -> str:
    """The branch name as CI systems disagree on it: `refs/heads/x` and `x` are the same branch."""
    branch = branch.strip()
    return branch.removeprefix("refs/heads/")


def branch_instance_name(branch: str, airflow_version: str = DEFAULT_AIRFLOW_VERSION) -> str:
    """The stack and instance name of `branch`'s environment: stable, unique per branch, and valid."""
    branch = normalize_branch(branch)
    if not branch:
        raise ValueError("the branch name is empty")
    digest = hashlib.sha256(branch.encode("utf-8")).hexdigest()[:HASH_LENGTH]
    room = max_instance_length(airflow_version) - len(PREFIX) - len(digest) - 1
    slug = _slug(branch)[:room].rstrip("-")
    name = f"{PREFIX}{slug}-{digest}" if slug else f"{PREFIX}{digest}"
    problems = instance_name_problems(name, airflow_version)
    assert not problems, problems  # the construction above guarantees it; fail loudly if a rule changes
    return name


def is_branch_stack(stack_name: str) -> bool:
    return stack_name.startswith(PREFIX)
