"""PostgresCluster: the CloudNativePG cluster, its bootstrap, instances, budget, backups, and the external mode."""

from testbed.harness import run_stack
from testbed.runs import S3_KEYS, dev, prod
from testbed.stacks import TEST_SECRETS

BACKUP_KEYS = {k: TEST_SECRETS[k] for k in ("s3BackupAccessKeyId", "s3BackupSecretAccessKey")}
PROD_SECRETS = {**S3_KEYS, **BACKUP_KEYS, "authOidcClientSecret": TEST_SECRETS["authOidcClientSecret"]}


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


def test_a_restart_gives_clients_seconds_not_minutes_to_leave_before_the_fast_shutdown():
    # PgBouncer holds its server connections: a smart shutdown never ends on its own, so its whole window is spent.
    for run in (dev(), prod(secrets=PROD_SECRETS)):
        assert run.one("Cluster").inputs["spec"]["smartShutdownTimeout"] == 15


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


def test_the_backup_catalogue_the_alerts_read_is_refreshed_every_five_minutes():
    # The plugin's sidecar can drop the refresh after a backup; this bounds how long the failing-backup alert
    # outlives a good backup (tests/node/test_backups.py shows it on a real node).
    store = prod(secrets=PROD_SECRETS).one("ObjectStore").inputs["spec"]
    assert store["instanceSidecarConfiguration"]["retentionPolicyIntervalSeconds"] == 300


def test_backups_without_static_keys_inherit_the_pods_iam_role():
    run = run_stack({"postgres": {"backups": {"enabled": True}}}, stack="dev")
    assert run.one("ObjectStore").inputs["spec"]["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}


def test_external_database_mode_creates_no_cluster():
    run = run_stack(
        {"postgres": {"mode": "external"}},
        {"postgresExternalUri": "postgresql://airflow:pw@db.example.org:6432/airflow"},
        stack="dev",
    )
    assert run.of_kind("Cluster") == [] and run.of_kind("Pooler") == []
    assert not [r for r in run.of_kind("RandomPassword") if r.name == "dev-password"]
    assert run.exports["database_host"] == "db.example.org"
