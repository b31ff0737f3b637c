"""What a stack creates, and the guarantees users rely on: least-privilege RBAC, secrets that stay secret,
names within Kubernetes limits, and stateful parts that prod protects."""

import pytest

from components import kube
from testbed.harness import run_stack
from testbed.runs import S3_KEYS, dev, prod
from testbed.stacks import KERBEROS_CONFIG, KEYTAB_B64, TEST_SECRETS

BACKUP_KEYS = {k: TEST_SECRETS[k] for k in ("s3BackupAccessKeyId", "s3BackupSecretAccessKey")}
PROD_SECRETS = {**S3_KEYS, **BACKUP_KEYS, "authOidcClientSecret": TEST_SECRETS["authOidcClientSecret"]}


def rules_of(run, role_name):
    role = run.one("Role", role_name)
    return {(resource, verb) for rule in role.inputs["rules"] for resource in rule["resources"] for verb in rule["verbs"]}


def binding_subjects(run):
    return {
        binding.inputs["roleRef"]["name"]: [s["name"] for s in binding.inputs["subjects"]]
        for binding in run.of_kind("RoleBinding")
    }


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


def test_the_pooler_is_deleted_without_waiting_for_its_deployment():
    """The node test's `destroy` hung on a Pooler deleted in the foreground: CloudNativePG recreates the
    Deployment of a Pooler being deleted (cloudnative-pg#11360), so the Pooler waited for it forever."""
    annotations = dev().one("Pooler").metadata["annotations"]
    assert annotations["pulumi.com/deletionPropagationPolicy"] == "background"


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


# --- RBAC -----------------------------------------------------------------------------------------------


def test_only_the_scheduler_may_launch_and_delete_pods():
    run = dev()
    assert rules_of(run, "dev-scheduler") == {
        ("pods", "create"), ("pods", "get"), ("pods", "list"), ("pods", "watch"), ("pods", "patch"),
        ("pods", "delete"), ("pods/log", "get"), ("events", "list"),
    }
    assert binding_subjects(run)["dev-scheduler"] == ["dev-scheduler"]
    launchers = [r.k8s_name for r in run.of_kind("Role") if ("pods", "create") in rules_of(run, r.k8s_name)]
    assert launchers == ["dev-scheduler"]


def test_api_server_only_reads_pods_and_their_logs():
    run = dev()
    assert rules_of(run, "dev-api-server") == {
        ("pods", "get"), ("pods", "list"), ("pods", "watch"), ("pods/log", "get"),
    }
    assert binding_subjects(run)["dev-api-server"] == ["dev-api-server"]


def test_task_pods_get_no_rights_and_no_token():
    run = dev()
    bound = {name for subjects in binding_subjects(run).values() for name in subjects}
    assert "dev-task" not in bound
    assert run.one("ServiceAccount", "-task").inputs["automountServiceAccountToken"] is False


def test_task_pods_get_pod_rights_only_when_the_stack_opts_in():
    run = dev({"taskPod": {"kubernetesApiAccess": True}})
    assert binding_subjects(run)["dev-task"] == ["dev-task"]
    assert ("pods", "create") in rules_of(run, "dev-task")


def test_no_service_account_mounts_its_token_by_default():
    for account in dev().of_kind("ServiceAccount"):
        assert account.inputs["automountServiceAccountToken"] is False, account.k8s_name


def test_roles_are_namespaced_never_cluster_wide():
    run = dev()
    assert run.of_kind("ClusterRole") == [] and run.of_kind("ClusterRoleBinding") == []


# --- PostgresCluster ------------------------------------------------------------------------------------


def test_database_bootstraps_airflow_owned_by_airflow_with_a_generated_password():
    run = dev()
    initdb = run.one("Cluster").inputs["spec"]["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("airflow", "airflow")
    credentials = run.named(initdb["secret"]["name"])
    assert credentials.inputs["type"] == "kubernetes.io/basic-auth"
    assert credentials.inputs["stringData"]["username"] == "airflow"
    password = run.by_pulumi_name("RandomPassword", "dev-password")
    assert credentials.inputs["stringData"]["password"] == password.outputs_secret
    assert "stringData" in credentials.secret_paths


def test_prod_database_has_three_instances_anti_affinity_pdb_and_two_poolers():
    run = prod(secrets=PROD_SECRETS)
    spec = run.one("Cluster").inputs["spec"]
    assert spec["instances"] == 3 and spec["enablePDB"] is True
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert run.one("Pooler").inputs["spec"]["instances"] == 2


def test_single_instance_database_has_no_pdb_to_block_node_drains():
    spec = dev().one("Cluster").inputs["spec"]
    assert spec["enablePDB"] is False


def test_prod_archives_wal_and_takes_daily_backups_through_the_barman_plugin():
    run = prod(secrets=PROD_SECRETS)
    spec = run.one("Cluster").inputs["spec"]
    assert spec["plugins"] == [
        {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True, "parameters": {"barmanObjectName": "prod-pg-backups"}}
    ]
    store = run.one("ObjectStore").inputs["spec"]
    assert store["retentionPolicy"] == "30d"
    assert store["configuration"]["destinationPath"] == "s3://airflow-prod-airflow-logs/postgres/"
    credentials = run.named(store["configuration"]["s3Credentials"]["accessKeyId"]["name"])
    assert "stringData" in credentials.secret_paths
    backup = run.one("ScheduledBackup").inputs["spec"]
    assert backup["method"] == "plugin" and backup["pluginConfiguration"]["name"] == "barman-cloud.cloudnative-pg.io"
    assert len(backup["schedule"].split()) == 6


def test_backups_without_static_keys_inherit_the_pods_iam_role():
    run = run_stack({"postgres": {"backups": {"enabled": True}}}, stack="dev")
    assert run.one("ObjectStore").inputs["spec"]["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}


def test_airflow_connects_through_the_pooler_with_a_secret_url():
    from components.postgres_cluster import PostgresCluster, PostgresClusterArgs
    from components.settings.sections import PostgresSettings
    import pulumi

    seen = {}

    def program():
        cluster = PostgresCluster("db", PostgresClusterArgs(instance="x", namespace="ns", settings=PostgresSettings()))
        pulumi.Output.all(cluster.sqlalchemy_url, cluster.host, cluster.port).apply(
            lambda v: seen.update(url=v[0], host=v[1], port=v[2])
        )
        seen["secret"] = cluster.sqlalchemy_url

    run_stack({}, program=program)
    assert seen["host"] == "x-pgbouncer.ns.svc" and seen["port"] == 5432
    assert seen["url"].startswith("postgresql://airflow:Pw") and seen["url"].endswith("@x-pgbouncer.ns.svc:5432/airflow")
    from pulumi.runtime.sync_await import _sync_await

    assert _sync_await(seen["secret"].is_secret())


def test_external_database_mode_creates_no_cluster():
    run = run_stack(
        {"postgres": {"mode": "external"}},
        {"postgresExternalUri": "postgresql://airflow:pw@db.example.org:6432/airflow"},
        stack="dev",
    )
    assert run.of_kind("Cluster") == [] and run.of_kind("Pooler") == []
    assert not [r for r in run.of_kind("RandomPassword") if r.name == "dev-password"]
    assert run.exports["database_host"] == "db.example.org"


# --- secrets --------------------------------------------------------------------------------------------


def test_no_configmap_holds_a_secret_value():
    run = dev(KERBEROS_CONFIG, {"kerberosKeytab": KEYTAB_B64})
    secrets = [*S3_KEYS.values(), KEYTAB_B64, *(r.outputs_secret for r in run.resources if hasattr(r, "outputs_secret"))]
    for config_map in run.of_kind("ConfigMap"):
        text = repr(config_map.inputs)
        for secret in secrets:
            assert secret not in text, f"{config_map.k8s_name} holds a secret"


def test_s3_credentials_travel_only_as_secrets():
    run = prod(secrets=PROD_SECRETS)
    bucket = next(r for r in run.resources if r.type.startswith("pulumi-python:dynamic"))
    assert {"access_key_id", "secret_access_key"} <= bucket.secret_paths
    for resource in run.resources:
        if S3_KEYS["s3SecretAccessKey"] in repr(resource.inputs):
            assert resource.secret_paths, f"{resource.type} {resource.name} holds the S3 key in plain text"


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
    stateful.append(next(r for r in run.resources if r.type.startswith("pulumi-python:dynamic")))
    for resource in stateful:
        assert (resource.protect, resource.retain_on_delete) == (protected, protected), resource.name
    # Stateless parts stay replaceable even in prod.
    assert run.one("Role", "-scheduler").protect is False
