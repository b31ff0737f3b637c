"""The stack runs the unit tests ask for, and the pod specs in them: one definition each, for every test file."""

from __future__ import annotations

import pytest
import yaml

from components.settings import ConfigError
from testbed.harness import StackRun, run_stack
from testbed.stacks import TEST_SECRETS, stack_file_config

# The keys of the one S3 credential a dev stack needs; the other secrets are the tests' to add.
S3_KEYS = {k: TEST_SECRETS[k] for k in ("s3AccessKeyId", "s3SecretAccessKey")}


def dev(config: dict | None = None, secrets: dict | None = None) -> StackRun:
    """The dev stack (Pulumi.dev.yaml) with `config` over it, the S3 keys and `secrets`."""
    return run_stack({**stack_file_config("dev"), **(config or {})}, {**S3_KEYS, **(secrets or {})}, stack="dev")


def prod(config: dict | None = None, secrets: dict | None = None) -> StackRun:
    """The prod stack (Pulumi.prod.yaml) with `config` over it, and `secrets` (default: every test secret)."""
    secrets = TEST_SECRETS if secrets is None else secrets
    return run_stack({**stack_file_config("prod"), **(config or {})}, dict(secrets), stack="prod")


def stack(name: str, config: dict | None = None, secrets: dict | None = None) -> StackRun:
    """A committed stack (Pulumi.<name>.yaml) with `config` over it, every test secret and `secrets`."""
    return run_stack({**stack_file_config(name), **(config or {})}, {**TEST_SECRETS, **(secrets or {})}, stack=name)


def refused(config: dict, secrets: dict | None = None, name: str = "dev") -> str:
    """The ConfigError `stack(name, config, secrets)` raises, as text; a failure if it raises none."""
    with pytest.raises(ConfigError) as error:
        stack(name, config, secrets)
    return str(error.value)


def config_env(run: StackRun) -> dict:
    """The Airflow configuration the control plane renders (its ConfigMap's data)."""
    return run.one("ConfigMap", "-config").inputs["data"]


def checksums(run: StackRun) -> dict[str, str]:
    """Deployment name -> the config checksum that rolls its pods (the Kerberos renewer's, which has none, left out)."""
    return {d.k8s_name: d.inputs["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in run.of_kind("Deployment") if d.k8s_name != "dev-kerberos"}


def containers_of(spec: dict) -> list[dict]:
    """The init containers and the containers of a pod spec."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_spec(workload) -> dict:
    """The pod spec of a Deployment's or a Job's resource."""
    return workload.inputs["spec"]["template"]["spec"]


def task_pod_template(run: StackRun) -> dict:
    """The task pod template the KubernetesExecutor reads, from its ConfigMap."""
    return yaml.safe_load(run.one("ConfigMap", "-pod-template").inputs["data"]["pod_template.yaml"])


def deployment_pod_specs(run: StackRun) -> dict[str, dict]:
    """Name -> pod spec of every Deployment."""
    return {d.k8s_name: pod_spec(d) for d in run.of_kind("Deployment")}


def pod_specs(run: StackRun, cronjobs: bool = True) -> dict[str, dict]:
    """Name -> pod spec of every pod the stack can start: the Deployments, the task pod ("task pod"), the Jobs
    and (unless `cronjobs` is false) the CronJobs."""
    specs = deployment_pod_specs(run)
    specs["task pod"] = task_pod_template(run)["spec"]
    for job in run.of_kind("Job"):
        specs[job.k8s_name] = pod_spec(job)
    if cronjobs:
        for cron in run.of_kind("CronJob"):
            specs[cron.k8s_name] = cron.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs
