"""InstanceNamespace and what every stack creates in it: the objects, Pod Security, the common labels, names within
Kubernetes limits, and what prod protects."""

import pytest

from components import kube
from testbed.harness import run_stack
from testbed.runs import S3_KEYS, dev, prod
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS

BACKUP_KEYS = {k: TEST_SECRETS[k] for k in ("s3BackupAccessKeyId", "s3BackupSecretAccessKey")}
PROD_SECRETS = {**S3_KEYS, **BACKUP_KEYS, "authOidcClientSecret": TEST_SECRETS["authOidcClientSecret"]}


# --- what a stack creates -------------------------------------------------------------------------------


def test_dev_stack_creates_namespace_rbac_database_pooler_and_bucket():
    run = dev()
    assert run.one("Namespace").k8s_name == "airflow-dev"
    assert {sa.k8s_name for sa in run.of_kind("ServiceAccount")} == {
        f"dev-{c}" for c in ("scheduler", "api-server", "dag-processor", "triggerer", "task", "migrate", "statsd-exporter")
    }
    assert run.one("Cluster").inputs["spec"]["instances"] == 1
    assert run.one("Pooler").inputs["spec"]["pgbouncer"]["poolMode"] == "transaction"
    # dev turns backups off: no WAL archiving, no ObjectStore, no ScheduledBackup
    assert run.of_kind("ObjectStore") == [] and run.of_kind("ScheduledBackup") == []
    assert "plugins" not in run.one("Cluster").inputs["spec"]
    assert run.exports["log_bucket"] == "airflow-dev-airflow-logs"
    assert run.exports["database_host"] == "dev-pgbouncer.airflow-dev.svc"


def test_namespace_enforces_pod_security_restricted():
    labels = dev().one("Namespace").metadata["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_existing_namespace_is_used_not_created():
    run = dev({"createNamespace": False, "namespace": "team-data"})
    assert run.of_kind("Namespace") == []
    assert {sa.metadata["namespace"] for sa in run.of_kind("ServiceAccount")} == {"team-data"}


def test_every_object_carries_the_common_labels():
    for resource in dev().resources:
        if resource.type.startswith("kubernetes:") and resource.metadata:
            labels = resource.metadata.get("labels", {})
            assert labels.get("app.kubernetes.io/instance") == "dev", resource.name
            assert labels.get("app.kubernetes.io/part-of") == "airflow-platform", resource.name


# --- names and protection -------------------------------------------------------------------------------


def test_names_of_the_longest_allowed_instance_stay_within_kubernetes_limits():
    instance = "a" * 44
    run = run_stack({**KERBEROS_CONFIG, "instance": instance, "s3": {"bucket": "long-instance-logs"}},
                    {"kerberosKeytab": KEYTAB_B64}, stack="dev")
    names = [r.k8s_name for r in run.resources if r.k8s_name]
    assert len(names) > 15
    for name in names:
        assert len(name) <= kube.MAX_NAME_LENGTH, name


@pytest.mark.parametrize("stack,protected", [("prod", True), ("dev", False)])
def test_prod_protects_and_retains_the_database_its_namespace_and_the_bucket(stack, protected):
    run = prod(secrets=PROD_SECRETS) if stack == "prod" else dev()
    stateful = [run.one("Cluster"), run.one("Pooler"), run.by_pulumi_name("RandomPassword", f"{stack}-password"), run.one("Secret", "-db-credentials"),
                run.one("Namespace")]
    stateful.append(next(r for r in run.resources if r.type == "pulumi-python:dynamic:S3Bucket"))
    for resource in stateful:
        assert (resource.protect, resource.retain_on_delete) == (protected, protected), resource.name
    # Stateless parts stay replaceable even in prod.
    assert run.one("Role", "-scheduler").protect is False
