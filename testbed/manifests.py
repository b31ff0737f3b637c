"""Every Kubernetes object a stack would apply, as plain manifests, from the program run under mocks.

The mocks record each resource's inputs exactly as the kubernetes provider would receive them; turned into
manifests they are what `pulumi up` sends to the API server (before its own defaulting), so the API server,
schema validators and scanners can judge them without the engine.
"""

from __future__ import annotations

import copy
import functools

import yaml

from testbed.harness import StackRun, run_stack
from testbed.stacks import KERBEROS_CONFIG, TEST_SECRETS, stack_file_config

COMMITTED_STACKS = ("dev", "prod", "team-analytics", "team-search")
BRANCH_BRANCH = "feature/JIRA-123_Big Thing"
BRANCH_REPO = "https://git.example.org/team/dags.git"


def branch_stack() -> tuple[str, dict]:
    """The stack `python -m envs create` would make for a feature branch: its name and plain config."""
    from envs import cli

    name, plain, _ = cli.branch_config(BRANCH_BRANCH, dags_repo=BRANCH_REPO, env={})
    return name, plain


def stack_config(stack: str) -> tuple[str, dict]:
    """(instance name, plain config) of a committed stack, of `branch`, or of `kerberos` (dev with Kerberos on:
    the only stack that creates the renewer, its claim and keytab)."""
    if stack == "branch":
        return branch_stack()
    if stack == "kerberos":
        return "kerberos", {**stack_file_config("dev"), **KERBEROS_CONFIG, "instance": "kerberos"}
    return stack, stack_file_config(stack)


STACKS = (*COMMITTED_STACKS, "branch", "kerberos")


@functools.lru_cache(maxsize=None)
def stack_run(stack: str) -> StackRun:
    name, config = stack_config(stack)
    secrets = dict(TEST_SECRETS)
    if stack == "kerberos":
        from testbed.stacks import KEYTAB_B64

        secrets["kerberosKeytab"] = KEYTAB_B64
    # The Kerberos variant is dev's stack (disposable: its development login is allowed) under its own instance.
    return run_stack(config, secrets, stack="dev" if stack == "kerberos" else name)


def _integers(value):
    """The mocks see numbers as protobuf doubles (50000.0); the provider sends integers, and Kubernetes has no
    float fields, so an integral float is an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def manifest_of(resource) -> dict:
    document = _integers(copy.deepcopy(resource.inputs))
    document.setdefault("metadata", {})
    # What the provider does for a resource without a name: the Pulumi name is the base of an auto-name.
    document["metadata"].setdefault("name", resource.name)
    return document


def manifests(run: StackRun) -> list[dict]:
    return [manifest_of(r) for r in run.resources if r.type.startswith("kubernetes:") and "apiVersion" in r.inputs]


def stack_manifests(stack: str) -> list[dict]:
    return manifests(stack_run(stack))


def task_pod_template(run: StackRun) -> dict:
    """The pod the KubernetesExecutor creates for every task, as the ConfigMap carries it."""
    config_map = next(r for r in run.of_kind("ConfigMap") if "pod_template.yaml" in r.inputs.get("data", {}))
    pod = yaml.safe_load(config_map.inputs["data"]["pod_template.yaml"])
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    pod.setdefault("metadata", {})
    pod["metadata"].setdefault("name", "task-pod-template")
    pod["metadata"]["namespace"] = config_map.metadata["namespace"]
    return pod


def pod_specs(document: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) for every pod spec an object carries: Deployments, Jobs, CronJobs, Pods."""
    kind, spec = document["kind"], document.get("spec") or {}
    where = f"{kind}/{document['metadata']['name']}"
    if kind == "Pod":
        return [(where, spec)]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [(where, spec["template"]["spec"])]
    if kind == "CronJob":
        return [(where, spec["jobTemplate"]["spec"]["template"]["spec"])]
    return []


def strict_schema(schema):
    """A CRD's schema as the API server applies it with fieldValidation=Strict: a field the structural schema
    does not name is an error (plain JSON Schema would let it through, and the server would drop it silently)."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if "properties" in strict and "additionalProperties" not in strict and not strict.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict
